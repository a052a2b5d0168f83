""""On a Space" has one owner, finetune/space.py, with its two answers: `on_space` (SPACE_ID set, even by
hand: every rule that protects a Space applies, failing closed) and `real_space` (SPACE_ID and SYSTEM=spaces:
what only a real Space provides, its sign-in and its proxy's X-Forwarded-For). Every reader of each answer
is asked here with the same environments, so one that starts reading the environment its own way (SPACE_ID
alone where the Space's sign-in is meant, or SYSTEM where a protection is) disagrees with its owner."""

import pytest
from starlette.datastructures import Headers

from finetune import space
from finetune.adapter import hub
from finetune.errors import RunFileError
from finetune.runfile import RunConfig
from finetune.runfile.reporters import ReportTo
from finetune.runfile.validators import Invalid
from finetune.ui import access, upload_gate

ENVS = {
    "local": {},
    "empty SPACE_ID": {"SPACE_ID": ""},
    "SPACE_ID by hand": {"SPACE_ID": "alice/x"},
    "a real Space": {"SPACE_ID": "alice/x", "SYSTEM": "spaces"},
    "SYSTEM alone": {"SYSTEM": "spaces"},
}


def protections(env) -> dict[str, bool]:
    """Each rule that protects a Space: whether it applies in `env`."""
    local_run = RunConfig.from_dict({"model": {"name_or_path": "/srv/models/x"}, "data": {"path": "/etc/passwd"}})
    try:
        hub.check_token(None, env)
        refuses_own_token = False
    except RunFileError:
        refuses_own_token = True
    try:
        ReportTo(env)("wandb")
        refuses_wandb = False
    except Invalid as exc:
        refuses_wandb = "sends metrics" in str(exc)
    return {"login_required": access.login_required(env),
            "server_paths_refused": bool(access.server_path_problems(local_run, env, uploads="/nowhere")),
            "model_folder_unread": not access.model_readable("/srv/models/x", env),
            "push_needs_own_token": refuses_own_token,
            "remote_trackers_refused": refuses_wandb}


def provisions(env) -> dict[str, bool]:
    """Each thing only a real Space provides: whether this app takes it as given in `env`."""
    forwarded = Headers({"x-forwarded-for": "1.1.1.1, 203.0.113.9"})
    scope = {"client": ("10.1.2.3", 5000)}
    return {"trusts_the_proxy": upload_gate.client_of(scope, forwarded, env) == "203.0.113.9",
            "offers_sign_in": access.sign_in_possible(env) if access.oauth_available() else space.real_space(env)}


@pytest.mark.parametrize("name", ENVS)
def test_every_protection_applies_exactly_when_the_owner_says_on_space(name):
    env = ENVS[name]
    expected = space.on_space(env)
    assert expected == (name in ("SPACE_ID by hand", "a real Space"))
    assert protections(env) == dict.fromkeys(protections({}), expected)


@pytest.mark.parametrize("name", ENVS)
def test_what_a_real_space_provides_is_taken_exactly_when_the_owner_says_real_space(name):
    env = ENVS[name]
    expected = space.real_space(env)
    assert expected == (name == "a real Space")
    assert provisions(env) == dict.fromkeys(provisions({}), expected)


def test_the_app_s_module_answers_with_the_owner():
    assert access.on_a_space is space.real_space
