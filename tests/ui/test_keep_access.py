"""Whose token pushes from the page: on a Space only the signed-in user's own (never the Space's HF_TOKEN),
handed to the push process as its HF_TOKEN; locally the machine's own login. Pure functions of the
environment, tested without a browser or the Hub."""

import subprocess

import gradio as gr
import pytest

from finetune.ui import keep

SPACE = {"SPACE_ID": "owner/launchpad", "SYSTEM": "spaces", "HF_TOKEN": "hf_space_owner"}


@pytest.fixture
def on_space(monkeypatch):
    for key, value in SPACE.items():
        monkeypatch.setenv(key, value)


@pytest.fixture
def spawned(monkeypatch):
    """The environment each `python -m finetune ...` would get (the process itself is not started)."""
    seen = []

    def run(args, **kwargs):
        seen.append(kwargs["env"])
        return subprocess.CompletedProcess(args, 0, "https://huggingface.co/alice/x\n", "")

    monkeypatch.setattr(keep.subprocess, "run", run)
    return seen


def test_on_a_space_only_the_visitors_own_token_pushes(on_space, spawned):
    with pytest.raises(gr.Error, match="sign in with Hugging Face to push"):
        keep.push_token(None)
    token = keep.push_token(gr.OAuthToken(token="hf_alice", scope="write-repos", expires_at=0))
    assert token == "hf_alice"
    keep.run_cli(["push", "run", "--repo-id", "alice/x"], token)
    assert spawned[-1]["HF_TOKEN"] == "hf_alice"
    keep.run_cli(["merge", "run", "--out", "x"])   # no token: the Space's is taken away, not passed on
    assert "HF_TOKEN" not in spawned[-1]


def test_locally_the_machine_login_pushes(monkeypatch, spawned):
    monkeypatch.delenv("SPACE_ID", raising=False)
    monkeypatch.setenv("HF_TOKEN", "hf_me")
    assert keep.push_token(None) is None
    keep.run_cli(["push", "run", "--repo-id", "me/x"], None)
    assert spawned[-1]["HF_TOKEN"] == "hf_me" and spawned[-1]["CUDA_VISIBLE_DEVICES"] == ""


def test_pushing_on_a_space_follows_the_launch_rule(on_space, monkeypatch):
    monkeypatch.setattr(keep.access, "sign_in_possible", lambda env=None: True)
    stranger = gr.OAuthProfile({"name": "Eve", "preferred_username": "eve", "profile": "", "picture": ""})
    owner = gr.OAuthProfile({"name": "Owner", "preferred_username": "owner", "profile": "", "picture": ""})
    with pytest.raises(gr.Error, match="eve may not push runs to the Hub"):
        keep.check_pusher(stranger, "hf_eve")
    keep.check_pusher(owner, "hf_owner")


def test_push_status_lines():
    assert keep.push_line({"state": "pushed", "repo_id": "a/b", "url": "https://huggingface.co/a/b"}) == \
        "Pushed to [a/b](https://huggingface.co/a/b)."
    assert "when the run completes" in keep.push_line({"state": "waiting", "repo_id": "a/b"})
    assert keep.push_line({}) == ""
