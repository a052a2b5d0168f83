"""Who may launch and cancel on a Hugging Face Space, and what the server refuses whoever asks."""

import pytest

from finetune.runfile import RunConfig
from finetune.ui.access import (
    allowed_users,
    login_required,
    may_launch,
    policy_problems,
    remote_code_allowed,
    space_owner,
)

SPACE = {"SPACE_ID": "Alice/lora-launchpad", "SYSTEM": "spaces"}   # a real Space sets both


def test_locally_anyone_may_launch():
    assert not login_required({})
    assert may_launch(None, {}) == (True, "")


def test_on_a_space_only_the_signed_in_owner_may_launch():
    assert login_required(SPACE)
    allowed, why = may_launch(None, SPACE)
    assert not allowed and "sign in" in why
    assert may_launch("alice", SPACE)[0]          # Hub names compare case-insensitively
    allowed, why = may_launch("mallory", SPACE)
    assert not allowed and "mallory" in why and "FINETUNE_ALLOWED_USERS" in why


def test_listed_users_may_launch_too():
    env = {**SPACE, "FINETUNE_ALLOWED_USERS": " bob, Carol ,,"}
    assert allowed_users(env) == {"alice", "bob", "carol"}
    assert may_launch("carol", env)[0] and may_launch("bob", env)[0]
    assert not may_launch("dave", env)[0]


@pytest.mark.parametrize("value, public", [("1", True), ("0", False), ("", False), ("yes", False)])
def test_a_public_space_lets_anyone_launch(value, public):
    env = {**SPACE, "FINETUNE_PUBLIC": value}
    assert may_launch(None, env)[0] is public


def test_owner_of_a_space_id():
    assert space_owner("alice/x") == "alice"
    assert space_owner("noslash") is None and space_owner(None) is None and space_owner("") is None


def test_remote_code_stays_off_unless_the_host_allows_it():
    run = RunConfig.from_dict({"model": {"trust_remote_code": True}})
    assert not remote_code_allowed({})
    [problem] = policy_problems(run, {})
    assert problem.startswith("model.trust_remote_code:") and "FINETUNE_ALLOW_REMOTE_CODE=1" in problem
    assert policy_problems(run, {"FINETUNE_ALLOW_REMOTE_CODE": "1"}) == []
    assert policy_problems(RunConfig(), {}) == []


def test_the_launch_and_cancel_handlers_apply_the_rule(monkeypatch):
    import gradio as gr

    from finetune.ui.live import check_access

    monkeypatch.setenv("SPACE_ID", "alice/lora-launchpad")
    monkeypatch.setenv("SYSTEM", "spaces")
    monkeypatch.delenv("FINETUNE_PUBLIC", raising=False)
    monkeypatch.delenv("FINETUNE_ALLOWED_USERS", raising=False)
    with pytest.raises(gr.Error, match="sign in"):
        check_access(None)
    def profile(name):
        return gr.OAuthProfile({"preferred_username": name, "name": name, "profile": "", "picture": ""})

    with pytest.raises(gr.Error, match="mallory"):
        check_access(profile("mallory"))
    check_access(profile("Alice"))
    monkeypatch.delenv("SPACE_ID")
    check_access(None)   # locally: no sign-in
