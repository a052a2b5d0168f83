"""Launch and watch: the Launch, Cancel and Resume buttons, the run selector, the live loss curve and the method's
own curves (#method-plot: a DPO run's reward margin, a GRPO run's rewards; hidden for SFT).

Everything shown is read from the run folders, never from this session's memory, so a reload or a second
browser shows the same run with its whole curve. A gr.Timer polls the selected run about every second; a
poll whose run has not changed since the last one sends nothing. A second timer re-reads the run list
every second, so every open page lists a new run within about a second of its submission, whoever
started it; the page switches to a new run only if it launched it itself (or it came through the HTTP
API while the page showed no active run), never to a run another page launched.
How the chart is updated so that it always draws is explained in finetune/ui/plots.py.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import gradio as gr

from finetune.errors import RunFileError
from finetune.jobs import UnknownRun, history
from finetune.train.runfolder import FINAL_STATES, RunFolder
from finetune.ui import access, best_step, plots, render, runner_view, samples_view
from finetune.ui.downloads import handout
from finetune.ui.guard import user_error, user_error_from
from finetune.ui.panel import form_run
from finetune.ui.wiring import FAST

ACTIVE = ("running", "queued")
LOG_CHARS = 3000   # the log box shows the last lines within this many characters
# The log box follows its end. (Gradio's own autoscroll scrolls once, on the first update after the box
# was at its bottom, and not on later updates; measured in Chromium.) Not while the user is in the box.
FOLLOW_LOG_JS = """
() => requestAnimationFrame(() => {
  const box = document.querySelector('#run-log textarea');
  if (box && document.activeElement !== box) box.scrollTop = box.scrollHeight;
})
"""

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


def log_tail(jobs, run_id: str) -> str:
    """The end of train.log from the start of a line (a tail cut mid-line began with "/s")."""
    log = jobs.log_tail(run_id, LOG_CHARS)
    if len(log) >= LOG_CHARS - 4 and "\n" in log:
        log = log.split("\n", 1)[1]
    return log


def run_choices(runs: list[dict]) -> list[tuple[str, str]]:
    return [(render.run_label(r), r["run_id"]) for r in runs]


def follow(runs: list[dict], known: set, mine: set, selected: str | None) -> str | None:
    """The new run (not in `known`) this page should switch to, or None: one it launched itself, or one
    from the HTTP API while the page shows no active run; never one another page launched."""
    states = {r["run_id"]: r["state"] for r in runs}
    idle = selected not in states or states[selected] not in ACTIVE
    for run in runs:   # newest first
        if run["run_id"] in known:
            continue
        if run["run_id"] in mine or (idle and run.get("origin") == "api"):
            return run["run_id"]
    return None


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


def may_download(profile) -> bool:
    """An adapter is what the run learned from its data: on a Space, downloaded only by the users who may
    launch (access.may_use), like the log and the errors."""
    return access.may_use(username(profile), "download adapters")[0]


def adapter_button(zip_path: str | None, run_id: str, seen: dict) -> gr.DownloadButton:
    """The adapter's download button: hidden without a zip; else a short-lived copy of it in Gradio's cache
    (finetune/ui/downloads.py: the runs folder is never served), handed out once per page and zip (`seen`)."""
    if not zip_path:
        return gr.DownloadButton(value=None, visible=False)
    seen["adapter"] = handout(zip_path, f"{run_id}-adapter.zip", seen.get("adapter"))
    return gr.DownloadButton(value=seen["adapter"], visible=True)


def list_update(runs: list[dict], selected, shown, mine) -> tuple | None:
    """(the run selector's update, the page's run list state) for the runs just read; None while the
    list has not changed (a redraw would close the menu under the user's pointer). A value is sent only to
    switch runs (follow()): a list read just before a Launch must not switch the page back. Polled every
    second by finetune/ui/runs.py, with the runs table, in one request."""
    choices = [list(c) for c in run_choices(runs)]
    known = set(shown["known"]) if shown else {r["run_id"] for r in runs}
    switch = follow(runs, known, set(mine or []), selected)
    if shown and choices == shown["choices"] and not switch:
        return None
    pairs = [(label, run_id) for label, run_id in choices]
    update = gr.Dropdown(choices=pairs, value=switch) if switch else gr.Dropdown(choices=pairs)
    return update, {"choices": choices, "known": sorted(known | {r["run_id"] for r in runs})}


def wire_live(ui, jobs) -> None:
    def selector(selected=None):
        runs = history.summaries(jobs.runs_dir)
        ids = {r["run_id"] for r in runs}
        return gr.Dropdown(choices=run_choices(runs), value=selected if selected in ids else pick_run(runs))

    def watch(run_id, profile) -> dict:
        """What the watch panel shows for one run (or none). `data_key` changes when the curves do, `key`
        when anything shown does (the progress line's seconds too)."""
        if not run_id:
            text = "No run yet: configure one in the form and press **Launch training**."
            return {"key": ["none"], "data_key": ["none"], "curves": None, "series": None,
                    "settings": plots.loss_settings(None, 0, False),
                    "method_settings": plots.method_settings(None, None, 0), "progress": text, "log": "",
                    "state": None, "resumable": False, "adapter": None, "stopping": False, "samples": []}
        try:
            status = access.visitor_status(jobs.status(run_id), username(profile))
            log = access.visitor_log(log_tail(jobs, run_id), username(profile))
            records = jobs.metrics(run_id)
            curves: dict = history.curves(records)   # and the best evaluation, below
        except UnknownRun:
            gone = f"gone:{run_id}"
            return {**watch(None, profile), "key": [gone], "data_key": [gone], "progress": f"Run {run_id} is gone."}
        folder = RunFolder(Path(jobs.runs_dir) / run_id)
        state, final = status["state"], status["state"] in FINAL_STATES
        # A run on Hugging Face Jobs keeps its checkpoints in its bucket folder, not here.
        resumable = state in ("cancelled", "failed") and (bool(history.checkpoints(folder))
                                                          or status.get("runner") == "hf_jobs")
        settings = history.settings(folder)
        eval_size = ((settings.get("data") or {}).get("eval_size") or 0)
        curves["best"] = best_step.best_eval(records, status.get("stopped_early"), settings)   # marked on the curve
        last = curves["train"][-1][0] if curves["train"] else 0
        progress = render.run_progress(status)
        if (cost := runner_view.cost_line(status)) is not None:   # a run on Hugging Face Jobs: what it costs
            line, _, error = progress.partition("\n\n")
            progress = f"{line} · {cost}" + (f"\n\n{error}" if error else "")
        series = status.get("series") or {}   # the method's curves (finetune/jobs/report.py)
        data_key = [run_id, state, len(curves["train"]), len(curves["eval"]), curves["train"][-1:],
                    sum(len(points) for points in series.values())]
        samples = status.get("samples") or []   # none for a visitor who may not launch (access.visitor_status)
        key = [*data_key, progress, status.get("stopping"), len(log), log[-80:], resumable, samples_view.key(samples)]
        return {"key": key, "data_key": data_key, "curves": curves, "series": series, "state": state,
                "resumable": resumable, "method_settings": plots.method_settings(series, status.get("max_steps"), last),
                "samples": samples,
                "log": log, "stopping": bool(status.get("stopping")),
                "settings": plots.loss_settings(status.get("max_steps"), last, bool(eval_size) or
                                                bool(curves["eval"])),
                "progress": progress,
                "adapter": adapter_zip(jobs.runs_dir, run_id) if final and may_download(profile) else None}

    def view(run_id, seen, profile: gr.OAuthProfile | None = None) -> dict:
        """The watch panel's changes since `seen` (a component left out of the dict is left as it is). On a
        Space, a visitor who may not launch sees no error text or log (access.visitor_status).

        The curves go out only when they changed (a long run's frame is large; the progress line changes
        every second). The charts' settings (x range, legend) go out in a poll of their own, after the
        run's data, and the data goes again on the next two polls (finetune/ui/plots.py, point 2)."""
        seen = dict(seen or {})
        panel = watch(run_id, profile)
        same_run = bool(seen.get("key")) and seen["key"][0] == panel["key"][0]
        settings = {**panel["settings"], "method": panel["method_settings"]}
        # The method chart's series come and go with the run (none until its first log): its settings wait
        # until a frame naming each has gone out, or the rebuilt spec would have no colour for them.
        drawn = set(panel["method_settings"]["color_map"]) <= set(seen.get("method_names") or [])
        if settings != seen.get("settings") and same_run and drawn:
            loss = panel["settings"]
            return {ui.loss_plot: gr.LinePlot(**loss), ui.lr_plot: gr.LinePlot(x_lim=loss["x_lim"]),
                    ui.method_plot: gr.LinePlot(**panel["method_settings"]),
                    ui.seen: {**seen, "settings": settings, "resend": 2}}
        resend = seen.get("resend") or 0
        if panel["key"] == seen.get("key") and not resend:
            return gr.skip()   # every output as it is (Gradio refuses an empty dict)
        out: dict = {}
        if panel["data_key"] != seen.get("data_key") or resend:
            out = {ui.loss_plot: plots.loss_frame(panel["curves"]), ui.lr_plot: plots.lr_frame(panel["curves"]),
                   ui.method_plot: plots.method_frame(panel["series"])}
            seen["method_names"] = plots.method_series(panel["series"])
        out.update(samples_view.updates(ui, panel["samples"], seen))   # only when the answers changed
        active = panel["state"] in ACTIVE
        seen.update(key=panel["key"], data_key=panel["data_key"], resend=max(0, resend - 1))
        return {**out, ui.progress: panel["progress"], ui.log: panel["log"],
                ui.cancel: gr.Button(visible=active, interactive=not panel["stopping"]),
                ui.resume: gr.Button(visible=panel["resumable"]),
                ui.adapter: adapter_button(panel["adapter"], run_id, seen), ui.seen: seen}

    watch_outputs = [ui.loss_plot, ui.lr_plot, ui.method_plot, ui.progress, ui.log, ui.cancel, ui.resume, ui.adapter, ui.seen,
                     ui.samples]
    ui.timer.tick(view, [ui.run_select, ui.seen], watch_outputs, trigger_mode="always_last", **FAST)
    ui.run_select.change(view, [ui.run_select, ui.seen], watch_outputs, **FAST)
    ui.show_lr.change(lambda on: gr.LinePlot(visible=bool(on)), ui.show_lr, ui.lr_plot, **FAST)
    ui.log.change(None, None, None, js=FOLLOW_LOG_JS, **FAST)

    def on_launch(values, extra, info, mine, request: gr.Request, profile: gr.OAuthProfile | None = None,
                  oauth_token: gr.OAuthToken | None = None):
        check_access(profile)
        with ui.locked(request):   # the form as the last change left it
            _, run, problems = form_run(values, extra, info)
        if run is None:
            raise user_error("\n".join(problems))
        keeper, token = getattr(ui, "keeper", None), getattr(oauth_token, "token", None)
        try:
            if keeper is not None:   # hub.repo_id on a Space: pushed with the launcher's token (adapter/keeper.py)
                keeper.check(run, token)
            run_id = jobs.submit(run, token=token)   # the token: for a run on Hugging Face Jobs only
        except RunFileError as exc:
            raise user_error_from(exc) from None
        if keeper is not None:
            keeper.remember(run_id, run, token)
        gr.Info(f"Run {run_id} submitted.")
        return selector(run_id), [*(mine or []), run_id]

    ui.launch.click(on_launch, [ui.values, ui.extra, ui.model_info, ui.mine], [ui.run_select, ui.mine],
                    api_visibility="private")

    def on_resume(run_id, profile: gr.OAuthProfile | None = None, oauth_token: gr.OAuthToken | None = None):
        check_access(profile)
        try:
            status = jobs.resume(run_id, token=getattr(oauth_token, "token", None))
        except (UnknownRun, RunFileError) as exc:
            raise user_error_from(exc) from None
        gr.Info(f"Run {run_id} resumes from its last checkpoint ({status['state']}).")
        return gr.Button(visible=False)

    ui.resume.click(on_resume, ui.run_select, ui.resume, api_visibility="private")

    def on_cancel(run_id, profile: gr.OAuthProfile | None = None):
        check_access(profile)
        if not run_id:
            raise user_error("no run selected")
        try:
            status = jobs.cancel(run_id)
        except UnknownRun as exc:
            raise user_error_from(exc) from None
        gr.Info(f"Run {run_id}: {'cancelling' if status['state'] == 'running' else status['state']}.")
        return gr.Button(interactive=False)

    ui.cancel.click(on_cancel, ui.run_select, ui.cancel, api_visibility="private")


def on_page_load(jobs):
    """A fresh page (or a reload) selects the newest running or queued run: it re-attaches to it. It also
    sets the page's run list state (ui.run_list): runs that exist when the page opens are not "new" to it."""
    def load():
        runs = history.summaries(jobs.runs_dir)
        choices = run_choices(runs)
        return (gr.Dropdown(choices=choices, value=pick_run(runs)),
                {"choices": [list(c) for c in choices], "known": [r["run_id"] for r in runs]})
    return load
