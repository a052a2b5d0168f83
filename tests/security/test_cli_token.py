"""Threat: with SPACE_ID, SYSTEM=spaces and HF_TOKEN set (a terminal on the Space, or a process the app
started there), `python -m finetune push` went on with token=None, so huggingface_hub sent HF_TOKEN: the
Space's own token, pushing for whoever ran the command. Now, on a Space, every Hub-writing path of the CLI
needs the user's own token, given explicitly (--token or FINETUNE_PUSH_TOKEN), and refuses in one line
without one. Tested up to the network boundary: HfApi's writing methods record the Authorization header they
would send, then fail as an unreachable Hub would."""

import shutil

import pytest
import yaml

from finetune.adapter.hub import push_recorded, push_run, push_when_done, read_push
from finetune.cli import main
from finetune.errors import RunFileError
from security.untrained import untrained_run

SPACE = {"SPACE_ID": "owner/launchpad", "SYSTEM": "spaces", "HF_TOKEN": "hf_space_owner"}
REFUSED = ("error: --token: on a Hugging Face Space (SPACE_ID is set) a push never falls back to the Space's own "
           "HF_TOKEN; give your own write token with --token or FINETUNE_PUSH_TOKEN")


@pytest.fixture(scope="module")
def made(tmp_path_factory):
    return untrained_run(tmp_path_factory.mktemp("push") / "runs")


@pytest.fixture
def run(made, tmp_path):
    return shutil.copytree(made, tmp_path / made.name)


@pytest.fixture
def sent(monkeypatch):
    """The Authorization header each Hub write would carry; the write then fails before the network."""
    from huggingface_hub import HfApi
    from huggingface_hub.utils import build_hf_headers

    headers = []

    def boundary(self, *args, token=None, **kwargs):
        headers.append(build_hf_headers(token=token if token is not None else self.token).get("authorization"))
        raise ConnectionError("the test's network boundary")

    for name in ("create_repo", "upload_folder", "upload_file", "create_commit"):
        monkeypatch.setattr(HfApi, name, boundary)
    return headers


@pytest.fixture
def on_space(monkeypatch):
    monkeypatch.delenv("FINETUNE_PUSH_TOKEN", raising=False)
    for key, value in SPACE.items():
        monkeypatch.setenv(key, value)


def test_cli_push_on_a_space_refuses_without_the_users_own_token(run, sent, on_space, capsys):
    for extra in ([], ["--merged"], ["--private"]):
        assert main(["push", str(run), "--repo-id", "alice/mouse", *extra]) == 2
        assert capsys.readouterr().err.strip().splitlines() == [REFUSED]
    assert sent == [] and read_push(run) == {}   # nothing reached HfApi, nothing was recorded


def test_cli_push_on_a_space_sends_the_token_given(run, sent, on_space, monkeypatch, capsys):
    assert main(["push", str(run), "--repo-id", "alice/mouse", "--token", "hf_alice"]) == 1
    assert "cannot reach the Hub (ConnectionError" in capsys.readouterr().err
    monkeypatch.setenv("FINETUNE_PUSH_TOKEN", "hf_bob")
    assert main(["push", str(run), "--repo-id", "bob/mouse", "--merged"]) == 1
    assert sent == ["Bearer hf_alice", "Bearer hf_bob"]


def test_off_a_space_the_cli_pushes_with_the_machines_login(run, sent, monkeypatch):
    for key in ("SPACE_ID", "SYSTEM", "FINETUNE_PUSH_TOKEN"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("HF_TOKEN", "hf_me")
    assert main(["push", str(run), "--repo-id", "me/mouse"]) == 1
    assert sent == ["Bearer hf_me"]


def test_the_library_refuses_a_push_without_a_token_on_a_space(run, sent, on_space):
    """push_run and push_recorded are what every path ends in (the CLI, the app's keeper, a job)."""
    for push in (push_run, push_recorded):
        with pytest.raises(RunFileError, match=r"^--token: on a Hugging Face Space"):
            push(run, "alice/mouse", token=None, private=False, merged=False)
    assert sent == [] and read_push(run) == {}


def test_a_job_on_a_space_never_pushes_by_itself(run, sent, on_space, capsys):
    """The hub section of a run trained on a Space: the job holds only the Space's token, so it says how to
    push instead (the app pushes the runs it launched, with the launcher's sign-in: adapter/keeper.py)."""
    settings = yaml.safe_load((run / "run.yaml").read_text())
    (run / "run.yaml").write_text(yaml.safe_dump({**settings, "hub": {"repo_id": "alice/auto"}}))
    assert push_when_done(run) is None
    assert sent == [] and read_push(run) == {}
    assert "--token" in capsys.readouterr().out


def test_the_page_hands_the_signed_in_users_token_to_the_cli_explicitly(run, sent, on_space, monkeypatch):
    """The page's Push runs `python -m finetune push` (ui/keep.py); on a Space that process must get the
    visitor's token as the CLI's explicit one, or the CLI would now refuse the page's own pushes."""
    import subprocess

    from finetune.ui import keep

    spawned = []

    def run_here(args, env, **kwargs):
        """The CLI, in this process, with the environment the page gave it."""
        spawned.append(env)
        with monkeypatch.context() as patch:
            patch.setattr("os.environ", env)
            code = main(args[3:]) if args[3] == "push" else 0   # [python, -m, finetune, push, ...]
        return subprocess.CompletedProcess(args, code, "", "")

    monkeypatch.setattr(keep.subprocess, "run", run_here)
    assert keep.run_cli(["push", str(run), "--repo-id", "alice/mouse"], "hf_alice")[0] == 1
    assert sent == ["Bearer hf_alice"]
    keep.run_cli(["merge", str(run), "--out", str(run / "merged")])   # no token: nobody's is passed on
    assert "HF_TOKEN" not in spawned[-1] and "FINETUNE_PUSH_TOKEN" not in spawned[-1]
