"""The app's named HTTP endpoints, for gradio_client and scripts:

    /count   run file text (YAML or JSON) -> the object `python -m finetune count RUN --json` prints
    /launch  run file text -> run id
    /status  run id -> {"state", "step", "max_steps", "losses": [[step, loss], ...], "error", ...}
    /cancel  run id -> the same status object

Problems come back as gr.Error with the core's one-line messages (gradio_client raises them as AppError).
"""

from __future__ import annotations

import gradio as gr

from finetune.runfile import parse_run
from finetune.errors import RunFileError
from finetune.jobs import UnknownRun
from finetune.ui import access
from finetune.ui.live import check_access

STATUS_KEYS = ("run_id", "state", "step", "max_steps", "losses", "eval_losses", "error", "tokens_per_second",
               "elapsed_s", "eta_s", "queue_position")


def checked_run(run_text: str):
    try:
        run = parse_run(run_text or "")
    except RunFileError as exc:
        raise gr.Error("\n".join(exc.problems)) from None
    problems = access.policy_problems(run)
    if problems:
        raise gr.Error("\n".join(problems))
    return run


def public_status(status: dict) -> dict:
    return {k: status.get(k) for k in STATUS_KEYS}


def register_api(jobs) -> None:
    """Declare the endpoints; call inside the app's gr.Blocks."""

    def count(run_text: str) -> dict:
        """Trainable and total parameters of a run file, exactly as PEFT reports them, with the per-module
        breakdown: the same object as `python -m finetune count RUN --json`."""
        from finetune.model.count import count_run

        try:
            return count_run(checked_run(run_text)).to_json("api")
        except RunFileError as exc:
            raise gr.Error("\n".join(exc.problems)) from None

    def launch(run_text: str, profile: gr.OAuthProfile | None = None) -> str:
        """Queue a training run; returns its run id (its folder's name under the runs directory)."""
        check_access(profile)
        try:
            return jobs.submit(checked_run(run_text))
        except RunFileError as exc:
            raise gr.Error("\n".join(exc.problems)) from None

    def status(run_id: str) -> dict:
        """A run's state, step, max_steps, losses [[step, loss], ...] and error (null unless it failed)."""
        try:
            return public_status(jobs.status(run_id))
        except UnknownRun as exc:
            raise gr.Error(str(exc)) from None

    def cancel(run_id: str, profile: gr.OAuthProfile | None = None) -> dict:
        """Stop a run gracefully (it saves its adapter); returns its status."""
        check_access(profile)
        try:
            return public_status(jobs.cancel(run_id))
        except UnknownRun as exc:
            raise gr.Error(str(exc)) from None

    # queue=False: these are quick reads and writes of files; none waits behind a slow UI event.
    gr.api(count, api_name="count", queue=False)
    gr.api(launch, api_name="launch", queue=False)
    gr.api(status, api_name="status", queue=False)
    gr.api(cancel, api_name="cancel", queue=False)
