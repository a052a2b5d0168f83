"""The app's named HTTP endpoints, for gradio_client and scripts:

    /count   run file text (YAML or JSON) -> the object `python -m finetune count RUN --json` prints
    /launch  run file text -> run id (a run file with `runner: {hf_jobs: ...}` trains on Hugging Face Jobs, in
             the caller's account: on a Space, `Client(url, oauth_token=...)` with the jobs permission)
    /status  run id -> {"state", "step", "max_steps", "losses": [[step, loss], ...], "error", "series": the
             method's own curves by TRL's names ({"rewards/margins": [[step, value], ...]}), ...}
    /cancel  run id [, force] -> the same status object (force: kill now, without saving)

Problems come back as gr.Error with the core's one-line messages (gradio_client raises them as AppError).
"""

from __future__ import annotations

import gradio as gr

from finetune.runfile import parse_run
from finetune.ui import access
from finetune.ui.guard import refusals, require, user_error, username

STATUS_KEYS = ("run_id", "state", "step", "max_steps", "losses", "eval_losses", "error", "tokens_per_second",
               "elapsed_s", "eta_s", "queue_position", "stopping", "stopped_early", "samples", "series", "hf_job")
JOB_KEYS = ("id", "flavor", "stage", "url")   # of a run on Hugging Face Jobs (finetune/jobs/remote.py)


def checked_run(run_text: str):
    if run_text is not None and not isinstance(run_text, str):
        raise user_error(f"run file: must be YAML or JSON text, got {type(run_text).__name__}")
    with refusals():
        run = parse_run(run_text or "")
    problems = access.policy_problems(run)
    if problems:
        raise user_error("\n".join(problems))
    return run


def public_status(status: dict, profile=None) -> dict:
    """The status an API caller sees; on a Space, a visitor who may not launch gets no error text (it can
    quote the owner's data or paths: access.visitor_status)."""
    out = {k: status.get(k) for k in STATUS_KEYS}
    if isinstance(out["hf_job"], dict):
        out["hf_job"] = {k: out["hf_job"].get(k) for k in JOB_KEYS}
    return access.visitor_status(out, username(profile))


def register_api(jobs, keeper=None) -> None:
    """Declare the endpoints; call inside the app's gr.Blocks. `keeper`: push-when-done on a Space
    (finetune.adapter.keeper), which needs the launcher's own token."""

    def count(run_text: str) -> dict:
        """Trainable and total parameters of a run file, exactly as PEFT reports them, with the per-module
        breakdown: the same object as `python -m finetune count RUN --json`."""
        from finetune.model.memory import count_json

        with refusals():
            return count_json(checked_run(run_text), "api")

    def launch(run_text: str, profile: gr.OAuthProfile | None = None,
               oauth_token: gr.OAuthToken | None = None) -> str:
        """Queue a training run; returns its run id (its folder's name under the runs directory)."""
        require(profile)
        token = getattr(oauth_token, "token", None)
        with refusals():
            run = checked_run(run_text)
            if keeper is not None:
                keeper.check(run, token)
            # open pages follow it (ui/live.py); a run on Hugging Face Jobs runs with the caller's token
            run_id = jobs.submit(run, origin="api", token=token)
        if keeper is not None:
            keeper.remember(run_id, run, token)
        return run_id

    def status(run_id: str, profile: gr.OAuthProfile | None = None) -> dict:
        """A run's state, step, max_steps, losses [[step, loss], ...], error (null unless it failed) and
        stopping (a graceful cancel is under way)."""
        with refusals():
            return public_status(jobs.status(run_id), profile)

    def cancel(run_id: str, force: bool = False, profile: gr.OAuthProfile | None = None) -> dict:
        """Stop a run gracefully (it finishes its step and saves a checkpoint and its adapter); asking again
        while it stops changes nothing. force=true kills it at once without saving (its error says so).
        Returns its status."""
        require(profile)
        with refusals():
            return public_status(jobs.cancel(run_id, force=bool(force)), profile)

    # queue=False: these are quick reads and writes of files; none waits behind a slow UI event.
    gr.api(count, api_name="count", queue=False)
    gr.api(launch, api_name="launch", queue=False)
    gr.api(status, api_name="status", queue=False)
    gr.api(cancel, api_name="cancel", queue=False)
