"""The Playground: pick a run, type a prompt, and read the base model's and the adapter's answers side by
side as they stream in; then keep the result (keep.py: merge, push to the Hub).

Generation runs in the worker process of finetune.adapter.service (never in the app), on a job-manager
slot; this module only turns its events into page updates. `/generate` is the same thing over HTTP.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import gradio as gr

from finetune.adapter.generate import MAX_PROMPT_CHARS, GenSettings, check_prompt
from finetune.adapter.source import checkpoints, find_adapter
from finetune.errors import RunFileError
from finetune.ui import access
from finetune.ui.guard import refusals, require, run_folder, user_error
from finetune.ui.keep import build_keep
from finetune.ui.wiring import FAST

PLAYABLE = ("completed", "cancelled", "running")
NO_RUN = "No run with an adapter yet: a run offers one when it completes, is stopped, or saves a checkpoint."


def build_section() -> SimpleNamespace:
    """The Playground's components (call inside the page's gr.Blocks, where the section should appear)."""
    p = SimpleNamespace()
    gr.Markdown("## Playground\nAsk the trained adapter and its base model the same question, side by side.")
    with gr.Row(equal_height=False):
        p.run = gr.Dropdown([], value=None, label="Run", scale=5, elem_id="playground-run",
                            info="A completed or stopped run's adapter, or the newest checkpoint of a run still "
                            "training.")
        p.refresh = gr.Button("Refresh runs", size="sm", scale=0, min_width=120, elem_id="playground-refresh")
    p.prompt = gr.Textbox(label="Prompt", lines=2, placeholder="Ask what your data teaches, e.g. a question "
                          "from it", elem_id="playground-prompt", max_length=MAX_PROMPT_CHARS,
                          info="Sent as one user turn of the chat template when the tokenizer has one, as plain "
                          "text otherwise.")
    with gr.Row():
        p.go = gr.Button("Generate", variant="primary", elem_id="playground-go", scale=2)
        p.stop = gr.Button("Stop", elem_id="playground-stop", scale=1)
        p.compare = gr.Checkbox(True, label="Compare with the base model", elem_id="playground-compare", scale=2)
    with gr.Accordion("Generation settings", open=False), gr.Row():
        p.max_new_tokens = gr.Slider(1, 1024, value=GenSettings.max_new_tokens, step=1, label="max_new_tokens",
                                     info="Tokens each answer may add.", elem_id="playground-max-new-tokens")
        p.temperature = gr.Slider(0, 2, value=GenSettings.temperature, step=0.05, label="temperature",
                                  info="0 is greedy: the same prompt always gets the same answer.",
                                  elem_id="playground-temperature")
        p.top_p = gr.Slider(0.05, 1, value=GenSettings.top_p, step=0.05, label="top_p",
                            info="When sampling, only from the likeliest tokens holding this much probability.",
                            elem_id="playground-top-p")
    p.status = gr.Markdown(elem_id="playground-status")
    with gr.Row(equal_height=True):
        p.answer_base = gr.Textbox(label="Base model", lines=6, max_lines=20, interactive=False,
                                   elem_id="answer-base")
        p.answer_adapter = gr.Textbox(label="Adapter", lines=6, max_lines=20, interactive=False,
                                      elem_id="answer-adapter")
    p.keep = build_keep()
    p.shown = gr.State(None)   # the run choices last sent, to skip unchanged updates
    p.timer = gr.Timer(5.0)    # a run that just finished, or saved a checkpoint, appears within seconds
    return p


def playable_runs(jobs) -> list[tuple[str, str]]:
    """(label, run id) of each run with an adapter to try, newest first. Only file names are looked at (this
    runs every few seconds); find_adapter checks the chosen run properly."""
    out = []
    for summary in jobs.list_runs():
        if summary["state"] not in PLAYABLE:
            continue
        path = jobs.runs_dir / summary["run_id"]
        final = (path / "adapter" / "adapter_config.json").is_file()
        saved = checkpoints(path)
        if summary["state"] == "running" and saved:
            what = f"running, checkpoint-{saved[-1][0]}"
        elif final or saved:
            what = summary["state"]
        else:
            continue
        out.append((f"{summary['run_id']} · {what}", summary["run_id"]))
    return out


def answer_labels(runs_dir, run_id: str | None) -> tuple[str, str]:
    """The two answer boxes' labels for a run as it is now: its base model, and the adapter a generation would
    use (find_adapter: "final adapter" once saved, else "checkpoint-N (state)"). They are read again whenever
    the run's choice changes (wire_playground), so a run that completed is no longer "(running)". Raises
    RunFileError when the run has no adapter (yet)."""
    if not run_id:
        return "Base model", "Adapter"
    source = find_adapter(Path(runs_dir) / run_id)
    return f"Base model ({source.run.model.name_or_path})", f"Adapter ({source.label})"


def checked_source(jobs, run_id: str):
    folder = run_folder(jobs, run_id)
    with refusals():
        source = find_adapter(folder)
    problems = access.policy_problems(source.run)   # e.g. trust_remote_code on a server that forbids it
    if problems:
        raise user_error("\n".join(problems))
    return source


def settings_of(max_new_tokens, temperature, top_p) -> GenSettings:
    with refusals():
        return GenSettings.checked(max_new_tokens=max_new_tokens, temperature=temperature, top_p=top_p)


def checked_prompt(prompt) -> str:
    """The prompt, or a refusal in one line naming it: the first check, as it costs nothing whatever it holds."""
    with refusals():
        return check_prompt(prompt)


def describe_done(event: dict) -> str:
    tokens = event.get("tokens") or {}
    seconds = event.get("seconds") or 0
    count = " and ".join(f"{n} tokens ({side})" for side, n in tokens.items())
    first = event.get("first_token_s")
    text = f"Done: {count} in {seconds:.2f} s" + (f", first token after {first:.2f} s" if first is not None else "")
    if event.get("stopped") == "time limit":
        text += f"; stopped at this server's time limit of {event.get('time_limit_s') or 0:g} s"
    return text


def wire_playground(ui, jobs, playground) -> None:
    p = ui.playground

    def labels(run_id) -> dict:
        """The answer boxes named after the run's base model and the adapter it offers now (labels only: an
        answer being streamed into them stays)."""
        try:
            base, adapter = answer_labels(jobs.runs_dir, run_id)
        except (RunFileError, OSError):
            return {}
        return {p.answer_base: gr.Textbox(label=base), p.answer_adapter: gr.Textbox(label=adapter)}

    def choices(selected=None, shown=None):
        """The runs to try, when they changed: a run's state or newest checkpoint is in its choice, so its
        answer labels follow too (the selection itself, and so its change event, may stay the same)."""
        runs = playable_runs(jobs)
        ids = [run_id for _, run_id in runs]
        value = selected if selected in ids else (ids[0] if ids else None)
        key = [[list(c) for c in runs], value]
        if key == shown:
            return gr.skip()
        return {p.run: gr.Dropdown(choices=runs, value=value), p.shown: key, **(labels(value) if value else {})}

    listed = [p.run, p.shown, p.answer_base, p.answer_adapter]
    gr.on([p.refresh.click, p.timer.tick], choices, [p.run, p.shown], listed, **FAST)
    gr.on(None, lambda: choices(), None, listed, **FAST)   # no triggers: when a page loads

    def on_select(run_id):
        """Name the two answer boxes after the run's base model and adapter."""
        if not run_id:
            return {p.answer_base: gr.Textbox(label="Base model"), p.answer_adapter: gr.Textbox(label="Adapter"),
                    p.status: NO_RUN}
        return {**labels(run_id), p.status: ""}

    p.run.change(on_select, p.run, [p.answer_base, p.answer_adapter, p.status], **FAST)

    def on_generate(run_id, prompt, compare, max_new_tokens, temperature, top_p,
                    profile: gr.OAuthProfile | None = None):
        require(profile, "try runs in the Playground")   # it spends the GPU, like a launch
        checked_prompt(prompt)
        source = checked_source(jobs, run_id)
        settings = settings_of(max_new_tokens, temperature, top_p)
        base_note = "" if compare else "(not compared: tick “Compare with the base model”)"
        yield {p.status: "Starting…", p.answer_base: base_note, p.answer_adapter: ""}
        with refusals():
            for event in playground.generate(source.folder.path, prompt, settings, compare=compare):
                kind = event["event"]
                if kind == "waiting":
                    yield {p.status: f"⏳ {event['message']}"}
                elif kind == "loading":
                    yield {p.status: f"Loading the base model and the {event.get('label') or 'adapter'}…"}
                elif kind == "tick":
                    yield {p.status: gr.skip()}   # nothing new; Gradio sees here whether the page is still open
                else:
                    answers = event["answers"]
                    status = describe_done(event) if kind == "done" else "Generating…"
                    yield {p.status: status, p.answer_base: answers.get("base", base_note),
                           p.answer_adapter: answers.get("adapter", "")}

    generating = gr.on([p.go.click, p.prompt.submit], on_generate,
                       [p.run, p.prompt, p.compare, p.max_new_tokens, p.temperature, p.top_p],
                       [p.status, p.answer_base, p.answer_adapter], api_visibility="private",
                       concurrency_limit=8, show_progress="minimal")
    # Stopping cancels the page's stream; the service then tells the worker to stop (and waits for it).
    p.stop.click(playground.stop, None, None, cancels=[generating], **FAST)

    from finetune.ui.keep import wire_keep

    wire_keep(ui, jobs)


def register_generate_api(jobs, playground) -> None:
    """/generate: (run id, prompt, max_new_tokens, temperature) -> {"adapter", "base", "stopped"}, streamed as
    the answers grow (gradio_client's predict() returns the last, complete one). A generator on purpose: Gradio
    closes it when its caller disconnects or cancels, which stops the generation (adapter/service.py); a plain
    function would run on for nobody."""

    def generate(run_id: str, prompt: str, max_new_tokens: int = 128, temperature: float = 0.0,
                 profile: gr.OAuthProfile | None = None) -> Iterator[dict]:
        """The run's adapter's and its base model's answers to the prompt (greedy when temperature is 0), as they
        grow. "stopped" is null when both ended by themselves, "time limit" when the server's limit ended them."""
        require(profile, "try runs in the Playground")   # it spends the GPU, like a launch
        checked_prompt(prompt)
        settings = settings_of(max_new_tokens, temperature, 1.0)
        source = checked_source(jobs, run_id)
        answers = {"adapter": "", "base": "", "stopped": None}
        with refusals():
            for event in playground.generate(source.folder.path, prompt, settings, compare=True):
                answers.update(event.get("answers") or {})
                if event["event"] == "done":
                    yield {**answers, "stopped": event.get("stopped")}
                    return
                yield dict(answers)   # also while waiting: each yield is where a caller that left is noticed
        raise user_error("the generation ended without an answer")

    gr.api(generate, api_name="generate", concurrency_limit=8)
