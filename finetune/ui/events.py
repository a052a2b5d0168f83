"""The Configure and Understand half of the page: each widget's event, the live count, presets, loading a
run file, the model's module list and the data preview. What they compute is in panel.py.

The live count is the hot path (goal: under 100 ms from a slider move to the new number on the page).
Gradio's browser side spends a few milliseconds per input component of an event, before the request and
again after it, so an event that read the whole form (~35 widgets) took ~140 ms here. Instead the form's
values live in one server-side gr.State (`ui.values`): each widget's event sends just its own value,
updates the state and returns the new count, without the queue (queue=False: one plain HTTP request) and
with no progress overlay (~55 ms median on a 2-core machine). The r slider does better still: the page
redraws the count itself as it moves (PREDICT_JS, ~2 ms) and the server's answer confirms it. The run
file's code view is redrawn after the count, by an event chained to each.
"""

from __future__ import annotations

import contextlib
import threading
import weakref
from collections.abc import Callable, Iterator
from pathlib import Path
from types import SimpleNamespace

import gradio as gr

from finetune.errors import RunFileError
from finetune.runfile import DEMO, overlay
from finetune.ui import memory_fix, memory_view, method_view, render
from finetune.ui.form import FORM_KEYS, extra_of
from finetune.ui.guard import refusals, require, user_error
from finetune.ui.panel import (
    count_outputs,
    count_view,
    form_run,
    form_values,
    model_info,
    retarget,
    run_file_text,
    widget_updates,
)
from finetune.ui.wiring import FAST

# Redraws the count in the page the moment the r slider moves: trainable (and total) parameters are affine
# in r, and the server's last answer carries r, the slope and the count (render.count_headline). The
# server's own answer follows within tens of milliseconds and replaces it with the same numbers.
PREDICT_JS = """
(r) => {
  const box = document.querySelector('#param-count .count-box[data-slope]');
  if (!box || r === null || r === undefined || r === '') return;
  const d = box.dataset, step = Number(r) - Number(d.r), slope = Number(d.slope);
  const trainable = Number(d.trainable) + slope * step, total = Number(d.total) + slope * step;
  const set = (cls, text) => { const el = box.querySelector(cls); if (el) el.textContent = text; };
  set('.trainable', trainable.toLocaleString('en-US'));
  set('.total', total.toLocaleString('en-US'));
  set('.percent', (100 * trainable / total).toFixed(4) + '%');
  const scale = Number(d.alpha) / (d.rslora === '1' ? Math.sqrt(Number(r)) : Number(r));
  set('.scaling', String(Number(scale.toPrecision(4))));
}
"""
MODEL_KEYS = ("model.name_or_path", "model.revision", "model.trust_remote_code")
# Text boxes count when left or submitted, not at every keystroke (a half-typed name is not an error).
# data.path is changed by the dataset buttons too, so it follows every change.
ON_LEAVE = {"model.revision", "lora.layers_to_transform", "lora.modules_to_save", "ui.target_regex",
            "hub.repo_id", "samples.prompts"}


class SessionLocks:
    """One lock per browser session. The form's state is one dict per session that events change in
    place; events of different widgets run at once (queue=False requests are served by a thread pool),
    so each holds its session's lock while it reads, changes and counts: no change is lost, and answers
    leave in the order the changes were made. Locks nobody holds are dropped (weak references)."""

    class _Lock:
        def __init__(self) -> None:
            self.lock = threading.Lock()

    def __init__(self) -> None:
        self._locks: weakref.WeakValueDictionary[str, SessionLocks._Lock] = weakref.WeakValueDictionary()
        self._guard = threading.Lock()

    @contextlib.contextmanager
    def __call__(self, request: gr.Request | None) -> Iterator[None]:
        key = getattr(request, "session_hash", None) or "default"
        with self._guard:
            holder = self._locks.get(key)
            if holder is None:
                holder = self._locks[key] = self._Lock()
        with holder.lock:
            yield


# Each handler answers with a dict {component: update}: components of its event's outputs that are not in it
# stay as they are. An answer that changes nothing is gr.skip() (Gradio 6 refuses an empty dict).
Handler = Callable[..., dict]


def field_handler(key: str, locked: SessionLocks, ui: SimpleNamespace) -> Handler:
    """A plain widget: store its value and recount. An echo (a value the state has already, e.g. after a
    preset filled the form) changes nothing."""
    def handle(value, values: dict, extra: dict, info: dict, request: gr.Request) -> dict:
        with locked(request):
            if values.get(key) == value:
                return gr.skip()
            values[key] = value
            return {ui.values: values, **count_view(ui, values, extra, info)}
    return handle


def targets_handler(locked: SessionLocks, ui: SimpleNamespace) -> Handler:
    def handle(ticked: list | None, values: dict, extra: dict, info: dict, request: gr.Request) -> dict:
        """Unticking a module the all-linear switch stands for turns the switch off, in the same step."""
        with locked(request):
            if values.get("ui.targets") == ticked:
                return gr.skip()
            values["ui.targets"] = ticked
            out = {ui.values: values}
            if values.get("ui.all_linear") and not set(info.get("all_linear", [])) <= set(ticked or []):
                values["ui.all_linear"] = out[ui.form["ui.all_linear"]] = False
            return {**out, **count_view(ui, values, extra, info)}
    return handle


def switch_handler(locked: SessionLocks, ui: SimpleNamespace) -> Handler:
    def handle(on: bool, values: dict, extra: dict, info: dict, request: gr.Request) -> dict:
        """Turning all-linear on ticks every module it stands for."""
        with locked(request):
            if values.get("ui.all_linear") == on:
                return gr.skip()
            values["ui.all_linear"] = on
            out = {ui.values: values}
            if on:
                order = [c[1] for c in info.get("choices", [])]
                values["ui.targets"] = out[ui.form["ui.targets"]] = sorted(
                    set(values.get("ui.targets") or []) | set(info["all_linear"]), key=order.index)
            return {**out, **count_view(ui, values, extra, info)}
    return handle


def model_handler(key: str, locked: SessionLocks, ui: SimpleNamespace) -> Handler:
    """The model changed: read its modules (from config.json only; a Hub id may take a moment), keep the
    ticked targets it still has, and recount."""
    def handle(value, values: dict, extra: dict, request: gr.Request) -> dict:
        with locked(request):
            if values.get(key) == value:   # set already by a preset or a loaded run file
                return gr.skip()
            values[key] = value
            info = model_info(values)
            values.update(retarget(values, info))
            return {ui.values: values, ui.model_info: info,
                    ui.form["ui.targets"]: gr.CheckboxGroup(choices=info["choices"], value=values["ui.targets"]),
                    ui.form["ui.all_linear"]: values["ui.all_linear"], ui.model_note: info["note"],
                    **count_view(ui, values, extra, info)}
    return handle


# What a preset keeps of the form: what is trained on what. Everything else it does not set goes back to the
# page's default (the demo run file), so one preset after another leaves nothing of the first behind (QLoRA's
# 4-bit quantization, its optimizer, max_grad_norm...).
KEPT_BY_PRESETS = (("model", "name_or_path"), ("model", "revision"), ("model", "trust_remote_code"),
                   ("data", "path"), ("data", "format"))


def preset_run(current: dict, preset: dict) -> dict:
    """The run dict a preset gives: the default run, with the current model and dataset, under the preset."""
    from finetune.demo import RUN_FILE
    from finetune.runfile.text import read_file

    base = read_file(RUN_FILE)
    (base.get("training") or {}).pop("output_dir", None)
    for section, key in KEPT_BY_PRESETS:
        if key in (current.get(section) or {}):
            base.setdefault(section, {})[key] = current[section][key]
    if "method" not in preset and isinstance(current.get("method"), dict):
        base["method"] = current["method"]   # a LoRA preset keeps how it learns; dpo.yaml and the like set it
    return overlay(base, preset)


def wire_configure(ui: SimpleNamespace, jobs) -> None:
    """Wire the Configure half of the page: each widget's count, the fix button, presets and run files that
    fill the form, and the data source with its preview."""
    locked = ui.locked = SessionLocks()   # live.py's Launch takes it too
    then_text = text_follower(ui, locked)
    wire_fields(ui, locked, then_text)
    method_view.wire(ui, locked, count_outputs(ui), then_text)   # the method, its settings and rewards
    memory_fix.wire(ui, locked, count_outputs(ui), then_text)   # the "apply the fix" button (ui/memory_fix.py)
    wire_fills(ui, jobs, locked, then_text)
    wire_data(ui, jobs, locked)


def state_of(ui: SimpleNamespace) -> list:
    """The form's server-side state, read by most events: its values, the keys it has no widget for, the model."""
    return [ui.values, ui.extra, ui.model_info]


def text_follower(ui: SimpleNamespace, locked: SessionLocks) -> Callable[[object], None]:
    """then_text(event): the run file's code view follows the event, after the count has gone out. (A state's
    own change event is not sent for events outside the queue, so each event chains it.)"""
    def text(values: dict, extra: dict, info: dict, request: gr.Request) -> str:
        with locked(request):
            return run_file_text(values, extra, info)

    def then_text(event) -> None:
        event.then(text, state_of(ui), ui.run_file, **FAST)
    return then_text


def wire_fields(ui: SimpleNamespace, locked: SessionLocks, then_text: Callable[[object], None]) -> None:
    """Each widget's own event: its value into the state, and the new count back."""
    count_out, state = count_outputs(ui), state_of(ui)
    for key, widget in ui.form.items():
        if key in MODEL_KEYS or key in ("ui.targets", "ui.all_linear") or key in method_view.OWN:
            continue   # these have their own handlers (below; ui/method_view.py)
        triggers = [widget.blur, widget.submit] if key in ON_LEAVE else [widget.change]
        event = gr.on(triggers, field_handler(key, locked, ui), [widget, *state], [ui.values, *count_out],
                      trigger_mode="always_last", **FAST)
        then_text(event)
        if key == "lora.r":
            # The page redraws the count as r moves; an answer for an r the slider has left since is
            # corrected at once rather than shown until the next answer.
            widget.input(None, widget, None, js=PREDICT_JS, **FAST)
            event.then(None, widget, None, js=PREDICT_JS, **FAST)
    targets, switch = ui.form["ui.targets"], ui.form["ui.all_linear"]
    then_text(targets.change(targets_handler(locked, ui), [targets, *state], [ui.values, switch, *count_out],
                             trigger_mode="always_last", **FAST))
    then_text(switch.change(switch_handler(locked, ui), [switch, *state], [ui.values, targets, *count_out],
                            trigger_mode="always_last", **FAST))
    for key in MODEL_KEYS:
        widget = ui.form[key]
        triggers = [widget.blur, widget.submit] if key in ON_LEAVE else [widget.change]
        then_text(gr.on(triggers, model_handler(key, locked, ui), [widget, ui.values, ui.extra],
                        [ui.values, ui.model_info, targets, switch, ui.model_note, *count_out],
                        trigger_mode="always_last", show_progress="minimal", api_visibility="private"))


# --- presets, run files and past runs fill the whole form ---

def fill_outputs(ui: SimpleNamespace) -> list:
    """What filling the form may change: every widget, the state, the model's note and the count."""
    return [*(ui.form[k] for k in FORM_KEYS), *state_of(ui), ui.model_note, *count_outputs(ui),
            *method_view.outputs(ui)]


def fill(ui: SimpleNamespace, raw: dict, values: dict, info_before: dict) -> dict:
    """Replace the form (the state dict in place, under the caller's lock) with a whole run dict; the updates
    name only the widgets whose value changed."""
    model = raw.get("model") or {}
    info = model_info({"model.name_or_path": model.get("name_or_path", DEMO), "model.revision":
                       model.get("revision"), "model.trust_remote_code": model.get("trust_remote_code")})
    before = dict(values)
    kept = {k: v for k, v in values.items() if k == memory_view.KEY}   # the GPU picked is no run-file key
    values.clear()
    values.update(form_values(raw, info), **kept)
    extra = extra_of(raw)
    widgets = {ui.form[k]: update for k, update in widget_updates(values, info, before, info_before).items()}
    widgets.update(method_view.updates(ui, values, before))   # the method's widgets show for their method only
    return {**widgets, ui.values: values, ui.extra: extra, ui.model_info: info, ui.model_note: info["note"],
            **count_view(ui, values, extra, info)}


def preset_handler(ui: SimpleNamespace, locked: SessionLocks) -> Handler:
    def on_preset(name: str | None, values: dict, extra: dict, info: dict, request: gr.Request) -> dict:
        if not name:
            return gr.skip()
        from finetune.runfile.presets import load_preset

        with refusals():
            preset = load_preset(name)
        with locked(request):
            raw, _, _ = form_run(values, extra, info)
            out = fill(ui, preset_run(raw, preset), values, info)
        gr.Info(f"Preset {name} applied.")
        return out
    return on_preset


def kind_label(kind: str) -> str:
    return {"axolotl": "an Axolotl config", "peft": "a PEFT adapter_config.json"}.get(kind, kind)


def load_run_handler(ui: SimpleNamespace, locked: SessionLocks) -> Handler:
    def on_load_run(path: str, values: dict, info: dict, request: gr.Request) -> dict:
        from finetune.runfile.importers import as_run_file
        from finetune.runfile.text import read_file

        name, run = Path(path).name, None
        try:
            with refusals():   # read_file refuses a file over the run-file size limit before reading it
                raw = read_file(path, source=name)
                # An Axolotl config or a PEFT adapter_config.json is imported (`python -m finetune import`).
                run, notes, kind = as_run_file(raw)
            with locked(request):
                out = fill(ui, run, values, info)
        except gr.Error:
            raise
        except Exception as exc:   # never Gradio's empty "Error": the file's problems, or one line saying why
            raise load_failure(name, run, exc) from None
        for note in notes:
            gr.Warning(f"{name}: {note}")
        gr.Info(f"Loaded {name}" + ("." if kind == "run" else f" (imported from {kind_label(kind)})."))
        return out
    return on_load_run


def load_failure(name: str, run, exc: Exception) -> gr.Error:
    """What "Load a run file" says when importing or filling the form failed: the run file's own problems when
    the form could not take it (a value it cannot show, such as `lora: 5`), else the exception in one line."""
    from finetune.runfile import RunConfig

    if isinstance(run, dict):   # imported (or a run file already): the form failed on it
        try:
            RunConfig.from_dict(run)
        except RunFileError as problems:
            return user_error("\n".join(f"{name}: {p}" for p in problems.problems))
    detail = " ".join(f"{type(exc).__name__}: {exc}".split())[:200]
    return user_error(f"{name}: could not be loaded ({detail}); this is a bug, please report it")


def clone_handler(ui: SimpleNamespace, jobs, locked: SessionLocks) -> Handler:
    def on_clone(run_id: str | None, values: dict, info: dict, request: gr.Request) -> dict:
        """"Load into form": the selected run's run.yaml (what it ran, fully resolved) fills the form; a
        launch from it gets a new folder."""
        from finetune.jobs import history
        from finetune.runfile.text import read_file

        if not run_id or run_id not in {p.name for p in history.run_dirs(jobs.runs_dir)}:
            raise user_error(f"Load into form: no run {run_id!r} to load")
        with refusals():
            raw = read_file(Path(jobs.runs_dir) / run_id / "run.yaml", source=f"{run_id}/run.yaml")
        (raw.get("training") or {}).pop("output_dir", None)
        with locked(request):
            out = fill(ui, raw, values, info)
        gr.Info(f"The settings of {run_id} are in the form.")
        return out
    return on_clone


def wire_fills(ui: SimpleNamespace, jobs, locked: SessionLocks, then_text: Callable[[object], None]) -> None:
    fill_out = fill_outputs(ui)
    # .select, not .input: Gradio 6's dropdown sends input twice per pick (on the pick, then on its blur), which
    # applied the preset twice. Through the queue, so "Preset X applied." shows as a toast (an event outside
    # the queue can only print it to the server's console).
    then_text(ui.preset.select(preset_handler(ui, locked), [ui.preset, *state_of(ui)], fill_out,
                               **{**FAST, "queue": True}))
    then_text(ui.clone.click(clone_handler(ui, jobs, locked), [ui.run_select, ui.values, ui.model_info], fill_out,
                             api_visibility="private"))
    then_text(ui.load_run.upload(load_run_handler(ui, locked), [ui.load_run, ui.values, ui.model_info], fill_out,
                                 api_visibility="private"))


# --- data: where it comes from, and a preview ---

def wire_data(ui: SimpleNamespace, jobs, locked: SessionLocks) -> None:
    path_box = ui.form["data.path"]

    def on_source(source: str, path: str | None) -> dict:
        show_path, show_file = source == "hub", source == "file"
        value = DEMO if source == "demo" else ("" if path == DEMO else path)
        return {path_box: gr.Textbox(visible=show_path or show_file, value=value, interactive=show_path),
                ui.data_file: gr.File(visible=show_file)}

    ui.data_source.input(on_source, [ui.data_source, path_box], [path_box, ui.data_file], **FAST)

    def on_data_file(path: str | None, profile: gr.OAuthProfile | None = None):
        if not path:
            return gr.skip()
        from finetune.data.uploads import store

        require(profile, "upload datasets")   # on a Space: the same sign-in as Launch (it stores files)
        try:   # kept beside the runs, size-capped, pruned once stale (finetune/data/uploads.py)
            return str(store(path, jobs.runs_dir))
        except (RunFileError, OSError) as exc:
            raise user_error(getattr(exc, "problems", [f"upload: cannot be stored: {exc}"])[0]) from None

    ui.data_file.upload(on_data_file, ui.data_file, path_box, api_visibility="private")

    def on_preview(values: dict, extra: dict, info: dict, request: gr.Request,
                   profile: gr.OAuthProfile | None = None) -> str:
        from finetune.data.formats import preview

        require(profile, "preview data")   # on a Space: the same sign-in as Launch (it reads files)
        with locked(request):
            _, run, problems = form_run(values, extra, info)
        if run is None:
            return render.problems(problems)
        try:
            return render.examples(preview(run, n=3))
        except RunFileError as exc:
            return render.problems(exc.problems)

    ui.preview_button.click(on_preview, state_of(ui), ui.preview, api_visibility="private")
