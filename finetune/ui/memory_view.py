"""The "Will it fit?" panel beside the live count: the GPU picker (#gpu-picker), the memory estimate as a
stacked bar of its components (#memory-estimate) with a verdict (#memory-verdict), and the button that applies
the proposed fix (#apply-fix). The numbers come from finetune.model.memory and the verdict and fix from
finetune.model.fit; this module only draws them and applies a fix through the form's own state, like a
widget change does (events.py).

The GPU choice lives in the form's state as "ui.gpu" (not a run-file key: the run file says what trains, not
where), so every form event redraws the panel in the same answer as the count, at no extra round trip.
"""

from __future__ import annotations

import html

import gradio as gr

from finetune.model import fit
from finetune.model.memory import PARTS, estimate, settings_of

KEY = "ui.gpu"
COLORS = {"weights": "#4c78a8", "trainable": "#f58518", "gradients": "#e45756", "optimizer": "#72b7b2",
          "activations": "#54a24b", "overhead": "#bab0ac"}
WORDS = {"fits": "fits", "tight": "tight", "no": "does not fit"}
HELP = ("Peak GPU memory of one training step on one device, from config.json: the weights as bitsandbytes "
        "stores them (the rest in float32), the adapters with their gradients and optimizer state, the activations "
        "of batch size x max_length tokens (every example full length; gradient checkpointing keeps one hidden "
        "state per layer), the CUDA context and allocator slack. It assumes the job's recipe: bf16 autocast (fp16 "
        "on a T4), SDPA attention, TRL's fused loss. The activation term still awaits GPU measurements.")
CSS = """
#memory-estimate .mem-line { font-weight: 600; }
#memory-estimate .mem-bar { display: flex; height: 14px; border-radius: 4px; overflow: hidden; margin: 4px 0;
  background: var(--background-fill-secondary); }
#memory-estimate .mem-bar span { display: block; height: 100%; }
#memory-estimate .mem-legend { font-size: 0.8rem; color: var(--body-text-color-subdued); }
#memory-estimate .mem-legend i { display: inline-block; width: 9px; height: 9px; margin: 0 3px 0 8px; }
#memory-verdict.fits { color: #2e7d32; } #memory-verdict.tight { color: #b26a00; } #memory-verdict.no { color: #c62828; }
"""


def choices() -> list[tuple[str, str]]:
    return [(g.label, g.key) for g in fit.gpus()]


def default_gpu() -> str:
    return fit.gpus()[0].key


def gb(n: int) -> str:
    return f"{n / 1e9:.1f} GB" if n >= 1e8 else f"{n / 1e6:.1f} MB"


def view(run, count, gpu_key: str | None, on: fit.Gpu | None = None) -> tuple[str, str | None, dict | None]:
    """(the panel's HTML, the fix button's label or None, the fix's run-file changes or None), for `on` (a
    Hugging Face Jobs flavour's GPU) or else the picker's GPU."""
    if run is None or count is None:
        return "<div class='mem-line'>Memory: &mdash;</div>", None, None
    on = on or fit.gpu(gpu_key)
    settings = settings_of(run, on.device)
    memory = estimate(count, settings)
    verdict = fit.verdict(memory, on)
    fix = fit.find_fix(count, settings, on, run.training.gradient_accumulation_steps) if verdict != "fits" else None
    if fix is None:
        return panel(memory, on, verdict, fix), None, None
    return panel(memory, on, verdict, fix), _label(fix), fix.changes


def panel(memory, on, verdict: str, fix) -> str:
    total = memory.total
    bar = "".join(f"<span class='mem-{k}' title='{k}: {gb(getattr(memory, k))}' style='width:"
                  f"{100 * getattr(memory, k) / max(total, on.memory):.2f}%;background:{COLORS[k]}'></span>"
                  for k in PARTS)
    legend = "".join(f"<i style='background:{COLORS[k]}'></i>{k} <span class='mem-{k}-value'>"
                     f"{gb(getattr(memory, k))}</span>" for k in PARTS)
    gpu = f"the {html.escape(on.label)} ({gb(on.memory)})"
    line = {"fits": f"Fits {gpu}.", "tight": f"Tight on {gpu}: it may run out of memory on long batches.",
            "no": f"Does not fit {gpu}."}[verdict]
    if fix is not None:
        line += (f" To fit: {html.escape('; '.join(fix.what))} (about {gb(fix.memory.total)}, "
                 f"{WORDS[fix.verdict]}).")
    elif verdict == "no":
        line += " Nothing short of a smaller model or a bigger GPU makes it fit."
    return (f"<div class='mem-box' data-total='{total}' data-verdict='{verdict}'>"
            f"<div class='mem-line'>About <span class='mem-total'>{gb(total)}</span> of GPU memory</div>"
            f"<div class='mem-bar'>{bar}</div><div class='mem-legend'>{legend}</div>"
            f"<div id='memory-verdict' class='{verdict}'>{line}</div></div>")


def _label(fix) -> str:
    short = {"training.gradient_checkpointing": "gradient checkpointing", "model.quantization": "4-bit",
             "training.per_device_train_batch_size": f"batch {fix.changes.get('training.per_device_train_batch_size')}",
             "data.max_length": f"max_length {fix.changes.get('data.max_length')}"}
    return "Apply: " + " + ".join(short[k] for k in fix.changes if k in short)


def build_picker(**layout) -> gr.Dropdown:
    """The GPU picker (#gpu-picker), the form's "ui.gpu" (layout.py puts it in the form's Training section,
    and the panel under the count); `layout`: gr.Dropdown's scale, min_width..."""
    return gr.Dropdown(choices(), value=default_gpu(), label="Will it fit on", elem_id="gpu-picker", info=HELP,
                       **layout)


def build_panel(ui, initial: dict) -> None:
    """The estimate with its verdict (#memory-estimate) and the fix button (#apply-fix)."""
    ui.memory = gr.HTML(initial.get("memory", ""), elem_id="memory-estimate")
    label = initial.get("fix_label")
    ui.apply_fix = gr.Button(label or "Apply the fix", visible=bool(label), size="sm", elem_id="apply-fix")


def updates(ui, panel_dict: dict) -> dict:
    """Updates of #memory-estimate and #apply-fix, keyed by component, from panel.understand()'s dict."""
    label = panel_dict.get("fix_label")
    return {ui.memory: panel_dict.get("memory", ""),
            ui.apply_fix: gr.Button(value=label or "Apply the fix", visible=bool(label))}

