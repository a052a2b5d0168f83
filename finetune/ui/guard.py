"""How the page and the HTTP API refuse a visitor: the UI's one error boundary. Every refusal is raised as
`user_error(...)`: a gr.Error carrying the core's one-line messages, logged as one line. Gradio prints a full
traceback for every gr.Error unless told not to, so each bad YAML, unknown run id or refused sign-in wrote ~40
lines to the app log (and a flood of them, megabytes); a refusal is expected, not a bug, and one line says all
there is to say. The core's own errors (any finetune.errors.FinetuneError: RunFileError, UnknownRun, the
Playground's GenerationError and WorkerCrashed, PushError) become one through `refusals()` or `user_error_from()`."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator

import gradio as gr

from finetune.errors import FinetuneError
from finetune.runfile.limits import cut
from finetune.ui import access

log = logging.getLogger("finetune.app")


def user_error(message) -> gr.Error:
    """The gr.Error to raise for a problem the user caused: shown to them in full, logged in one line."""
    lines = str(message).splitlines() or [""]
    more = f" (+{len(lines) - 1} more)" if len(lines) > 1 else ""
    log.warning("refused: %s%s", cut(lines[0], 200), more)
    return gr.Error(str(message), print_exception=False)


def user_error_from(exc: FinetuneError) -> gr.Error:
    """The user_error for one of the core's errors: a run file's problems one per line, what is wrong with a
    run id, a crashed worker said as such."""
    return user_error("\n".join(exc.lines()))


@contextlib.contextmanager
def refusals() -> Iterator[None]:
    """`with refusals(): ...`: a FinetuneError raised inside reaches the user as a user_error (without the
    core's traceback chained to it); any other exception passes unchanged."""
    try:
        yield
    except FinetuneError as exc:
        raise user_error_from(exc) from None


def username(profile) -> str | None:
    return getattr(profile, "username", None) if profile else None


def require(profile, action: str = "launch or cancel runs") -> None:
    """Raise unless this visitor may `action` here (anyone locally; on a Space, signed-in allowed users)."""
    allowed, why = access.may_use(username(profile), action)
    if not allowed:
        raise user_error(why)


def run_folder(jobs, run_id: str):
    """The folder of a run id a user sent (checked by the job manager: a plain name under its runs dir), or a
    refusal. Here, at the boundary, because the Playground and its keep section (keep.py) both ask it."""
    if not run_id:
        raise user_error("choose a run first")
    with refusals():
        jobs.status(run_id)
    return jobs.runs_dir / run_id
