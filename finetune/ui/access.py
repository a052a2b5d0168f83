"""Who may do what. Locally anyone who can reach the app may do anything. On a Hugging Face Space (SPACE_ID
is set) a visitor must sign in with the Space's LoginButton and be its owner or a listed user to launch or
cancel (a job spends the Space's GPU time), preview data or upload a dataset (both read or store files),
or see runs' errors and logs (they can quote the data); runs there read only uploads, the demo and the
Hub. Anyone may count parameters and watch the curves. Pure functions of the environment: tested without
a browser.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from finetune.runfile.limits import cut
from finetune.space import REMOTE_CODE_SWITCH, on_space, real_space
from finetune.space import remote_code_allowed as remote_code_allowed  # the page asks it here (the form's box)

on_a_space = real_space   # the owner's rule (finetune/space.py) under the name tests/security/test_small.py uses


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
    return on_space(env) and env.get("FINETUNE_PUBLIC", "").strip() != "1"


def may_launch(username: str | None, env: Mapping[str, str] | None = None) -> tuple[bool, str]:
    """(allowed, why not). `username` is the signed-in Hub user, None when nobody signed in."""
    return may_use(username, "launch or cancel runs", env)


def may_use(username: str | None, action: str, env: Mapping[str, str] | None = None) -> tuple[bool, str]:
    """The one sign-in rule, for every action that spends the Space's GPU, reads data or stores files:
    launch, cancel, preview data, upload a dataset. (allowed, why not), `action` naming it in the message."""
    env = os.environ if env is None else env
    if not login_required(env):
        return True, ""
    if not sign_in_possible(env):
        return False, (f"{action}: turned off, because sign-in with Hugging Face is unavailable here "
                       "(SPACE_ID is set, but this is not a Hugging Face Space or gradio[oauth] is missing)")
    if not username:
        return False, f"sign in with Hugging Face to {action} on this Space"
    if username.strip().lower() in allowed_users(env):
        return True, ""
    return False, (f"{cut(username, 40)} may not {action} on this Space; the owner can add them to "
                   "FINETUNE_ALLOWED_USERS or set FINETUNE_PUBLIC=1")


def sign_in_possible(env: Mapping[str, str] | None = None) -> bool:
    """Whether the page can offer Gradio's LoginButton. Outside a real Space, Gradio would mock sign-in
    with the host's own Hub account (it calls the Hub at start, and crashes offline or without a token):
    never for this app, whose rule then fails closed instead."""
    return real_space(env) and oauth_available()


def oauth_available() -> bool:
    """Whether Gradio's sign-in can work here (the gradio[oauth] extra: authlib, itsdangerous)."""
    import importlib.util

    return all(importlib.util.find_spec(name) for name in ("authlib", "itsdangerous"))


def policy_problems(run, env: Mapping[str, str] | None = None, uploads=None) -> list[str]:
    """What this server refuses in a run that is otherwise valid, one line each. `uploads`: the folder
    uploaded datasets are kept in (default: the runs directory's .uploads)."""
    from finetune.train.rewards import code_problems

    out = server_path_problems(run, env, uploads)
    if run.model.trust_remote_code and not remote_code_allowed(env):
        out.append("model.trust_remote_code: true is turned off on this server (its host can allow it with "
                   f"{REMOTE_CODE_SWITCH})")
    # A GRPO `python` reward runs the run file's own code, as trust_remote_code does: refused here, before
    # launch, by the job's own rule (the job asks it again, for runs that come another way).
    return out + code_problems(run, env)


# ----- what a visitor may see and name on a Space -----

HIDDEN_ERROR = "the reason is shown to signed-in users this Space allows"
HIDDEN_LOG = "The log is shown to signed-in users this Space allows."


def sees_details(username: str | None, env: Mapping[str, str] | None = None) -> bool:
    """Whether this visitor sees runs' errors and logs. They can quote the data (a CSV's header row is its
    column names), paths and the run file: on a Space only the users who may launch see them."""
    return may_use(username, "see run details", env)[0]


def visitor_status(status: dict, username: str | None, env: Mapping[str, str] | None = None) -> dict:
    """The error and the samples' prompts and answers (taken from the evaluation data by default) are the
    details a visitor who may not launch does not see."""
    if (status.get("error") or status.get("samples")) and not sees_details(username, env):
        hidden = {"error": HIDDEN_ERROR} if status.get("error") else {}
        return {**status, **hidden, **({"samples": []} if "samples" in status else {})}
    return status


def visitor_log(log: str, username: str | None, env: Mapping[str, str] | None = None) -> str:
    return log if sees_details(username, env) else HIDDEN_LOG


def server_path_problems(run, env: Mapping[str, str] | None = None, uploads=None) -> list[str]:
    """On a Space (SPACE_ID set, even by hand), a run may read only an upload, the built-in demo or the Hub:
    data.path and model.name_or_path naming the server's own files would let a visitor read them (a
    preview shows lines; an error, columns) or make the server walk a large folder for minutes."""
    from pathlib import Path

    from finetune.data.uploads import is_upload, uploads_dir
    from finetune.runfile import DEMO

    env = os.environ if env is None else env
    if not on_space(env):
        return []
    uploads = Path(uploads) if uploads is not None else uploads_dir(env=env)
    out = []
    data, model = run.data.path, run.model.name_or_path
    if data != DEMO and not is_upload(data, uploads) and not _hub_id(data):
        out.append(f'data.path: "{cut(data)}" is not readable on this Space: use an uploaded file, `demo` or a '
                   "Hub dataset id (user/name)")
    if model != DEMO and not _hub_id(model):
        out.append(f'model.name_or_path: "{cut(model)}" is not readable on this Space: use `demo` or a Hub '
                   "model id (user/name)")
    return out


def model_readable(name: str, env: Mapping[str, str] | None = None) -> bool:
    """Whether the page may read this model's config.json for its module list: anything locally; on a
    Space only the demo and Hub ids (server_path_problems)."""
    from finetune.runfile import DEMO

    return not on_space(env) or name == DEMO or _hub_id(name)


def _hub_id(name: str) -> bool:
    """A Hub repository id that no local file or folder shadows (libraries try a local path first)."""
    from pathlib import Path

    from finetune.data.files import FILE_TYPES, HUB_ID

    return (bool(HUB_ID.match(name)) and not name.startswith(".") and ".." not in name
            and Path(name).suffix.lower() not in FILE_TYPES and not Path(name).exists())
