"""The "Force stop" button (#force-cancel): shown only once a graceful cancel of the selected run has taken
longer than the job manager's cancel_timeout, it kills the job without saving (JobManager.cancel(force=
True)); the run's status then says it was force-stopped. Cancel itself stays graceful however often it is
pressed (finetune/jobs/cancel.py)."""

from __future__ import annotations

import gradio as gr

from finetune.jobs import UnknownRun
from finetune.ui.guard import refusals, require, user_error
from finetune.ui.wiring import FAST


def wire_force(ui, jobs) -> None:
    shown_state = gr.State(False)   # whether the button is shown, so an unchanged poll sends nothing

    def offer(run_id, shown):
        """Show the button while the selected run's graceful stop is overdue; send nothing if unchanged."""
        try:
            wanted = bool(run_id) and bool(jobs.status(run_id).get("force_available"))
        except UnknownRun:
            wanted = False
        if wanted == bool(shown):
            return gr.skip()
        return {ui.force_cancel: gr.Button(visible=wanted), shown_state: wanted}

    def force(run_id, profile: gr.OAuthProfile | None = None):
        require(profile)
        if not run_id:
            raise user_error("no run selected")
        with refusals():
            status = jobs.cancel(run_id, force=True)
        gr.Info(f"Run {run_id}: {status['state']}" + (" (killed without saving)" if status.get("forced") else ""))
        return {ui.force_cancel: gr.Button(visible=False), shown_state: False}

    ui.timer.tick(offer, [ui.run_select, shown_state], [ui.force_cancel, shown_state], trigger_mode="always_last",
                  **FAST)
    ui.force_cancel.click(force, ui.run_select, [ui.force_cancel, shown_state], api_visibility="private")
