"""Launch and watch: the Launch and Cancel buttons, the run selector, and the live loss curve.

Everything shown is read from the run folders through the JobManager, never from this session's memory,
so a reload or a second browser shows the same run with its whole curve. A gr.Timer polls the selected
run about every second; a poll whose run has not changed since the last one sends nothing.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import gradio as gr
import pandas as pd

from finetune.errors import RunFileError
from finetune.jobs import UnknownRun
from finetune.train.runfolder import FINAL_STATES
from finetune.ui import access, render
from finetune.ui.panel import form_run

ACTIVE = ("running", "queued")
EMPTY_PLOT = pd.DataFrame({"step": pd.Series(dtype=int), "loss": pd.Series(dtype=float),
                           "series": pd.Series(dtype=str)})


def username(profile) -> str | None:
    return getattr(profile, "username", None) if profile else None


def check_access(profile) -> None:
    from finetune.ui.guard import require

    require(profile)   # raises a gr.Error that is logged in one line, not a traceback


def pick_run(runs: list[dict]) -> str | None:
    """What a fresh page shows: the newest running or queued run, else the newest run."""
    for run in runs:
        if run["state"] in ACTIVE:
            return run["run_id"]
    return runs[0]["run_id"] if runs else None


def loss_frame(status: dict) -> pd.DataFrame:
    rows = [(s, l, "train") for s, l in status.get("losses", [])]
    rows += [(s, l, "eval") for s, l in status.get("eval_losses", [])]
    if not rows:
        return EMPTY_PLOT
    return pd.DataFrame(rows, columns=["step", "loss", "series"])


def adapter_zip(runs_dir: Path, run_id: str) -> str | None:
    """The run's adapter/ as a zip (made once, next to it), or None when the run wrote no adapter."""
    folder = Path(runs_dir) / run_id
    adapter = folder / "adapter"
    if not (adapter / "adapter_config.json").is_file():
        return None
    target = folder / "adapter.zip"
    newest = max(p.stat().st_mtime for p in adapter.iterdir())
    if not target.is_file() or target.stat().st_mtime < newest:
        tmp = shutil.make_archive(str(folder / ".adapter-zip"), "zip", root_dir=adapter)
        Path(tmp).replace(target)
    return str(target)


def wire_live(ui, jobs) -> None:
    def run_list(selected=None) -> tuple[list, str | None]:
        runs = jobs.list_runs()
        choices = [(render.run_label(r), r["run_id"]) for r in runs]
        return choices, selected if selected in {r["run_id"] for r in runs} else pick_run(runs)

    def selector(selected=None):
        choices, value = run_list(selected)
        return gr.Dropdown(choices=choices, value=value)

    def refresh_list(selected, shown):
        """The run list, re-read from the folders; nothing is sent while it has not changed (a redraw
        would close the menu under the user's pointer)."""
        choices, value = run_list(selected)
        key = [[list(c) for c in choices], value]
        if key == shown:
            return gr.skip(), gr.skip()
        return gr.Dropdown(choices=choices, value=value), key

    def view(run_id, seen, profile: gr.OAuthProfile | None = None):
        """The watch panel for one run; gr.skip() everywhere when nothing changed since `seen`. On a Space,
        a visitor who may not launch sees no error text or log (access.visitor_status)."""
        if not run_id:
            if seen == "none":
                return [gr.skip()] * 7
            return (EMPTY_PLOT, "No run yet: configure one above and press **Launch training**.", "",
                    gr.Button(interactive=False), gr.DownloadButton(visible=False), gr.skip(), "none")
        try:
            status = access.visitor_status(jobs.status(run_id), username(profile))
            log = access.visitor_log(jobs.log_tail(run_id, 3000), username(profile))
        except UnknownRun:
            return (EMPTY_PLOT, f"Run {run_id} is gone.", "", gr.Button(interactive=False),
                    gr.DownloadButton(visible=False), gr.skip(), None)
        key = [run_id, status["state"], status.get("step"), len(status["losses"]), len(status["eval_losses"]),
               status.get("queue_position"), len(log), log[-80:], status.get("error")]
        if key == seen:
            return [gr.skip()] * 7
        final = status["state"] in FINAL_STATES
        zipped = adapter_zip(jobs.runs_dir, run_id) if final else None
        download = gr.DownloadButton(value=zipped, visible=True) if zipped else gr.DownloadButton(visible=False)
        # The run's state is in its selector label too: relabel when it changes.
        relabel = selector(run_id) if seen and seen[0] == run_id and seen[1] != status["state"] else gr.skip()
        return (loss_frame(status), render.run_progress(status), log, gr.Button(interactive=not final),
                download, relabel, key)

    watch_outputs = [ui.loss_plot, ui.progress, ui.log, ui.cancel, ui.adapter, ui.run_select, ui.seen]
    fast = dict(queue=False, show_progress="hidden", api_visibility="private")
    ui.timer.tick(view, [ui.run_select, ui.seen], watch_outputs, trigger_mode="always_last", **fast)
    ui.run_select.change(view, [ui.run_select, gr.State(None)], watch_outputs, **fast)
    ui.list_timer.tick(refresh_list, [ui.run_select, ui.run_list], [ui.run_select, ui.run_list], **fast)

    def on_launch(values, extra, info, request: gr.Request, profile: gr.OAuthProfile | None = None,
                  oauth_token: gr.OAuthToken | None = None):
        check_access(profile)
        with ui.locked(request):   # the form as the last change left it
            _, run, problems = form_run(values, extra, info)
        if run is None:
            raise gr.Error("\n".join(problems))
        keeper, token = getattr(ui, "keeper", None), getattr(oauth_token, "token", None)
        try:
            if keeper is not None:   # hub.repo_id on a Space: pushed with the launcher's token (adapter/keeper.py)
                keeper.check(run, token)
            run_id = jobs.submit(run)
        except RunFileError as exc:
            raise gr.Error("\n".join(exc.problems)) from None
        if keeper is not None:
            keeper.remember(run_id, run, token)
        gr.Info(f"Run {run_id} submitted.")
        return selector(run_id)

    ui.launch.click(on_launch, [ui.values, ui.extra, ui.model_info], ui.run_select, api_visibility="private")

    def on_cancel(run_id, profile: gr.OAuthProfile | None = None):
        check_access(profile)
        if not run_id:
            raise gr.Error("no run selected")
        try:
            status = jobs.cancel(run_id)
        except UnknownRun as exc:
            raise gr.Error(str(exc)) from None
        gr.Info(f"Run {run_id}: {'cancelling' if status['state'] == 'running' else status['state']}.")
        return gr.Button(interactive=False)

    ui.cancel.click(on_cancel, ui.run_select, ui.cancel, api_visibility="private")


def on_page_load(jobs):
    """A fresh page (or a reload) selects the newest running or queued run: it re-attaches to it."""
    def load():
        runs = jobs.list_runs()
        return gr.Dropdown(choices=[(render.run_label(r), r["run_id"]) for r in runs], value=pick_run(runs))
    return load
