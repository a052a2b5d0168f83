"""The page's components, declared top-down; events.py and live.py wire them. Every control's help text is
the run file's own field documentation (finetune.runfile.field_help), so it is written once.

`build_layout()` must run inside a `gr.Blocks` context; it returns a namespace of the components, with
`form` mapping each form key of finetune.ui.form (e.g. "lora.r") to its component.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

import gradio as gr

from finetune import space
from finetune.runfile import DEMO, SECTIONS, field_help
from finetune.runfile.data_formats import FORMATS
from finetune.runfile.reporters import KNOWN as REPORTERS
from finetune.ui import (
    access,
    devices,
    memory_view,
    method_view,
    playground,
    plots,
    runner_view,
    samples_view,
    sweep_view,
)
from finetune.ui.runs import RUNS_COLUMNS

# Shown first in the model box; any other Hub id or local folder can be typed in.
SUGGESTED_MODELS = [DEMO, "HuggingFaceTB/SmolLM2-135M", "HuggingFaceTB/SmolLM2-360M-Instruct",
                    "Qwen/Qwen2.5-0.5B-Instruct", "Qwen/Qwen3-0.6B", "google/gemma-3-270m",
                    "meta-llama/Llama-3.2-1B-Instruct", "openai-community/gpt2"]
# Words for the values of a field's check (choices_of): the check says which values there are, these how they read.
QUANTIZATION_LABELS = {"none": "none (16/32-bit)", "8bit": "8-bit", "4bit": "4-bit NF4 (QLoRA)"}
DATA_FORMAT_LABELS = {"auto": "auto (recognised from the columns)", **{f.name: f.label for f in FORMATS}}
DATA_SOURCES = [("built-in sample", "demo"), ("upload a file", "file"), ("Hub dataset or path", "hub")]

CSS = """
#param-count .count-line { font-size: 1.6rem; font-weight: 600; }
#param-count .count-sub { color: var(--body-text-color-subdued); }
#count-details table { width: 100%; font-size: 0.85rem; }
#count-details td.num, #count-details th.num { text-align: right; font-variant-numeric: tabular-nums; }
#form-errors { color: var(--error-text-color); }
#form-errors:empty { display: none; }
#runner-note:empty { display: none; }
/* The run panel beside the form: the Understand column stays in view while the form scrolls, so
   the count and the memory verdict follow the sliders, and a launched run's progress and curve show at once
   (at 1366x768, without scrolling). It scrolls on its own when taller than the window. Sticky needs the
   scrolling ancestor to be the page: Gradio's container has overflow: hidden, which made it the (never
   scrolling) one; clip cuts the same overflow without being a scroll container. */
.gradio-container { overflow: clip !important; }
#understand { position: sticky; top: 0.5rem; align-self: flex-start; max-height: calc(100vh - 1rem);
  overflow-y: auto; flex-wrap: nowrap; gap: 10px; padding-right: 4px; scrollbar-width: thin; }
#understand > * { flex-shrink: 0; }
#run-row { align-items: flex-end; }
#run-buttons { gap: 6px; }
#understand #param-count .count-line { font-size: 1.4rem; }
#run-progress { min-height: 1.5rem; }
/* A narrow window puts the column under the form (gr.Row wraps): it then flows with the page. */
@media (max-width: 1000px) { #understand { position: static; max-height: none; overflow: visible; } }
"""
CSS += memory_view.CSS


Values = Callable[[str], Any]   # a form key -> its initial value
Form = dict[str, Any]            # a form key ("lora.r") -> its component


def helped(key: str) -> str:
    section, name = key.split(".", 1)
    return field_help(section, name)


def choices_of(key: str, labels: dict[str, str] | None = None) -> list:
    """The values a run-file field's check accepts (its Choice), so a widget offers exactly those. With `labels`:
    (label, value) pairs, in the labels' order, any value without a label after them under its own name."""
    section, name = key.split(".", 1)
    check = next(f for f in dataclasses.fields(SECTIONS[section]) if f.name == name).metadata["check"]
    values = [c for c in check.choices if isinstance(c, str)]
    if labels is None:
        return values
    order = [v for v in labels if v in values] + [v for v in values if v not in labels]
    return [(labels.get(v, v), v) for v in order]


def build_layout(initial: dict) -> SimpleNamespace:
    """`initial`: finetune.ui.panel.initial(), the default form's values, model info and Understand panel,
    so a new page is complete without a round trip."""
    d = initial["values"].get
    info = initial["info"]
    ui = SimpleNamespace(form={})

    # The form on the left; beside it, in view while the form scrolls (CSS above), what the form gives and the
    # run it launched: the count, will it fit, Launch, and the selected run's progress and curve.
    with gr.Row(equal_height=False):
        with gr.Column(scale=3, elem_id="configure"):
            header(ui)
            ui.form.update(model_section(ui, d, info))
            ui.form.update(lora_section(d, info))
            ui.form.update(method_view.build(ui, d))   # sft | dpo | kto | orpo | grpo and its settings
            ui.form.update(data_section(ui, d))
            ui.form.update(training_section(d))
            ui.devices = devices.build(ui.form, initial["values"])   # training.devices / strategy, and the export
            ui.form.update(hub_section(d))
        with gr.Column(scale=2, min_width=420, elem_id="understand"):
            understand_column(ui, initial)
            watch_section(ui)
            details_section(ui, initial)
    runs_section(ui)
    ui.playground = playground.build_section()   # try a run beside its base model, merge, push (ui/playground.py)
    session_state(ui, initial)
    return ui


def header(ui: SimpleNamespace) -> None:
    gr.Markdown("# LoRA Launchpad\nConfigure a LoRA or QLoRA fine-tune, see exactly what it trains, "
                "launch it, and watch its loss.")
    for note in space.notices():   # ZeroGPU cannot train; a Space's disk forgets runs (finetune/space.py)
        gr.Markdown(note, elem_classes=["space-note"])
    ui.login = None
    if access.login_required():
        if access.sign_in_possible():
            ui.login = gr.LoginButton(elem_id="login")
        else:   # fail closed: nobody can sign in, so nobody launches (SPACE_ID set by hand outside a Space)
            gr.Markdown("Launching, previews and uploads are turned off: sign-in with Hugging Face works only "
                        "on a Hugging Face Space with `gradio[oauth]` installed.")


def model_section(ui: SimpleNamespace, d: Values, info: dict) -> Form:
    """The model, its quantization and options; the preset picker (ui.preset) and the model's note beside them."""
    from finetune.runfile.presets import list_presets

    f: Form = {}
    with gr.Group():
        with gr.Row():
            f["model.name_or_path"] = gr.Dropdown(
                SUGGESTED_MODELS, value=DEMO, allow_custom_value=True, label="Model", scale=3,
                info=helped("model.name_or_path"), elem_id="model")
            ui.preset = gr.Dropdown([(p["title"], p["name"]) for p in list_presets()], value=None,
                                    label="Preset", info="Fills the form with a known recipe.",
                                    scale=2, min_width=380, elem_id="preset")   # the longest title fits
        f["model.quantization"] = gr.Radio(choices_of("model.quantization", QUANTIZATION_LABELS),
                                           value=d("model.quantization"), label="Quantization",
                                           info=helped("model.quantization"), elem_id="quantization")
        ui.model_note = gr.Markdown(info["note"], elem_id="model-note")
    with gr.Accordion("Model options", open=False):
        f["model.revision"] = gr.Textbox(label="Revision", info=helped("model.revision"), placeholder="main")
        f["model.trust_remote_code"] = gr.Checkbox(
            False, label="trust_remote_code", info=helped("model.trust_remote_code"),
            visible=access.remote_code_allowed())
    return f


def lora_section(d: Values, info: dict) -> Form:
    """r, alpha and dropout; the target modules (ticks, the all-linear switch, a regular expression); the rest."""
    f: Form = {}
    gr.Markdown("### LoRA")
    with gr.Group():
        with gr.Row():
            f["lora.r"] = gr.Slider(1, 256, value=d("lora.r"), step=1, label="r (rank)",
                                    info=helped("lora.r"), elem_id="lora-r")
            f["lora.lora_alpha"] = gr.Slider(1, 512, value=d("lora.lora_alpha"), step=1,
                                             label="lora_alpha", info=helped("lora.lora_alpha"),
                                             elem_id="lora-alpha")
            f["lora.lora_dropout"] = gr.Slider(0, 0.9, value=d("lora.lora_dropout"), step=0.01,
                                               label="lora_dropout", info=helped("lora.lora_dropout"),
                                               elem_id="lora-dropout")
        f["ui.all_linear"] = gr.Checkbox(d("ui.all_linear"), label="all linear layers (all-linear)",
                                         info="Every Linear but the output layer; unticking a module "
                                         "below turns this off.", elem_id="all-linear")
        f["ui.targets"] = gr.CheckboxGroup(info["choices"], value=d("ui.targets"), label="target_modules",
                                           info=helped("lora.target_modules"), elem_id="target-modules")
    with gr.Accordion("Advanced LoRA", open=False, elem_id="advanced-lora"):
        with gr.Row():
            f["lora.bias"] = gr.Radio(choices_of("lora.bias"), value=d("lora.bias"), label="bias",
                                      info=helped("lora.bias"))
            f["lora.use_rslora"] = gr.Checkbox(False, label="rsLoRA (use_rslora)",
                                               info=helped("lora.use_rslora"), elem_id="use-rslora")
            f["lora.use_dora"] = gr.Checkbox(False, label="DoRA (use_dora)", info=helped("lora.use_dora"),
                                             elem_id="use-dora")
        f["lora.layers_to_transform"] = gr.Textbox(label="layers_to_transform", placeholder="e.g. 0, 1, 2",
                                                   info=helped("lora.layers_to_transform"))
        f["lora.modules_to_save"] = gr.Textbox(label="modules_to_save", placeholder="e.g. embed_tokens, "
                                               "lm_head", info=helped("lora.modules_to_save"))
        f["ui.target_regex"] = gr.Textbox(label="target_modules as a regular expression", elem_id="target-regex",
                                          placeholder=r"e.g. .*\.(q|v)_proj",
                                          info="When set, it replaces the ticked modules: PEFT matches it "
                                          "against each module's full name.")
    return f


def data_section(ui: SimpleNamespace, d: Values) -> Form:
    """Where the data comes from (ui.data_source, ui.data_file: events.wire_data), its format and length, and a
    preview of formatted examples (ui.preview_button, ui.preview)."""
    f: Form = {}
    gr.Markdown("### Data")
    with gr.Group():
        ui.data_source = gr.Radio(DATA_SOURCES, value="demo", label="Dataset", elem_id="data-source")
        f["data.path"] = gr.Textbox(d("data.path"), label="data.path", info=helped("data.path"),
                                    visible=False, elem_id="data-path")
        ui.data_file = gr.File(label="Upload .jsonl, .json, .csv or .parquet", visible=False,
                               file_types=[".jsonl", ".json", ".csv", ".parquet"], elem_id="data-file")
        with gr.Row():
            f["data.format"] = gr.Dropdown(choices_of("data.format", DATA_FORMAT_LABELS), value=d("data.format"),
                                           label="format", info=helped("data.format"))
            f["data.max_length"] = gr.Number(d("data.max_length"), precision=0, label="max_length",
                                             info=helped("data.max_length"))
            f["data.eval_size"] = gr.Number(d("data.eval_size"), label="eval_size", info=helped("data.eval_size"))
            f["data.packing"] = gr.Checkbox(False, label="packing", info=helped("data.packing"))
    with gr.Accordion("Preview formatted examples", open=False):
        ui.preview_button = gr.Button("Preview 3 examples", size="sm", elem_id="preview-button")
        ui.preview = gr.Markdown(elem_id="data-preview")
    return f


def training_section(d: Values) -> Form:
    """The common SFTConfig settings; the rest ride along in the session's `extra` (finetune.ui.form)."""
    f: Form = {}
    gr.Markdown("### Training")
    with gr.Group():
        with gr.Row():
            f["training.learning_rate"] = gr.Number(d("training.learning_rate"), label="learning_rate",
                                                    info=helped("training.learning_rate"), step=1e-5)
            f["training.num_train_epochs"] = gr.Number(d("training.num_train_epochs"), label="epochs",
                                                       info=helped("training.num_train_epochs"))
            f["training.max_steps"] = gr.Number(d("training.max_steps"), precision=0, label="max_steps",
                                                info=helped("training.max_steps"), elem_id="max-steps")
        with gr.Row():
            f["training.per_device_train_batch_size"] = gr.Number(
                d("training.per_device_train_batch_size"), precision=0, label="batch size",
                info=helped("training.per_device_train_batch_size"), elem_id="batch-size")
            f["training.gradient_accumulation_steps"] = gr.Number(
                d("training.gradient_accumulation_steps"), precision=0, label="gradient accumulation",
                info=helped("training.gradient_accumulation_steps"), elem_id="grad-accum")
            f["training.logging_steps"] = gr.Number(d("training.logging_steps"), precision=0,
                                                    label="logging_steps", info=helped("training.logging_steps"),
                                                    elem_id="logging-steps")
        # "ui.gpu" (no run-file key): the GPU that the memory verdict under the count is for (ui/memory_view.py)
        f[memory_view.KEY] = memory_view.build_picker()
    with gr.Accordion("More training settings", open=False):
        with gr.Row():
            f["training.lr_scheduler_type"] = gr.Dropdown(
                choices_of("training.lr_scheduler_type"), value=d("training.lr_scheduler_type"),
                label="lr_scheduler_type", info=helped("training.lr_scheduler_type"))
            f["training.warmup_steps"] = gr.Number(d("training.warmup_steps"), label="warmup_steps",
                                                   info=helped("training.warmup_steps"))
            f["training.weight_decay"] = gr.Number(d("training.weight_decay"), label="weight_decay",
                                                   info=helped("training.weight_decay"))
        with gr.Row():
            f["training.optim"] = gr.Dropdown(choices_of("training.optim"), value=d("training.optim"),
                                              label="optim", info=helped("training.optim"))
            f["training.save_steps"] = gr.Number(d("training.save_steps"), precision=0, label="save_steps",
                                                 info=helped("training.save_steps"))
            f["training.seed"] = gr.Number(d("training.seed"), precision=0, label="seed", info=helped("training.seed"))
        f["training.gradient_checkpointing"] = gr.Checkbox(
            False, label="gradient_checkpointing", info=helped("training.gradient_checkpointing"))
    watch_settings(f, d)
    return f


def watch_settings(f: Form, d: Values) -> None:
    """Watching a run learn: early stopping, trackers writing in the run folder, and prompts the model
    answers at each evaluation (shown under the curve)."""
    with gr.Accordion("Early stopping, trackers and sample prompts", open=False, elem_id="watch-settings"):
        with gr.Row():
            f["training.early_stopping_patience"] = gr.Number(
                d("training.early_stopping_patience"), precision=0, label="early_stopping_patience",
                info=helped("training.early_stopping_patience"), elem_id="early-stopping-patience")
            # No run-file field documents report_to (an allowlisted SFTConfig key, checked by runfile/reporters.py).
            f["training.report_to"] = gr.CheckboxGroup(
                list(REPORTERS), value=d("training.report_to") or [], label="report_to", elem_id="report-to",
                info="Trackers the run also reports to. TensorBoard and Trackio write inside the run folder: open "
                "them with `tensorboard --logdir runs/RUN/tensorboard` or `TRACKIO_DIR=runs/RUN/trackio trackio "
                "show --project RUN`. W&B and MLflow send metrics with your own credentials (refused on a Space).")
        f["samples.prompts"] = gr.Textbox(d("samples.prompts"), lines=3, max_lines=8, label="samples.prompts",
                                          placeholder="One prompt a line, e.g. What is LoRA?",
                                          info=helped("samples.prompts") + " One prompt a line.",
                                          elem_id="sample-prompts")


def hub_section(d: Values) -> Form:
    f: Form = {}
    with gr.Accordion("Keep the result", open=False, elem_id="keep-result"):
        f["hub.repo_id"] = gr.Textbox(d("hub.repo_id"), label="Push to the Hub when done (hub.repo_id)",
                                      placeholder="your-name/my-adapter", info=helped("hub.repo_id"),
                                      elem_id="hub-repo-id")
    return f


def understand_column(ui: SimpleNamespace, initial: dict) -> None:
    """The top of the column beside the form, what users watch while they configure: the live count, will it
    fit, the form's problems, and Launch with the selected run's Cancel, Force stop and Resume beside it."""
    ui.param_count = gr.HTML(initial["count"], elem_id="param-count")
    memory_view.build_panel(ui, initial)   # will it fit: #memory-estimate, #apply-fix (the picker is in the form)
    ui.errors = gr.Markdown(initial["errors"], elem_id="form-errors")
    with gr.Row(equal_height=True):
        runner_view.build_choice(ui, initial["values"])   # this machine or a Hugging Face Jobs flavour
        ui.launch = gr.Button("Launch training", variant="primary", scale=2, elem_id="launch",
                              interactive=initial["launchable"])
        # Shown only while the selected run is queued or running (ui/live.py).
        ui.cancel = gr.Button("Cancel run", variant="stop", visible=False, scale=1, min_width=110, elem_id="cancel")
        # Shown once a graceful cancel has taken longer than the job manager's cancel_timeout (ui/force.py).
        ui.force_cancel = gr.Button("Force stop (no save)", variant="stop", visible=False, scale=1, min_width=110,
                                    elem_id="force-cancel")
        # Shown for a cancelled or failed run that saved a checkpoint: `train RUN --resume`, same folder.
        ui.resume = gr.Button("Resume from checkpoint", visible=False, scale=1, min_width=110, elem_id="resume")
    runner_view.build_details(ui, initial["values"])   # a Jobs flavour's timeout and cost; nothing for this machine


def watch_section(ui: SimpleNamespace) -> None:
    """The selected run (a launch selects its own): progress, loss curve, learning rate, samples and log."""
    with gr.Row(elem_id="run-row"):
        ui.run_select = gr.Dropdown([], value=None, label="Run", scale=3, min_width=220, elem_id="run-select")
        with gr.Column(scale=1, min_width=130, elem_id="run-buttons"):   # stacked: the run's name keeps its width
            ui.clone = gr.Button("Load into form", size="sm", elem_id="clone")
            ui.adapter = gr.DownloadButton("Download adapter (.zip)", visible=False, size="sm",
                                           elem_id="adapter-download")
    ui.progress = gr.Markdown(elem_id="run-progress")
    # Why the charts are set up (and updated) this way: finetune/ui/plots.py. Their x range is set by the
    # first poll, once the page is laid out (point 2 there).
    ui.loss_plot = gr.LinePlot(plots.loss_frame(None), x="step", y="loss", color="series", color_map=plots.COLORS,
                               colors_in_legend=["train"], x_axis_format=plots.X_FORMAT, title="Loss",
                               x_title="step", y_title="loss", color_title="", height=280, elem_id="loss-plot")
    # The method's own curves (plots.method_settings shows it, for DPO/KTO/ORPO/GRPO runs only), colours and
    # all set by the watch poll like the loss chart's.
    ui.method_plot = gr.LinePlot(plots.method_frame(None), x="step", y="value", color="series",
                                 x_axis_format=plots.X_FORMAT, title="Reward margin and accuracy", x_title="step",
                                 y_title="value", color_title="", height=240, visible=False, elem_id="method-plot")
    ui.show_lr = gr.Checkbox(False, label="Show the learning rate", elem_id="show-lr")
    ui.lr_plot = gr.LinePlot(plots.lr_frame(None), x="step", y="learning_rate", x_axis_format=plots.X_FORMAT,
                             title="Learning rate", x_title="step", y_title="learning rate", height=220,
                             visible=False, elem_id="lr-plot")
    vars(ui).update(samples_view.build())   # the selected run's answers, prompt by prompt (ui/samples_view.py)
    ui.log = gr.Textbox(label="Log (tail)", lines=8, max_lines=16, interactive=False, autoscroll=True,
                        elem_id="run-log")


def details_section(ui: SimpleNamespace, initial: dict) -> None:
    """Under the run, what the form says in full: the count module by module, and the run file."""
    ui.count_details = gr.HTML(initial["details"], elem_id="count-details")
    ui.run_file = gr.Code(initial["run_file"], language="yaml", label="Run file", lines=12, max_lines=24,
                          interactive=False, buttons=["copy", "download"], elem_id="run-file")
    ui.load_run = gr.UploadButton("Load a run file, Axolotl config or adapter_config.json",
                                  file_types=[".yaml", ".yml", ".json"], size="sm", elem_id="load-run")


def runs_section(ui: SimpleNamespace) -> None:
    """Every run: the table (a row selects its run beside the form) and the compare chart with its diff."""
    gr.Markdown("## All runs")
    ui.runs_table = gr.Dataframe(headers=list(RUNS_COLUMNS), interactive=False, wrap=True, elem_id="runs-table",
                                 label="Newest first; select a row to watch that run")
    ui.compare_runs = gr.Dropdown([], value=[], multiselect=True, label="Compare runs", elem_id="compare-runs",
                                  info="Two or more: their train loss in one chart, and the settings that differ.")
    ui.compare_plot = gr.LinePlot(None, x="step", y="loss", color="run", x_axis_format=plots.X_FORMAT,
                                  title="Train loss by run", x_title="step", y_title="loss", color_title="run",
                                  height=300, elem_id="compare-plot", visible=False)   # shown with its runs
    ui.config_diff = gr.Markdown("Select two or more runs to compare their curves and settings.",
                                 elem_id="config-diff")
    vars(ui).update(sweep_view.build())   # a sweep of the form's run and its ranking (ui/sweep_view.py)


def session_state(ui: SimpleNamespace, initial: dict) -> None:
    """What each page keeps on the server between its events."""
    ui.values = gr.State(initial["values"])   # the form's values by FORM_KEYS key: what events read
    ui.extra = gr.State({})                   # run-file keys the form has no widget for (a loaded file, a preset)
    ui.model_info = gr.State(initial["info"])   # the chosen model's target choices and all-linear set
    ui.seen = gr.State({})                    # what the live view last sent (ui/live.py)
    ui.run_list = gr.State(None)              # the run list last sent, and the run ids this page has seen
    ui.mine = gr.State([])                    # the runs this page launched: it switches to those only
    ui.runs_shown = gr.State(None)            # the runs table last sent (ui/runs.py)
    ui.timer = gr.Timer(1.0)
    ui.list_timer = gr.Timer(1.0)             # new runs are listed within about a second, whoever started them
