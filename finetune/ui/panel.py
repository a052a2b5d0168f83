"""What the Configure and Understand panels compute from the form's values: the chosen model's modules,
the checked run, the live count and its breakdown, the run file text. Event wiring is in events.py.

`values` is the form as a dict keyed like finetune.ui.form.FORM_KEYS; `extra` holds run-file keys the
form has no widget for; `info` is the chosen model's module list (model_info()).
"""

from __future__ import annotations

import dataclasses

import gradio as gr

from finetune.demo import RUN_FILE
from finetune.errors import RunFileError
from finetune.runfile import DEMO, RunConfig, dump_yaml, load_run
from finetune.ui import access, memory_view, render, runner_view
from finetune.ui.form import FORM_KEYS, METHOD_KEYS, form_to_run, run_to_form


def model_info(values: dict) -> dict:
    """The chosen model's adaptable module groups, for the target checkboxes (empty when unreadable: the
    count then names the problem)."""
    from finetune.model.architecture import inspect_model

    if not access.model_readable(values.get("model.name_or_path") or DEMO):   # a server path on a Space
        return {"choices": [], "all_linear": [], "note": ""}
    try:
        skel = inspect_model(values.get("model.name_or_path") or DEMO, revision=values.get("model.revision") or None,
                       trust_remote_code=bool(values.get("model.trust_remote_code")) and access.remote_code_allowed())
    except RunFileError:
        return {"choices": [], "all_linear": [], "note": ""}
    groups = skel.adaptable()
    return {"choices": [(render.group_label(g), g.name) for g in groups],
            "all_linear": [g.name for g in groups if g.all_linear], "note": render.model_note(skel)}


def form_run(values: dict, extra: dict, info: dict) -> tuple[dict, RunConfig | None, list[str]]:
    """(the run file as a dict, the checked run or None, problems) for the form's values."""
    raw = form_to_run(values, extra, (info or {}).get("all_linear", []))
    try:
        run = RunConfig.from_dict(raw)
    except RunFileError as exc:
        return raw, None, exc.problems
    problems = access.policy_problems(run)
    return raw, (None if problems else run), problems


def understand(values: dict, extra: dict, info: dict) -> dict:
    """The Understand panel: count, breakdown, problems, and whether Launch is on."""
    from finetune.model.count import count_run

    _, run, problems = form_run(values, extra, info)
    count = slope = None
    if run is not None:
        try:
            count = count_run(run)
            slope = count_run(dataclasses.replace(run, lora=dataclasses.replace(run.lora, r=run.lora.r + 1))) \
                .trainable - count.trainable
        except RunFileError as exc:
            problems = exc.problems
    headline = render.count_headline(count, run and run.lora.r, slope, run and run.lora.lora_alpha,
                                     run and run.lora.use_rslora)
    # A run sent to Hugging Face Jobs is judged against that flavour's GPU, not the picker's.
    on = runner_view.gpu_of(values.get(runner_view.FLAVOR))
    memory, fix_label, fix = memory_view.view(run, count, values.get(memory_view.KEY), on)   # microseconds
    return {"count": headline, "details": render.count_details(count),
            "errors": render.problems(problems), "launchable": count is not None,
            "memory": memory, "fix_label": fix_label, "fix": fix, "runner_note": runner_view.note(values)}


def count_outputs(ui) -> list:
    """The components count_view updates, for an event's outputs: #param-count, #count-details, #form-errors,
    #launch, #memory-estimate, #apply-fix, #runner-note and the Jobs timeout (shown for a Jobs flavour)."""
    return [ui.param_count, ui.count_details, ui.errors, ui.launch, ui.memory, ui.apply_fix, ui.runner_note,
            ui.form[runner_view.TIMEOUT]]


def count_view(ui, values: dict, extra: dict, info: dict) -> dict:
    """The Understand panel's updates, keyed by component (count_outputs(ui))."""
    panel = understand(values, extra, info)
    return {ui.param_count: panel["count"], ui.count_details: panel["details"], ui.errors: panel["errors"],
            ui.launch: gr.Button(interactive=panel["launchable"]), **memory_view.updates(ui, panel),
            **runner_view.updates(ui, values, panel["runner_note"])}


def run_file_text(values: dict, extra: dict, info: dict) -> str:
    """The run file being built: fully resolved when valid, as typed otherwise."""
    raw, run, _ = form_run(values, extra, info)
    return dump_yaml(run.to_dict() if run is not None else raw)


def retarget(values: dict, info: dict) -> dict:
    """The form's targets after the model changed: ticked modules it still has stay; with the all-linear
    switch on (or nothing left ticked) it takes the new model's all-linear set."""
    choices = [c[1] for c in info["choices"]]
    ticked = [t for t in values.get("ui.targets") or [] if t in choices]
    switch = bool(values.get("ui.all_linear")) or not ticked
    if switch:
        ticked = sorted(set(ticked) | set(info["all_linear"]), key=choices.index)
    return {**values, "ui.targets": ticked, "ui.all_linear": switch}


def initial() -> dict:
    """The default form: its values, the default model's info and Understand panel, and the run file text,
    computed once when the app is built (this also reads the demo model, so the first count is fast)."""
    values = run_to_form(load_run(RUN_FILE).to_dict(), [])  # the page opens on the demo run
    info = model_info(values)
    values = retarget(values, info)
    return {"values": values, "info": info, **understand(values, {}, info),
            "run_file": run_file_text(values, {}, info)}


def form_values(run: dict, info: dict) -> dict:
    """The form's values for a whole run dict (a preset laid over the form, or a loaded file)."""
    full = RunConfig().to_dict()
    for section, body in run.items():
        if isinstance(body, dict) and isinstance(full.get(section), dict):
            full[section].update(body)
        elif section in ("method", "runner") and isinstance(body, dict):   # absent from a default run's dict
            full[section] = dict(body)
    return run_to_form(full, info.get("all_linear", []))


def widget_updates(values: dict, info: dict, before: dict, info_before: dict) -> dict:
    """{form key: update} for the form widgets whose value changed from `before`, and only those (redrawing
    all of them, and answering their change events, would take the browser half a second)."""
    out = {}
    for key in FORM_KEYS:
        if key in METHOD_KEYS:
            continue   # their visibility follows the method too: finetune/ui/method_view.py
        value = values.get(key)
        if key not in values or (value == before.get(key) and (key != "ui.targets" or info == info_before)):
            continue
        if key == "ui.targets":
            choices = list(info.get("choices", []))
            known = {c[1] for c in choices}
            choices += [(name, name) for name in value or [] if name not in known]   # shown, then refused
            out[key] = gr.CheckboxGroup(choices=choices, value=value or [])
        elif key == "lora.r" and value is not None:
            out[key] = gr.Slider(value=value, maximum=max(256, value))
        elif key == "lora.lora_alpha" and value is not None:
            out[key] = gr.Slider(value=value, minimum=min(1, value), maximum=max(512, value))
        else:
            out[key] = value
    return out
