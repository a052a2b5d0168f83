"""Who may launch and cancel jobs. Locally anyone who can reach the app may; on a Hugging Face Space
(SPACE_ID is set) a visitor must sign in with the Space's LoginButton and be its owner or a listed user,
because a job spends the Space's GPU time. Pure functions of the environment: tested without a browser.
"""

from __future__ import annotations

import os
from collections.abc import Mapping


def space_owner(space_id: str | None) -> str | None:
    """'alice/my-space' -> 'alice'."""
    if not space_id or "/" not in space_id:
        return None
    return space_id.split("/", 1)[0].strip() or None


def allowed_users(env: Mapping[str, str]) -> set[str]:
    """The Space owner plus FINETUNE_ALLOWED_USERS (comma-separated), compared case-insensitively
    because Hub user names are."""
    users = {u.strip().lower() for u in env.get("FINETUNE_ALLOWED_USERS", "").split(",") if u.strip()}
    owner = space_owner(env.get("SPACE_ID"))
    if owner:
        users.add(owner.lower())
    return users


def login_required(env: Mapping[str, str] | None = None) -> bool:
    """Whether launching needs a signed-in user: on a Space, unless FINETUNE_PUBLIC=1."""
    env = os.environ if env is None else env
    return bool(env.get("SPACE_ID")) and env.get("FINETUNE_PUBLIC", "").strip() != "1"


def may_launch(username: str | None, env: Mapping[str, str] | None = None) -> tuple[bool, str]:
    """(allowed, why not). `username` is the signed-in Hub user, None when nobody signed in."""
    env = os.environ if env is None else env
    if not login_required(env):
        return True, ""
    if not username:
        return False, "sign in with Hugging Face to launch or cancel runs on this Space"
    if username.strip().lower() in allowed_users(env):
        return True, ""
    return False, (f"{username} may not launch or cancel runs on this Space; the owner can add them to "
                   "FINETUNE_ALLOWED_USERS or set FINETUNE_PUBLIC=1")


def oauth_available() -> bool:
    """Whether Gradio's sign-in can work here (the gradio[oauth] extra: authlib, itsdangerous)."""
    import importlib.util

    return all(importlib.util.find_spec(name) for name in ("authlib", "itsdangerous"))


def remote_code_allowed(env: Mapping[str, str] | None = None) -> bool:
    """trust_remote_code runs a model repository's Python in this server: off unless the host opts in."""
    env = os.environ if env is None else env
    return env.get("FINETUNE_ALLOW_REMOTE_CODE", "").strip() == "1"


def policy_problems(run, env: Mapping[str, str] | None = None) -> list[str]:
    """What this server refuses in a run that is otherwise valid, one line each."""
    if run.model.trust_remote_code and not remote_code_allowed(env):
        return ["model.trust_remote_code: true is turned off on this server (its host can allow it with "
                "FINETUNE_ALLOW_REMOTE_CODE=1)"]
    return []
