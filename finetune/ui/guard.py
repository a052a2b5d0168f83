"""How the page and the HTTP API refuse a visitor: a gr.Error carrying the core's one-line messages, logged
as one line. Gradio prints a full traceback for every gr.Error unless told not to, so each bad YAML, unknown
run id or refused sign-in wrote ~40 lines to the app log (and a flood of them, megabytes); a refusal is
expected, not a bug, and one line says all there is to say."""

from __future__ import annotations

import logging
from typing import Any

import gradio as gr

from finetune.runfile.limits import cut
from finetune.ui import access

log = logging.getLogger("finetune.app")


def user_error(message) -> gr.Error:
    """The gr.Error to raise for a problem the user caused: shown to them in full, logged in one line."""
    error = gr.Error(str(message), print_exception=False)
    if not getattr(gr.Error, "_one_line", False):   # quiet_user_errors() logs it otherwise
        lines = str(message).splitlines() or [""]
        more = f" (+{len(lines) - 1} more)" if len(lines) > 1 else ""
        log.warning("refused: %s%s", cut(lines[0], 200), more)
    return error


def username(profile) -> str | None:
    return getattr(profile, "username", None) if profile else None


def require(profile, action: str = "launch or cancel runs") -> None:
    """Raise unless this visitor may `action` here (anyone locally; on a Space, signed-in allowed users)."""
    allowed, why = access.may_use(username(profile), action)
    if not allowed:
        raise user_error(why)


def quiet_user_errors() -> None:
    """Make every gr.Error of this app (whichever module raises it) a one-line log entry instead of a
    traceback, unless it asks for one. gr.Error is by definition what a handler shows the user: a refusal,
    not a crash; any other exception still prints its traceback. Called once by build_app."""
    # Any: this replaces a method of gradio's class on purpose, which mypy refuses on the typed class
    cls: Any = gr.Error
    if getattr(cls, "_one_line", False):
        return
    original = cls.__init__

    def __init__(self, *args, **kwargs):
        if len(args) < 5 and "print_exception" not in kwargs:
            kwargs["print_exception"] = False
        original(self, *args, **kwargs)
        if not self.print_exception:
            lines = str(self.message).splitlines() or [""]
            more = f" (+{len(lines) - 1} more)" if len(lines) > 1 else ""
            log.warning("refused: %s%s", cut(lines[0], 200), more)

    cls.__init__ = __init__
    cls._one_line = True
