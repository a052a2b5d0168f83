"""The page's "Several GPUs or machines" panel: training.devices and training.strategy (shown only where there
is more than one GPU to choose from), and the accelerate export of the form's run, for a cluster.

On a machine with at most one GPU the two controls are hidden, yet a loaded run file's values are kept (and
launched: a CPU machine trains `devices: 2` as two CPU processes); the export is always there, since a run
configured here may well train elsewhere.
"""

from __future__ import annotations

from types import SimpleNamespace

import gradio as gr

from finetune.errors import RunFileError
from finetune.runfile import field_help

STRATEGIES = ["ddp", "fsdp", "deepspeed"]


def device_note(gpus: int) -> str:
    where = "no GPU" if gpus == 0 else "one GPU"
    return (f"This machine has {where}, so a run trains on one device here (a loaded run file's "
            "`training.devices` is kept). The same run file trains on several GPUs or machines with "
            "accelerate:")


def build(form: dict, values: dict, gpus: int | None = None) -> SimpleNamespace:
    """Inside the Configure column: the controls go into `form` under their run-file keys."""
    if gpus is None:
        from finetune.jobs.process import detect_gpus

        gpus = len(detect_gpus())
    several = gpus > 1
    ui = SimpleNamespace()
    with gr.Accordion("Several GPUs or machines", open=False, elem_id="devices-panel"):
        if not several:
            gr.Markdown(device_note(gpus), elem_id="devices-note")
        with gr.Row(visible=several):
            form["training.devices"] = gr.Dropdown(
                [str(n) for n in range(1, max(gpus, 1) + 1)] + ["auto"], value=str(values.get("training.devices", 1)),
                allow_custom_value=True, label="devices", info=field_help("training", "devices"),
                elem_id="devices", visible=several)
            form["training.strategy"] = gr.Radio(STRATEGIES, value=values.get("training.strategy", "ddp"),
                                                 label="strategy", info=field_help("training", "strategy"),
                                                 elem_id="strategy", visible=several)
        with gr.Row():
            ui.machines = gr.Number(1, precision=0, minimum=1, label="machines",
                                    info="For the export: machines, each with training.devices GPUs.",
                                    elem_id="export-machines", scale=1)
            ui.export_button = gr.Button("Show the accelerate config and launch commands", size="sm", scale=2,
                                         elem_id="export-accelerate")
        ui.export = gr.Code(language="yaml", label="accelerate.yaml (the launch commands are in its comments)",
                            interactive=False, visible=False, elem_id="accelerate-export")
    return ui


def export_text(values: dict, extra: dict, info: dict, machines) -> str:
    """The form's run as `python -m finetune export run.yaml --to accelerate` prints it, or its problems."""
    from finetune.train.export_accelerate import to_accelerate
    from finetune.ui.panel import form_run

    _, run, problems = form_run(values, extra, info)
    if run is not None:
        try:
            return to_accelerate(run, "run.yaml", int(machines or 1))
        except (RunFileError, ValueError) as exc:
            problems = getattr(exc, "problems", [str(exc)])
    return "".join(f"# error: {p}\n" for p in problems)


def wire(ui) -> None:
    def show(values, extra, info, machines):
        return gr.Code(value=export_text(values, extra, info, machines), visible=True)

    ui.devices.export_button.click(show, [ui.values, ui.extra, ui.model_info, ui.devices.machines],
                                   ui.devices.export, queue=False, api_visibility="private")
