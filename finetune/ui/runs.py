"""All runs at a glance and side by side: the runs table (#runs-table, newest first, from the run folders),
and comparing runs (#compare-runs picks two or more; #compare-plot overlays their train loss, one colour
per run; #config-diff lists only the settings that differ, e.g. `lora.r: 8 | 16`). What is read from the
folders is finetune.jobs.history's; this module formats and wires it.
"""

from __future__ import annotations

from pathlib import Path

import gradio as gr
import pandas as pd

from finetune.jobs import history
from finetune.runfile.limits import cut
from finetune.train.runfolder import RunFolder
from finetune.ui import plots, render
from finetune.ui.live import list_update
from finetune.ui.wiring import FAST


def _num(value, fmt: str) -> str:
    return "" if value is None else format(value, fmt)


RUNS_COLUMNS = {   # header -> cell of a history.summary row
    "run": lambda r: r["run_id"],
    "state": lambda r: f"broken: {cut(r['error'] or '', 90)}" if r["state"] == "broken" else r["state"],
    "model": lambda r: f"{r['model'] or ''}" + (f" ({r['quantization']})" if r.get("quantization") not in
                                                 (None, "none") else ""),
    "method": lambda r: r.get("method") or "sft",
    "r / alpha": lambda r: f"{r['r']} / {r['lora_alpha']}",
    "targets": lambda r: r["targets"],
    "trainable": lambda r: _num(r["trainable"], ","),
    "last loss": lambda r: _num(r["last_loss"], ".4f"),
    "best loss": lambda r: _num(r["best_loss"], ".4f"),
    "tokens/s": lambda r: _num(r["tokens_per_second"], ",.0f"),
    "steps": lambda r: "" if r["state"] == "broken" else f"{r['step'] or 0} / {r['max_steps'] or '?'}",
    "duration": lambda r: render.duration(r["duration_s"]) if r["duration_s"] is not None else "",
}


def table(rows: list[dict]) -> pd.DataFrame:
    return pd.DataFrame([[cell(r) for cell in RUNS_COLUMNS.values()] for r in rows], columns=list(RUNS_COLUMNS))


def _show(value) -> str:
    if value is None:
        return "(unset)"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(map(str, value)) + "]"
    return str(value)


def diff_text(run_ids: list[str], rows: list[tuple[str, list]]) -> str:
    """Markdown: one line per differing key, `lora.r: 8 | 16`, values in the order of `run_ids`."""
    if len(run_ids) < 2:
        return "Select two or more runs to compare their curves and settings."
    if not rows:
        return f"Settings that differ between {' | '.join(run_ids)}: none."
    lines = [f"Settings that differ (values for {' | '.join(run_ids)}):", ""]
    lines += [f"- `{key}`: {' | '.join(_show(v) for v in values)}" for key, values in rows]
    return "\n".join(lines)


def with_method(settings: dict) -> dict:
    """A run's settings with its method named: an sft run's run.yaml has no method section, which the diff would
    show as (unset) beside another run's `dpo`."""
    if not isinstance(settings.get("method"), dict):
        settings["method"] = {"name": "sft"}
    return settings


def compare_data(runs_dir, run_ids: list[str]):
    """(the compare chart's frame or None, the config diff's Markdown) for the chosen runs."""
    known = {p.name for p in history.run_dirs(runs_dir)}   # ids come from the page: names, never paths
    folders = {run_id: RunFolder(Path(runs_dir) / run_id) for run_id in run_ids if run_id in known}
    ids = list(folders)
    diff = diff_text(ids, history.config_diff({k: with_method(history.settings(f)) for k, f in folders.items()}))
    if not ids:
        return None, diff
    return plots.compare_frame({k: history.curves(f.read_metrics()) for k, f in folders.items()}), diff


def wire_runs(ui, jobs) -> None:

    def refresh(selected, run_list, mine, shown, compared):
        """Every second, in one request: the run selector's list (ui/live.py list_update), the table and the
        compare choices, each sent only when it changed. The compare chart follows runs still training
        (data only: its runs and colours are unchanged)."""
        rows = history.summaries(jobs.runs_dir)
        out: dict = {}
        if (listed := list_update(rows, selected, run_list, mine)) is not None:
            out[ui.run_select], out[ui.run_list] = listed
        key = [[cell(r) for cell in RUNS_COLUMNS.values()] for r in rows]
        if key != shown:
            if compared and len(compared) >= 2 and shown is not None:
                old = {row[0]: row for row in shown}
                if any(old.get(row[0]) != row for row in key if row[0] in compared):
                    out[ui.compare_plot] = compare_data(jobs.runs_dir, compared)[0]
            out.update({ui.runs_table: pd.DataFrame(key, columns=list(RUNS_COLUMNS)), ui.runs_shown: key,
                        ui.compare_runs: gr.Dropdown(choices=[r["run_id"] for r in rows])})
        return out or gr.skip()   # Gradio refuses an empty dict

    ui.list_timer.tick(refresh, [ui.run_select, ui.run_list, ui.mine, ui.runs_shown, ui.compare_runs],
                       [ui.run_select, ui.run_list, ui.runs_table, ui.compare_runs, ui.compare_plot, ui.runs_shown],
                       trigger_mode="always_last", **FAST)

    def on_compare(run_ids):
        """The chart is shown only while it has runs to draw: an empty chart is a blank box with a spinner."""
        frame, diff = compare_data(jobs.runs_dir, run_ids or [])
        return gr.LinePlot(value=frame, visible=frame is not None), diff

    def compare_settings(run_ids):
        """Sent after the data, on its own (finetune/ui/plots.py, point 2): the chart's spec is rebuilt from
        the data it now holds, with a colour for each run."""
        known = {p.name for p in history.run_dirs(jobs.runs_dir)}
        ids = [r for r in run_ids or [] if r in known]
        if not ids:
            return gr.skip()
        last = max((history.summary(RunFolder(jobs.runs_dir / r))["step"] or 0 for r in ids), default=0)
        return gr.LinePlot(color_map=plots.compare_colors(ids), x_lim=plots.x_lim(None, last))

    ui.compare_runs.change(on_compare, ui.compare_runs, [ui.compare_plot, ui.config_diff],
                           trigger_mode="always_last", **FAST) \
        .then(compare_settings, ui.compare_runs, ui.compare_plot, **FAST)

    def on_row(event: gr.SelectData):
        row = getattr(event, "row_value", None) or []
        return row[0] if row else gr.skip()

    ui.runs_table.select(on_row, None, ui.run_select, **FAST)
