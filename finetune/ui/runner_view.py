"""Where a launch trains, beside Launch: this machine, or a machine rented from Hugging Face Jobs (the run file's
`runner`, finetune/runfile/runner.py). Each flavour is listed with its GPU, its memory and its price per hour;
choosing one points the memory verdict at that GPU, and the note under Launch says what the run may cost: at
most its timeout's worth before it starts, and while it trains what it has cost so far and will have at its ETA.

Form keys "runner.flavor" ("local" or a flavour) and "runner.timeout" (finetune/ui/form.py maps them to and from
the run file).
"""

from __future__ import annotations

import dataclasses
import functools
import html
from types import SimpleNamespace

import gradio as gr

from finetune.jobs import hf_jobs
from finetune.model.fit import Gpu
from finetune.runfile.flavors import FLAVORS, Flavor, cost_usd
from finetune.runfile.runner import LOCAL, timeout_seconds
from finetune.ui.render import duration

FLAVOR, TIMEOUT = "runner.flavor", "runner.timeout"
KEYS = [FLAVOR, TIMEOUT]
DEFAULT_TIMEOUT = "2h"


@functools.lru_cache(maxsize=1)
def flavors() -> dict[str, Flavor]:
    """The table, with Hugging Face's current prices where it can be asked (once per app)."""
    live = hf_jobs.live_prices()
    return {name: dataclasses.replace(f, usd_per_hour=live.get(name, f.usd_per_hour))
            for name, f in FLAVORS.items()}


def price(f: Flavor) -> str:
    return f"${f.usd_per_hour:.2f}/h" if f.usd_per_hour is not None else "price: see the Hub"


def hardware(f: Flavor) -> str:
    return f.label + (" each" if f.gpus > 1 else "")


def choices() -> list[tuple[str, str]]:
    return [("This machine", LOCAL)] + [(f"HF Jobs: {f.name} ({hardware(f)}, {price(f)})", f.name)
                                        for f in flavors().values()]


def gpu_of(flavor_name: str | None) -> Gpu | None:
    """The GPU the memory verdict is for when a run goes to a Jobs flavour (one device of it); None for this
    machine or a CPU flavour."""
    f = flavors().get(flavor_name or "")
    if f is None or not f.gpus:
        return None
    return Gpu(f"hf:{f.name}", f"{f.label} on Hugging Face Jobs", f.gpu_memory, f.bf16)


def build_choice(ui: SimpleNamespace, values: dict) -> None:
    """The choice, in Launch's row (its options say what they are: no label, so the run's curve stays in view
    at 1366x768)."""
    ui.form[FLAVOR] = gr.Dropdown(choices(), value=values.get(FLAVOR) or LOCAL, show_label=False, container=False,
                                  scale=2, min_width=160, elem_id="runner-flavor")


def build_details(ui: SimpleNamespace, values: dict) -> None:
    """Under Launch, for a Jobs flavour only: its timeout and what the run may cost (#runner-note)."""
    remote = (values.get(FLAVOR) or LOCAL) != LOCAL
    with gr.Row(equal_height=True):
        ui.form[TIMEOUT] = gr.Textbox(values.get(TIMEOUT) or DEFAULT_TIMEOUT, label="Jobs timeout", scale=1,
                                      min_width=90, elem_id="runner-timeout", visible=remote,
                                      info="Then Hugging Face stops the job, and the bill: 30m, 2h, 1d.")
        ui.runner_note = gr.Markdown(note(values), elem_id="runner-note")


def updates(ui: SimpleNamespace, values: dict, text: str) -> dict:
    """The note and the timeout's visibility, for the Understand panel's updates."""
    return {ui.runner_note: text,
            ui.form[TIMEOUT]: gr.Textbox(visible=(values.get(FLAVOR) or LOCAL) != LOCAL)}


def note(values: dict) -> str:
    """Before launch: the flavour, its price, what it costs at most."""
    f = flavors().get(values.get(FLAVOR) or "")
    if f is None:
        return ""
    line = f"Trains on Hugging Face Jobs **{f.name}**: {html.escape(hardware(f))}, {price(f)}, billed per minute " \
           "to the account you sign in with."
    try:
        seconds = timeout_seconds(values.get(TIMEOUT) or DEFAULT_TIMEOUT)
    except AssertionError:   # an unreadable timeout: the form's problems say why
        return line
    if (most := cost_usd(f, seconds)) is not None:
        line += f" At most ${most:.2f} before its {duration(seconds)} timeout."
    return line


def cost_line(status: dict) -> str | None:
    """While a run trains on Jobs: its flavour, the cost so far and at its ETA (list price)."""
    job = status.get("hf_job")
    f = flavors().get(job.get("flavor", "")) if isinstance(job, dict) else None
    if f is None:
        return None
    parts = [f"on Hugging Face Jobs {f.name}"]
    elapsed, eta = status.get("elapsed_s"), status.get("eta_s")
    if isinstance(elapsed, (int, float)) and (so_far := cost_usd(f, elapsed)) is not None:
        parts.append(f"about ${so_far:.2f} so far")
        if status.get("state") == "running" and isinstance(eta, (int, float)):
            parts.append(f"${cost_usd(f, elapsed + eta):.2f} at its ETA")
    if job.get("url"):
        parts.append(f"[the job]({html.escape(str(job['url']), quote=True)})")
    return " · ".join(parts)
