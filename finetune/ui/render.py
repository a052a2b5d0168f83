"""HTML and Markdown for the page's read-only panels: plain functions of plain data, no Gradio."""

from __future__ import annotations

import html


def human_bytes(n: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:,.0f} {unit}" if unit == "B" else f"{n:,.1f} {unit}"
        n /= 1000
    return f"{n:,.1f} GB"


def human_count(n: int) -> str:
    """1234567 -> '1.2M', for labels where the exact number would be noise."""
    for limit, suffix in ((1e9, "B"), (1e6, "M"), (1e3, "K")):
        if n >= limit:
            return f"{n / limit:.1f}{suffix}"
    return str(n)


def count_headline(count, r: int | None = None, slope: int | None = None, alpha=None, rslora=False) -> str:
    """The live count: exact trainable parameters with thousands separators, the total, the percentage,
    the scaling factor and the adapter's file size. With `slope` (trainable parameters per unit of r,
    which they are affine in) the box carries what the page needs to redraw the count the moment the r
    slider moves, before the server's answer replaces it with the same numbers (events.PREDICT_JS)."""
    if count is None:
        return "<div class='count-line'>&mdash; trainable</div><div class='count-sub'>fix the settings below</div>"
    live = (f" data-r='{r}' data-slope='{slope}' data-trainable='{count.trainable}' data-total='{count.total}' "
            f"data-alpha='{alpha}' data-rslora='{int(bool(rslora))}'") if slope is not None else ""
    return (f"<div class='count-box'{live}>"
            f"<div class='count-line'><span class='trainable'>{count.trainable:,}</span> trainable parameters</div>"
            f"<div class='count-sub'>of <span class='total'>{count.total:,}</span> in total "
            f"(base model + adapter) &middot; "
            f"<span class='percent'>{count.percent:.4f}%</span> &middot; "
            f"scaling <span class='scaling'>{count.scaling:.4g}</span> &middot; "
            f"adapter file <span class='adapter-size'>{human_bytes(count.adapter_bytes)}</span></div></div>")


def _shape(row) -> str:
    shape = row.get("shape")
    if not shape:
        return ""
    shapes = shape if isinstance(shape[0], list) else [shape]
    return ", ".join(f"{a}&rarr;{b}" for a, b in shapes)


def count_details(count) -> str:
    """Per-module breakdown: what each target name contributes."""
    if count is None or not count.modules:
        return ""
    rows = []
    for name, row in count.modules.items():
        r = row.get("r") or ", ".join(str(x) for x in row.get("ranks", [])) or ("full" if row.get("full") else "")
        rows.append(f"<tr><td>{html.escape(name)}</td><td class='num'>{row.get('layers', '')}</td>"
                    f"<td>{_shape(row)}</td><td class='num'>{r}</td><td class='num'>{row['params']:,}</td></tr>")
    return ("<table><thead><tr><th>module</th><th class='num'>layers</th><th>in&rarr;out</th>"
            "<th class='num'>r</th><th class='num'>trainable</th></tr></thead><tbody>"
            + "".join(rows) + "</tbody></table>")


def problems(lines) -> str:
    """One line per problem, as the core wrote it (never a traceback)."""
    return "\n".join(f"- {line}" for line in lines or [])


def examples(texts) -> str:
    if not texts:
        return "_No examples._"
    return "\n\n".join(f"**Example {i}**\n\n```\n{text}\n```" for i, text in enumerate(texts, 1))


def group_label(group) -> str:
    """A target checkbox's label: the name, how many layers have it, and their shape."""
    shapes = ", ".join(f"{a}→{b}" for a, b in group.shapes[:2]) + ("…" if len(group.shapes) > 2 else "")
    return f"{group.name} ×{group.layers} ({shapes})"


def model_note(skel) -> str:
    tied = ", tied embeddings" if skel.tied else ""
    # The exact number, named as the base model's: the count beside it says "in total" with the adapter added.
    return f"{skel.architecture} ({skel.model_type}): {skel.total:,} parameters in the base model{tied}."


def duration(seconds) -> str:
    if seconds is None:
        return "?"
    seconds = round(seconds)
    if seconds < 60:
        return f"{seconds} s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes} min {seconds:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


def run_progress(status: dict) -> str:
    """One line on a run: state, step/total, speed, time left, queue place, error."""
    state = status.get("state", "queued")
    if state == "broken":   # its status.json is not a status (finetune/train/statusfile.py): only why
        return f"**broken** · {html.escape(str(status.get('error') or 'its status.json cannot be read'))}"
    parts = [f"**{state}**"]
    if state == "queued" and status.get("queue_position"):
        parts.append(f"number {status['queue_position']} in the queue")
    step, total = status.get("step") or 0, status.get("max_steps")
    if state == "running" and not step and not status.get("training_started_at"):
        parts.append("loading the model and the data")   # the job's setup: seconds before its first step
    elif state != "queued" or step:
        parts.append(f"step {step} / {total if total and total > 0 else '?'}")
    if status.get("tokens_per_second"):  # with several processes, TRL's count is already theirs together
        ranks = status.get("world_size") or 1
        parts.append(f"{status['tokens_per_second']:,.0f} tokens/s" + (f" ({ranks} processes)" if ranks > 1 else ""))
    if state == "running" and status.get("eta_s") is not None:
        parts.append(f"about {duration(status['eta_s'])} left")
    elif state != "queued" and status.get("elapsed_s") is not None:
        parts.append(f"{duration(status['elapsed_s'])} elapsed")
    if status.get("losses"):
        parts.append(f"last loss {status['losses'][-1][1]:.4f}")
    if status.get("stopped_early"):
        parts.append(stopped_early(status["stopped_early"]))
    line = " · ".join(parts)
    if status.get("error"):
        line += f"\n\n{html.escape(str(status['error']))}"
    return line


def stopped_early(stop: dict) -> str:
    """The progress line's note on an early stop (status.json's stopped_early, checked by jobs/report.py). A
    note rather than a mark on the chart: an extra series there would change its colour scale
    (finetune/ui/plots.py, point 1)."""
    metric = html.escape(stop.get("metric") or "eval_loss")
    best = f"best {metric} at step {stop['best_step']:,}" if stop.get("best_step") is not None else ""
    if best and stop.get("best_metric") is not None:
        best += f" ({stop['best_metric']:.4f})"
    return f"**stopped early** at step {stop['step']:,}" + (f", {best}" if best else "")


def run_label(summary: dict) -> str:
    """A run selector entry: the folder name (when, model, rank) and the state."""
    return f"{summary['run_id']} · {summary.get('state', '?')}"
