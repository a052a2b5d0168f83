"""A sweep from the page (#sweep): up to two settings, each with its values (`lora.r` and `4,8,16`), one run
per combination of the form's current run file, queued through ui/sweep.py's queue_sweep (the checks and the
sign-in of /sweep, which are Launch's). Its runs, ranked (sweep_ranking: best eval loss, else final train
loss), fill a table that a timer refreshes while any of them is queued or running; the compare view overlays
their curves and lists the settings that differ; "Load best into form" fills the form with the best completed
run through the same handler as "Load into form" (ui/events.py).

The sweep's run ids live in the page's state: a reload forgets the table, not the runs, which the runs table
and /sweep_status still show.
"""

from __future__ import annotations

import gradio as gr
import pandas as pd

from finetune.jobs import history
from finetune.runfile import dump_yaml
from finetune.train.runfolder import FINAL_STATES
from finetune.ui.guard import user_error
from finetune.ui.live import run_choices
from finetune.ui.panel import form_run
from finetune.ui.sweep import queue_sweep, sweep_ranking
from finetune.ui.wiring import FAST

# What people sweep most; any other section.key can be typed (plan_sweep checks it against the schema).
SWEEPABLE = ["lora.r", "lora.lora_alpha", "lora.lora_dropout", "lora.target_modules", "training.learning_rate",
             "training.per_device_train_batch_size", "training.gradient_accumulation_steps",
             "training.num_train_epochs", "training.max_steps", "training.weight_decay", "training.warmup_steps",
             "training.lr_scheduler_type", "data.max_length", "data.packing"]
SETTINGS = 2   # settings varied at once: a grid of two already makes up to 32 runs
COLUMNS = ["rank", "run", "values", "state", "final loss", "best eval loss", "tokens/s", "steps"]
REFRESH_S = 2.0


def build() -> dict:
    """The sweep's controls, ranked table and state, keyed `sweep_*`; call where the section should appear."""
    c: dict = {}
    with gr.Accordion("Sweep: one run per combination of values", open=False, elem_id="sweep"):
        gr.Markdown("Runs the form's settings once per combination of the values below (at most 32 runs, "
                    "trained in turn), then ranks them by best eval loss (final train loss without an "
                    "evaluation split).")
        for i in range(1, SETTINGS + 1):
            with gr.Row():
                c[f"sweep_key{i}"] = gr.Dropdown(SWEEPABLE, value="lora.r" if i == 1 else None,
                                                 allow_custom_value=True, label=f"Setting {i}", scale=2,
                                                 elem_id=f"sweep-key{i}", info="section.key, as in the run file")
                c[f"sweep_values{i}"] = gr.Textbox(label=f"Values {i}", placeholder="e.g. 4,8,16", scale=3,
                                                   elem_id=f"sweep-values{i}",
                                                   info="Comma-separated YAML values: 1e-4, true, [q_proj,v_proj]")
        with gr.Row():
            c["sweep_launch"] = gr.Button("Launch sweep", variant="primary", elem_id="sweep-launch")
            c["sweep_best"] = gr.Button("Load best into form", interactive=False, elem_id="sweep-best")
        c["sweep_table"] = gr.Dataframe(headers=COLUMNS, interactive=False, wrap=True, elem_id="sweep-table",
                                        label="The sweep's runs, best first")
    c["sweep_runs"] = gr.State([])       # this page's sweep: its run ids, in the sweep's order
    c["sweep_shown"] = gr.State(None)    # the table last sent, and the best completed run's id
    c["sweep_timer"] = gr.Timer(REFRESH_S, active=False)   # on while the sweep has runs to wait for
    return c


def vary_lines(pairs: list[tuple[str | None, str | None]]) -> list[str]:
    """`section.key=v1,v2` lines for the settings that have both a key and values."""
    return [f"{key.strip()}={values.strip()}" for key, values in pairs if key and key.strip() and values
            and values.strip()]


def _num(value, fmt: str) -> str:
    return "" if value is None else format(value, fmt)


def table_rows(ranking: list[dict]) -> list[list]:
    return [[e["rank"], e["run_id"], ", ".join(f"{k}={v}" for k, v in (e.get("values") or {}).items()),
             e["state"], _num(e.get("final_loss"), ".4f"), _num(e.get("best_eval_loss"), ".4f"),
             _num(e.get("tokens_per_second"), ",.0f"), f"{e.get('step') or 0} / {e.get('max_steps') or '?'}"]
            for e in ranking]


def best_run(ranking: list[dict]) -> str | None:
    """The best run to load: the first ranked, once it has completed (a run still going may yet lose)."""
    return ranking[0]["run_id"] if ranking and ranking[0]["state"] == "completed" else None


def wire(ui, jobs) -> None:
    """Launch sweep, the table's refresh and Load best; after events.wire_configure (it sets ui.locked)."""
    from finetune.ui.events import clone_handler, fill_outputs, text_follower

    def ranked(run_ids: list[str], shown, profile) -> dict:
        """The table's updates, sent only when it changed; the timer stops once every run has ended."""
        try:
            ranking = sweep_ranking(jobs, run_ids, profile)
        except gr.Error:   # a run folder removed meanwhile: nothing left to follow
            return {ui.sweep_timer: gr.Timer(active=False)}
        rows, best = table_rows(ranking), best_run(ranking)
        out: dict = {}
        if all(e["state"] in FINAL_STATES for e in ranking):
            out[ui.sweep_timer] = gr.Timer(active=False)
        if shown != [rows, best]:
            out.update({ui.sweep_table: pd.DataFrame(rows, columns=COLUMNS), ui.sweep_shown: [rows, best],
                        ui.sweep_best: gr.Button(interactive=best is not None)})
        return out

    def on_sweep(values, extra, info, key1, values1, key2, values2, request: gr.Request,
                 profile: gr.OAuthProfile | None = None) -> dict:
        lines = vary_lines([(key1, values1), (key2, values2)])
        if not lines:
            raise user_error("Sweep: pick a setting and its values, e.g. lora.r and 4,8,16")
        with ui.locked(request):   # the form as the last change left it, as Launch reads it
            _, run, problems = form_run(values, extra, info)
        if run is None:
            raise user_error("\n".join(problems))
        run_ids = queue_sweep(jobs, dump_yaml(run.to_dict()), lines, profile)   # refuses as /sweep does
        gr.Info(f"Sweep of {len(run_ids)} runs queued: {', '.join(run_ids)}.")
        runs = history.summaries(jobs.runs_dir)   # the page watches the sweep's first run
        # and compares them all: their curves overlaid as they train, the settings that differ
        compare = gr.Dropdown(choices=[r["run_id"] for r in runs], value=run_ids) if len(run_ids) > 1 else gr.skip()
        return {ui.sweep_runs: run_ids, ui.sweep_timer: gr.Timer(active=True),
                ui.run_select: gr.Dropdown(choices=run_choices(runs), value=run_ids[0]), ui.compare_runs: compare,
                **ranked(run_ids, None, profile)}

    def on_tick(run_ids, shown, profile: gr.OAuthProfile | None = None):
        if not run_ids:
            return {ui.sweep_timer: gr.Timer(active=False)}
        return ranked(run_ids, shown, profile) or gr.skip()   # Gradio refuses an empty dict

    table_out = [ui.sweep_table, ui.sweep_shown, ui.sweep_best, ui.sweep_timer]
    ui.sweep_launch.click(on_sweep, [ui.values, ui.extra, ui.model_info, ui.sweep_key1, ui.sweep_values1,
                                     ui.sweep_key2, ui.sweep_values2],
                          [ui.sweep_runs, ui.run_select, ui.compare_runs, *table_out], api_visibility="private")
    ui.sweep_timer.tick(on_tick, [ui.sweep_runs, ui.sweep_shown], table_out, trigger_mode="always_last", **FAST)

    clone = clone_handler(ui, jobs, ui.locked)

    def on_best(shown, values, info, request: gr.Request) -> dict:
        """The best completed run's run.yaml into the form, as "Load into form" does for the selected run."""
        if not shown or not shown[1]:
            raise user_error("Load best into form: no run of this sweep has completed yet")
        return clone(shown[1], values, info, request)

    text_follower(ui, ui.locked)(ui.sweep_best.click(on_best, [ui.sweep_shown, ui.values, ui.model_info],
                                                     fill_outputs(ui), api_visibility="private"))
