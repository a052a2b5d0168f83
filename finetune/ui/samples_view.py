"""The selected run's samples under its curve (#run-samples): prompt by prompt, the answer at each evaluation,
oldest first, so a user reads how what the model says changed as it trained, not only its loss.

The samples ride the watch poll (ui/live.py): `key()` joins the panel's key, so a poll sends them only when
a new answer came in or the run changed. What a poll has is /status's newest answers (jobs/report.py), which
access.visitor_status empties for a visitor who may not launch on a Space (the prompts and answers can quote
the data): the box is then hidden, as for a run without samples.
"""

from __future__ import annotations

import hashlib
import html
import json

import gradio as gr

SHOWN_CHARS = 600   # of each answer: the box stays compact; /status cuts them at 1,000 already
PROMPT_CHARS = 200

# Inline styles: the box is self-contained (the page's CSS belongs to layout.py).
BLOCK = "margin:0 0 0.6rem 0;padding:0.4rem 0.6rem;border:1px solid var(--border-color-primary);border-radius:6px"
PROMPT = "font-weight:600;margin-bottom:0.2rem;white-space:pre-wrap"
ROW = "display:flex;gap:0.6rem;font-size:0.9rem;align-items:baseline"
STEP = "flex:0 0 5.5rem;color:var(--body-text-color-subdued);font-variant-numeric:tabular-nums"
ANSWER = "white-space:pre-wrap;overflow-wrap:anywhere"
SAME = "color:var(--body-text-color-subdued);font-style:italic"


def build() -> dict:
    """{"samples": the box}, hidden until the selected run has answers; place it under the loss chart."""
    return {"samples": gr.HTML("", visible=False, label="Samples", elem_id="run-samples")}


def key(samples: list[dict]) -> str:
    """A short digest of the answers a poll read: changes exactly when the box would."""
    return hashlib.sha1(json.dumps(samples, sort_keys=True).encode()).hexdigest()[:16] if samples else ""


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[:limit].rstrip() + " …"


def samples_html(samples: list[dict]) -> str:
    """One block per prompt (in the order they were first answered), listing step -> answer, oldest first;
    an answer the same as the one before says so instead of repeating it. Everything is HTML-escaped: the
    prompts come from the user's data and the answers from the model."""
    by_prompt: dict[str, list[dict]] = {}
    for record in sorted(samples, key=lambda r: r["step"]):   # stable: one step's prompts keep their order
        by_prompt.setdefault(record["prompt"], []).append(record)
    blocks = []
    for prompt, records in by_prompt.items():
        rows, previous = [], None
        for r in records:
            if r["answer"] == previous:
                text = f"<span style='{SAME}'>(unchanged)</span>"
            else:
                text = html.escape(_cut(r["answer"], SHOWN_CHARS)) or f"<span style='{SAME}'>(empty)</span>"
            rows.append(f"<div style='{ROW}'><span style='{STEP}'>step {r['step']:,}</span>"
                        f"<span style='{ANSWER}'>{text}</span></div>")
            previous = r["answer"]
        blocks.append(f"<div class='sample' style='{BLOCK}'><div style='{PROMPT}'>"
                      f"{html.escape(_cut(prompt, PROMPT_CHARS))}</div>{''.join(rows)}</div>")
    return (f"<div class='samples-head' style='font-weight:600;margin:0.4rem 0'>Samples: the model's answers at "
            f"each evaluation</div>{''.join(blocks)}")


def updates(ui, samples: list[dict], seen: dict) -> dict:
    """The box's update for this poll, or {} when the answers are those it shows (`seen["samples"]`, which
    this sets)."""
    now = key(samples)
    if seen.get("samples") == now and "samples" in seen:
        return {}
    seen["samples"] = now
    if not samples:
        return {ui.samples: gr.HTML("", visible=False)}
    return {ui.samples: gr.HTML(samples_html(samples), visible=True)}
