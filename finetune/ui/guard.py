"""How the page and the HTTP API refuse a visitor: a gr.Error carrying the core's one-line messages, logged
as one line. Gradio prints a full traceback for every gr.Error unless told not to, so each bad YAML, unknown
run id or refused sign-in wrote ~40 lines to the app log (and a flood of them, megabytes); a refusal is
expected, not a bug, and one line says all there is to say."""

from __future__ import annotations

import logging

import gradio as gr

from finetune.runfile.limits import cut
from finetune.ui import access

log = logging.getLogger("finetune.app")


def user_error(message) -> gr.Error:
    """The gr.Error to raise for a problem the user caused: shown to them in full, logged in one line."""
    lines = str(message).splitlines() or [""]
    more = f" (+{len(lines) - 1} more)" if len(lines) > 1 else ""
    log.warning("refused: %s%s", cut(lines[0], 200), more)
    return gr.Error(str(message), print_exception=False)


def username(profile) -> str | None:
    return getattr(profile, "username", None) if profile else None


def require(profile, action: str = "launch or cancel runs") -> None:
    """Raise unless this visitor may `action` here (anyone locally; on a Space, signed-in allowed users)."""
    allowed, why = access.may_use(username(profile), action)
    if not allowed:
        raise user_error(why)
