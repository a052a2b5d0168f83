"""The form's Method section: how the adapter learns (sft, dpo, kto, orpo, grpo), the chosen method's
own settings, and GRPO's rewards as a table with a row per reward.

Each setting has one widget, shown only for the methods that take it (finetune.runfile.method.DEFAULTS); picking
a method fills its settings with TRL's defaults, so no value of another method is left in a hidden widget. What
goes into the run file is finetune.ui.form.method_section's. The rewards are a gr.Dataframe with three fixed
columns (type, argument, weight; form.rewards_to_rows): its own menu adds and deletes rows, and the two buttons
under it do the same for whoever does not find that menu.
"""

from __future__ import annotations

from types import SimpleNamespace

import gradio as gr
import pandas as pd

from finetune.runfile import field_help
from finetune.runfile.method import DATA_FORMATS, DEFAULTS, LOSS_TYPES, NAMES
from finetune.ui.form import METHOD_SETTINGS, REWARD_ARGUMENTS, REWARD_COLUMNS

# What each method learns from, said where it is picked.
LABELS = {
    "sft": "SFT — examples to imitate (text, chat, prompt/completion, Alpaca)",
    "dpo": "DPO — pairs of chosen/rejected answers to a prompt",
    "kto": "KTO — single answers labelled good or bad (prompt/completion/label)",
    "orpo": "ORPO — chosen/rejected pairs, no reference model (from trl.experimental)",
    "grpo": "GRPO — prompts only: answers are generated and scored by your rewards",
}
CHOICES = [(LABELS[n], n) for n in NAMES]
# Keys wired here rather than by events.wire_fields' plain handler.
OWN = ("method.name", "method.rewards")
NEW_REWARD = ["contains", "", 1.0]
REWARDS_NOTE = ("One reward per row: **type** and its **argument** — " + "; ".join(
    f"`{kind}`: {what}" for kind, what in REWARD_ARGUMENTS.items()) + ". The **weight** multiplies it (default 1). "
    "The mean reward is drawn beside the loss while the run trains, and with several rewards each one's mean.")


def takes(name: str, key: str) -> bool:
    return key.split(".", 1)[1] in DEFAULTS.get(name or "sft", {})


def rewards_frame(rows: list | None) -> pd.DataFrame:
    return pd.DataFrame([list(r) for r in rows or []], columns=REWARD_COLUMNS)


def normal_rows(frame) -> list[list]:
    """The table's value (a DataFrame, or rows) as plain rows [type, argument, weight]: what the form's state
    keeps and compares, so the echo of an update is recognised."""
    if frame is None:
        return []
    rows = frame.values.tolist() if isinstance(frame, pd.DataFrame) else list(frame)
    out = []
    for row in rows:
        cells = [*list(row), None, None, None][:3]
        text = ["" if c is None or (isinstance(c, float) and c != c) else str(c) for c in cells[:2]]
        weight = cells[2]
        if isinstance(weight, float) and weight != weight:
            weight = None
        elif weight is not None and not isinstance(weight, (int, float)):
            try:
                weight = float(str(weight).strip()) if str(weight).strip() else None
            except ValueError:
                weight = str(weight)
        out.append([*text, weight])
    return out


def build(ui: SimpleNamespace, d) -> dict:
    """The section's widgets by form key; the rewards' box (shown for grpo) and its buttons as ui.rewards_box,
    ui.add_reward and ui.remove_reward."""
    name = d("method.name") or "sft"
    f: dict = {}
    gr.Markdown("### Method")
    with gr.Group():
        f["method.name"] = gr.Dropdown(CHOICES, value=name, label="Method", info=field_help("method", "name"),
                                       elem_id="method")
        with gr.Row():
            f["method.beta"] = gr.Number(d("method.beta"), label="beta", visible=takes(name, "method.beta"),
                                         info=field_help("method", "beta"), elem_id="method-beta")
            f["method.loss_type"] = gr.Dropdown(list(LOSS_TYPES.get(name, ())), value=d("method.loss_type"),
                                                label="loss_type", visible=takes(name, "method.loss_type"),
                                                info=field_help("method", "loss_type"), elem_id="method-loss-type")
            f["method.desirable_weight"] = gr.Number(d("method.desirable_weight"), label="desirable_weight",
                                                     visible=takes(name, "method.desirable_weight"),
                                                     info=field_help("method", "desirable_weight"))
            f["method.undesirable_weight"] = gr.Number(d("method.undesirable_weight"), label="undesirable_weight",
                                                       visible=takes(name, "method.undesirable_weight"),
                                                       info=field_help("method", "undesirable_weight"))
        with gr.Row():
            f["method.num_generations"] = gr.Number(d("method.num_generations"), precision=0,
                                                    label="num_generations",
                                                    visible=takes(name, "method.num_generations"),
                                                    info=field_help("method", "num_generations"),
                                                    elem_id="num-generations")
            f["method.max_completion_length"] = gr.Number(d("method.max_completion_length"), precision=0,
                                                          label="max_completion_length",
                                                          visible=takes(name, "method.max_completion_length"),
                                                          info=field_help("method", "max_completion_length"),
                                                          elem_id="max-completion-length")
            f["method.temperature"] = gr.Number(d("method.temperature"), label="temperature",
                                                visible=takes(name, "method.temperature"),
                                                info=field_help("method", "temperature"))
            f["method.top_p"] = gr.Number(d("method.top_p"), label="top_p", visible=takes(name, "method.top_p"),
                                          info=field_help("method", "top_p"))
    with gr.Column(visible=name == "grpo", elem_id="rewards-box") as ui.rewards_box:
        f["method.rewards"] = gr.Dataframe(
            rewards_frame(d("method.rewards")), headers=REWARD_COLUMNS, column_count=3,
            datatype=["str", "str", "number"], interactive=True, label="Rewards (method.rewards)",
            elem_id="rewards")
        with gr.Row():
            ui.add_reward = gr.Button("Add a reward", size="sm", elem_id="add-reward")
            ui.remove_reward = gr.Button("Remove the last reward", size="sm", elem_id="remove-reward")
        gr.Markdown(REWARDS_NOTE, elem_id="rewards-note")
    return f


def setting_update(name: str, key: str, value):
    """A setting's widget for method `name`: shown when it takes it, with that method's loss types."""
    if key == "method.loss_type":
        return gr.Dropdown(choices=list(LOSS_TYPES.get(name, ())), value=value, visible=takes(name, key))
    return gr.Number(value=value, visible=takes(name, key))


def updates(ui: SimpleNamespace, values: dict, before: dict) -> dict:
    """{component: update} for the method widgets whose value (or, after a change of method, visibility)
    changed from `before`; for events.fill and the method's own handler."""
    name = values.get("method.name") or "sft"
    switched = name != (before.get("method.name") or "sft")
    out: dict = {}
    if name != before.get("method.name"):
        out[ui.form["method.name"]] = name
    for key in METHOD_SETTINGS:
        if switched:
            out[ui.form[key]] = setting_update(name, key, values.get(key))
        elif values.get(key) != before.get(key):
            out[ui.form[key]] = values.get(key)
    if values.get("method.rewards") != before.get("method.rewards"):
        out[ui.form["method.rewards"]] = rewards_frame(values.get("method.rewards"))
    if switched:
        out[ui.rewards_box] = gr.Column(visible=name == "grpo")
    return out


def switch(values: dict, name: str) -> dict:
    """The form's values with method `name` picked: its settings at TRL's defaults, a first reward row to fill in
    for grpo, and the data settings it cannot take put back (a format of another method -> auto, no packing)."""
    out = {**values, "method.name": name}
    for key in METHOD_SETTINGS:
        out[key] = DEFAULTS[name].get(key.split(".", 1)[1])
    if name == "grpo" and not out.get("method.rewards"):
        out["method.rewards"] = [list(NEW_REWARD)]
    if out.get("data.format") not in ("auto", *DATA_FORMATS[name]):
        out["data.format"] = "auto"
    if name != "sft":
        out["data.packing"] = False
    return out


def outputs(ui: SimpleNamespace) -> list:
    """What this section's events change besides the form's own widgets."""
    return [ui.rewards_box]


def wire(ui: SimpleNamespace, locked, count_out: list, then_text) -> None:
    """The method's pick, the rewards table and its two buttons: each stores its value and recounts."""
    from finetune.ui.panel import count_view
    from finetune.ui.wiring import FAST

    state = [ui.values, ui.extra, ui.model_info]
    method_widgets = [ui.form[k] for k in ("method.name", *METHOD_SETTINGS, "method.rewards")]
    data_widgets = [ui.form["data.format"], ui.form["data.packing"]]

    def on_method(name, values: dict, extra: dict, info: dict, request: gr.Request) -> dict:
        with locked(request):
            if not name or values.get("method.name") == name:
                return gr.skip()
            before = dict(values)
            values.update(switch(values, name))
            data = {ui.form[k]: values[k] for k in ("data.format", "data.packing") if values[k] != before.get(k)}
            return {ui.values: values, **updates(ui, values, before), **data, **count_view(ui, values, extra, info)}

    def store_rows(rows: list, values: dict, extra: dict, info: dict, table: bool) -> dict:
        values["method.rewards"] = rows
        shown = {ui.form["method.rewards"]: rewards_frame(rows)} if table else {}
        return {ui.values: values, **shown, **count_view(ui, values, extra, info)}

    def on_rewards(frame, values: dict, extra: dict, info: dict, request: gr.Request) -> dict:
        with locked(request):
            rows = normal_rows(frame)
            if rows == values.get("method.rewards"):
                return gr.skip()   # the echo of an update this page sent
            return store_rows(rows, values, extra, info, table=False)

    def on_add(values: dict, extra: dict, info: dict, request: gr.Request) -> dict:
        with locked(request):
            return store_rows([*(values.get("method.rewards") or []), list(NEW_REWARD)], values, extra, info, True)

    def on_remove(values: dict, extra: dict, info: dict, request: gr.Request) -> dict:
        with locked(request):
            rows = values.get("method.rewards") or []
            return store_rows(rows[:-1], values, extra, info, True) if rows else gr.skip()

    name, table = ui.form["method.name"], ui.form["method.rewards"]
    then_text(name.change(on_method, [name, *state], [ui.values, *method_widgets, ui.rewards_box, *data_widgets,
                                                      *count_out], trigger_mode="always_last", **FAST))
    then_text(table.change(on_rewards, [table, *state], [ui.values, *count_out], trigger_mode="always_last", **FAST))
    for button, handler in ((ui.add_reward, on_add), (ui.remove_reward, on_remove)):
        then_text(button.click(handler, state, [ui.values, table, *count_out], **FAST))
