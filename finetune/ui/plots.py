"""The data and settings behind the page's line charts (#loss-plot, #lr-plot, #compare-plot), written around
how Gradio 6's gr.LinePlot draws in the browser (measured in headless Chromium, see tests/ui/test_ui_browser.py):

1. The colour scale is built from the series present in the data the chart holds when its Vega spec is
   built (the first value it is sent, or when a setting such as x_lim changes), and a later value only
   swaps the data. A chart whose first value had no rows (a run that had not logged yet) got an empty
   colour domain and drew every later line with no stroke: axes, grid and nothing else, until a reload
   built the spec from data. The same left an eval series that appears mid-run undrawn.
   So every loss frame starts with one empty row (step and loss null, which Vega leaves out) per series:
   the colour domain always holds train, eval and best eval, whatever the chart held first.
2. When a setting and a value change in one update, the spec is rebuilt from the value the chart held
   before, and the new value goes to the view being replaced. So settings (x_lim, the legend) are sent in
   an update of their own, after the data, and the data is sent again on the next polls.
3. Steps are whole numbers: the x axis spans at least MIN_SPAN steps from 0 and its labels are integers
   (a 20-step run was labelled 0.0, 0.5, 1.0, ...: Vega puts about one tick per 40 pixels).
4. The chart draws every series as a line, and a line through one point is drawn as nothing (hover
   aside). So the best evaluation (finetune/ui/best_step.py) is a series of its own, "best eval": a
   vertical rule at its step across the range of the losses drawn, through its eval loss (the point a
   pointer over the rule's middle names). Its range is the curves' own, so it never rescales the y axis.
"""

from __future__ import annotations

import pandas as pd

BEST = "best eval"
SERIES = ("train", "eval", BEST)
COLORS = {"train": "#1f77b4", "eval": "#ff7f0e", BEST: "#2ca02c"}
# Run colours in the compare chart (Tableau 10, as Vega's default; distinct from grey and each other).
PALETTE = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#bcbd22", "#17becf"]
MIN_SPAN = 40   # steps: at ~40 px a tick, whole-number ticks on a chart up to ~1,600 px wide
X_FORMAT = "d"  # d3-format: integers


def _frame(rows: list[tuple], y: str, color: str | None) -> pd.DataFrame:
    data = {"step": pd.Series([r[0] for r in rows], dtype="float64"),
            y: pd.Series([r[1] for r in rows], dtype="float64")}
    if color:
        data[color] = pd.Series([r[2] for r in rows], dtype="str")
    return pd.DataFrame(data)


def loss_frame(curves: dict | None) -> pd.DataFrame:
    """Train and eval loss by step, led by one empty row per series (point 1 above), then the mark of the best
    evaluation, curves["best"]: (step, its eval loss or None), or None (point 4)."""
    curves = curves or {}
    # The rule's row first: the chart draws the series in the order they first appear, so it lies beneath the
    # curves (drawn over them, it hid the end of the eval line).
    rows: list[tuple] = [(None, None, name) for name in (BEST, *SERIES[:2])]
    for name in ("train", "eval"):
        rows += [(step, value, name) for step, value in curves.get(name, [])]
    rows += [(step, value, BEST) for step, value in best_rule(curves)]
    return _frame(rows, "loss", "series")


def best_rule(curves: dict) -> list[tuple[int, float]]:
    """The points of the best evaluation's rule: at its step, the lowest loss drawn, its eval loss (when
    recorded), the highest; none without a best or a loss drawn."""
    best = curves.get("best")
    values = [value for name in ("train", "eval") for _, value in curves.get(name, [])]
    if not best or not values:
        return []
    step, value = best
    return [(step, y) for y in (min(values), value, max(values)) if y is not None]


def lr_frame(curves: dict | None) -> pd.DataFrame:
    """The learning rate by step (one series: no colour scale to fix)."""
    return _frame([(s, v) for s, v in (curves or {}).get("learning_rate", [])], "learning_rate", None)


def compare_frame(curves_by_run: dict[str, dict]) -> pd.DataFrame:
    """Train loss by step for each run, coloured by run id."""
    rows = [(step, loss, run_id) for run_id, curves in curves_by_run.items() for step, loss in curves["train"]]
    return _frame(rows, "loss", "run")


def x_lim(max_steps, last_step=0) -> list[float | None]:
    """[0, the run's length] (at least MIN_SPAN): the curve fills in from the left as the run goes. Without
    a known length (a run by epochs, before it starts) the span doubles as needed, so it changes rarely."""
    if max_steps and max_steps > 0:
        return [0, max(MIN_SPAN, int(max_steps), int(last_step or 0))]
    span = MIN_SPAN
    while span < (last_step or 0):
        span *= 2
    return [0, span]


def loss_settings(max_steps, last_step, has_eval: bool) -> dict:
    """The chart settings for one run, sent apart from its data (point 2). A run with an evaluation split
    names its eval and best eval series from the start, so the legend does not change mid-run."""
    return {"x_lim": x_lim(max_steps, last_step), "colors_in_legend": list(SERIES if has_eval else SERIES[:1])}


def compare_colors(run_ids: list[str]) -> dict[str, str]:
    return {run_id: PALETTE[i % len(PALETTE)] for i, run_id in enumerate(run_ids)}


# --- the method's own curves (#method-plot): preference margins and accuracy, or GRPO's rewards ---

# TRL's names drawn for each method (finetune/jobs/report.py's `series`): DPO, ORPO and KTO log how far the
# chosen answers' implicit reward is above the rejected ones' (margins) and how often it is (accuracies, not
# KTO); GRPO the mean reward and each reward's own mean (rewards/<name>/mean). The other series /status
# carries (rewards/chosen, kl, reward_std...) stay in metrics.jsonl.
METHOD_CURVES = ("rewards/margins", "rewards/accuracies", "reward")


def method_series(series: dict | None) -> list[str]:
    """The names drawn, in a fixed order: the method's key curves, then each GRPO reward's mean (when several)."""
    series = series or {}
    each = sorted(n for n in series if n.startswith("rewards/") and n.endswith("/mean"))
    # One reward's mean is the mean reward over its weight: the same curve, drawn once.
    return [n for n in METHOD_CURVES if n in series] + (each if len(each) > 1 else [])


def method_frame(series: dict | None) -> pd.DataFrame:
    """The method's curves by step, led by one empty row per series drawn (point 1: the colour domain is the
    series present when the chart's spec is built, which method_settings then triggers, point 2)."""
    names = method_series(series)
    rows = [(None, None, name) for name in names]
    for name in names:
        rows += [(step, value, name) for step, value in (series or {})[name]]
    return _frame(rows, "value", "series")


def method_settings(series: dict | None, max_steps, last_step) -> dict:
    """The method chart's settings for one run, sent apart from its data (point 2): shown only when the run
    logs the method's curves (never for SFT), a colour per series, the loss chart's x range."""
    names = method_series(series)
    title = "Rewards" if "reward" in names else "Reward margin and accuracy"
    return {"visible": bool(names), "color_map": {n: PALETTE[i % len(PALETTE)] for i, n in enumerate(names)},
            "x_lim": x_lim(max_steps, last_step), "title": title}
