""""Code that does not come with the app runs only where the host opts in" has one owner, finetune/space.py:
`remote_code_allowed` (a model repository's code: FINETUNE_ALLOW_REMOTE_CODE=1, on a Space or not) and
`own_code_allowed` (a run file's own reward code: anywhere but a Space, where the run file is a visitor's,
unless the host opts in). Each reader is asked here with the same environments, so one that starts reading
the switch its own way ("true", no strip, SPACE_ID ignored) disagrees with its owner."""

import pytest

from finetune import space
from finetune.runfile import RunConfig
from finetune.runfile.axolotl_import import trust_remote_code
from finetune.train.rewards import code_problems
from finetune.ui import access

ENVS = {
    "local": {},
    "local, opted in": {"FINETUNE_ALLOW_REMOTE_CODE": "1"},
    "local, opted in with spaces": {"FINETUNE_ALLOW_REMOTE_CODE": " 1 "},
    "local, 'true' is no opt-in": {"FINETUNE_ALLOW_REMOTE_CODE": "true"},
    "local, opted out": {"FINETUNE_ALLOW_REMOTE_CODE": "0"},
    "a Space": {"SPACE_ID": "alice/x", "SYSTEM": "spaces"},
    "a Space, opted in": {"SPACE_ID": "alice/x", "SYSTEM": "spaces", "FINETUNE_ALLOW_REMOTE_CODE": "1"},
    "a Space, opted in with spaces": {"SPACE_ID": "alice/x", "FINETUNE_ALLOW_REMOTE_CODE": "1 "},
    "a Space, 'true' is no opt-in": {"SPACE_ID": "alice/x", "FINETUNE_ALLOW_REMOTE_CODE": "true"},
    "SPACE_ID by hand": {"SPACE_ID": "alice/x"},
}
REMOTE_MODEL = RunConfig.from_dict({"model": {"trust_remote_code": True}})
PYTHON_REWARD = RunConfig.from_dict({"method": {"name": "grpo", "rewards": [
    {"type": "python", "path": "reward.py", "function": "score"}]}})


def readers(env) -> dict[str, bool]:
    """What each reader lets run in `env`: the app's check of a run file, the job's (and the app's) check of a
    python reward, the Axolotl import's trust_remote_code."""
    imported: dict = {}
    trust_remote_code({"trust_remote_code": True}, imported, env)
    return {"app_takes_trust_remote_code": not any(p.startswith("model.trust_remote_code")
                                                   for p in access.policy_problems(REMOTE_MODEL, env, uploads="/u")),
            "import_carries_trust_remote_code": imported.get("model", {}).get("trust_remote_code") is True,
            "job_runs_python_reward": code_problems(PYTHON_REWARD, env) == [],
            "app_takes_python_reward": not any(p.startswith("method.rewards[0]")
                                               for p in access.policy_problems(PYTHON_REWARD, env, uploads="/u"))}


@pytest.mark.parametrize("name", ENVS)
def test_every_reader_lets_code_run_exactly_when_the_owner_says(name):
    env = ENVS[name]
    remote, own = space.remote_code_allowed(env), space.own_code_allowed(env)
    assert remote == ("opted in" in name)
    assert own == (remote or not space.on_space(env))
    assert readers(env) == {"app_takes_trust_remote_code": remote, "import_carries_trust_remote_code": remote,
                            "job_runs_python_reward": own, "app_takes_python_reward": own}


def test_every_refusal_names_the_owner_s_switch():
    env = ENVS["a Space"]
    refusals = access.policy_problems(REMOTE_MODEL, env, uploads="/u") + code_problems(PYTHON_REWARD, env)
    refusals += trust_remote_code({"trust_remote_code": True}, {}, env)
    assert len(refusals) == 3 and all(space.REMOTE_CODE_SWITCH in line for line in refusals)


def test_the_page_asks_the_owner():
    assert access.remote_code_allowed is space.remote_code_allowed
