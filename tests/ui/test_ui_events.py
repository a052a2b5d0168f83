"""The page's handlers, called directly on a page built as the app builds it (finetune.ui.build_page), with no
browser and no server: which components each answer updates (a dict {component: update}; the rest of its
event's outputs stay as they are), that Gradio accepts the answer for the event it is wired to, and the one
error boundary (finetune/ui/guard.py)."""

import asyncio
import inspect
import json
import logging
from types import SimpleNamespace

import gradio as gr
import pytest
from gradio import utils as gradio_utils
from tiny_configs import FULL, TINY

from finetune.errors import RunFileError
from finetune.jobs import UnknownRun
from finetune.ui.guard import refusals, user_error, user_error_from
from finetune.ui.panel import count_outputs, model_info, retarget, understand

REQUEST = SimpleNamespace(session_hash="unit-test")   # what the handlers read of a gr.Request: the session


@pytest.fixture(scope="module")
def page(built_page):   # built_page and form, the opening form state: tests/conftest.py
    return built_page


def wired(page, component, trigger: str, output=None):
    """The Python handler that `trigger` of `component` runs (with `output` among its outputs, when several)."""
    found = [fn for fn in page.demo.fns.values()
             if fn.fn is not None and (component._id, trigger) in fn.targets and (output is None or output in fn.outputs)]
    assert len(found) == 1, f"{len(found)} handlers for {trigger} of {component}"
    return found[0]


def updated(page, block_fn, answer) -> set:
    """The components an answer updates, once Gradio has accepted it for the event's outputs."""
    asyncio.run(page.demo.postprocess_data(block_fn, answer, None))   # raises on a component not among them
    if answer == gr.skip():
        return set()
    assert isinstance(answer, dict)
    return set(answer)


def props(update) -> dict:
    return update.constructor_args if isinstance(update, gr.components.Component) else update


@pytest.fixture(scope="module")
def phi3(tmp_path_factory):
    folder = tmp_path_factory.mktemp("phi3")
    (folder / "config.json").write_text(json.dumps(TINY["phi3"]))
    return str(folder)


# --- the live count ---

def test_a_widget_updates_the_state_and_the_count_and_an_echo_nothing(page, form):
    ui, (values, extra, info) = page.ui, form
    handle = wired(page, ui.form["lora.r"], "change")
    answer = handle.fn(8, values, extra, info, REQUEST)
    assert updated(page, handle, answer) == {ui.values, *count_outputs(ui)}
    assert values["lora.r"] == 8 and "trainable parameters" in answer[ui.param_count]
    assert updated(page, handle, handle.fn(8, values, extra, info, REQUEST)) == set()


def test_unticking_a_module_turns_all_linear_off_in_the_same_answer(page, form):
    ui, (values, extra, info) = page.ui, form
    switch = ui.form["ui.all_linear"]
    handle = wired(page, ui.form["ui.targets"], "change")
    answer = handle.fn(info["all_linear"][1:], values, extra, info, REQUEST)
    assert updated(page, handle, answer) == {ui.values, switch, *count_outputs(ui)}
    assert answer[switch] is False and values["ui.all_linear"] is False
    # With the switch already off, ticking changes only the state and the count.
    assert switch not in updated(page, handle, handle.fn(info["all_linear"], values, extra, info, REQUEST))


def test_all_linear_on_ticks_every_module_it_stands_for(page, form):
    ui, (values, extra, info) = page.ui, form
    targets = ui.form["ui.targets"]
    values.update({"ui.all_linear": False, "ui.targets": ["embed_tokens", "v_proj"]})
    handle = wired(page, ui.form["ui.all_linear"], "change")
    answer = handle.fn(True, values, extra, info, REQUEST)
    assert updated(page, handle, answer) == {ui.values, targets, *count_outputs(ui)}
    assert answer[targets] == ["embed_tokens", *info["all_linear"]]   # in the checkboxes' order
    assert targets not in updated(page, handle, handle.fn(False, values, extra, info, REQUEST))


def test_a_new_model_redraws_its_modules_the_switch_and_the_note(page, form, phi3):
    ui, (values, extra, _) = page.ui, form
    handle = wired(page, ui.form["model.name_or_path"], "change")
    answer = handle.fn(phi3, values, extra, REQUEST)
    targets, switch = ui.form["ui.targets"], ui.form["ui.all_linear"]
    assert updated(page, handle, answer) == {ui.values, ui.model_info, targets, switch, ui.model_note,
                                             *count_outputs(ui)}
    assert props(answer[targets])["value"] == ["o_proj", "qkv_proj", "gate_up_proj", "down_proj"]
    assert answer[switch] is True and answer[ui.model_note].startswith("Phi3ForCausalLM")
    assert updated(page, handle, handle.fn(phi3, values, extra, REQUEST)) == set()


# --- presets, run files and past runs fill the form ---

def test_a_preset_updates_only_the_widgets_it_changes(page, form):
    ui, (values, extra, info) = page.ui, form
    handle = wired(page, ui.preset, "select")
    answer = handle.fn("qlora", values, extra, info, REQUEST)
    widgets = updated(page, handle, answer) - {ui.values, ui.extra, ui.model_info, ui.model_note, *count_outputs(ui)}
    changed = {key for key, widget in ui.form.items() if widget in widgets}
    assert {"model.quantization", "lora.r", "training.optim", "training.gradient_checkpointing"} <= changed
    assert not changed & {"model.name_or_path", "data.path", "lora.bias", "ui.targets"}   # kept, or the same
    assert answer[ui.form["model.quantization"]] == "4bit" and values["model.quantization"] == "4bit"
    assert answer[ui.extra] == {"training": {"max_grad_norm": 0.3}}   # no widget: kept beside the form
    assert updated(page, handle, handle.fn(None, values, extra, info, REQUEST)) == set()


def test_an_unknown_preset_is_refused_in_one_log_line(page, form, caplog):
    handle = wired(page, page.ui.preset, "select")
    with caplog.at_level(logging.WARNING, "finetune.app"), pytest.raises(gr.Error, match="no such preset") as error:
        handle.fn("nope", *form, REQUEST)
    assert not error.value.print_exception
    assert [r.getMessage() for r in caplog.records] == [f"refused: {error.value.message}"]


def test_a_loaded_run_file_fills_the_form_and_a_broken_one_is_refused(page, form, tmp_path):
    ui, (values, _, info) = page.ui, form
    handle = wired(page, ui.load_run, "upload")
    good = tmp_path / "mine.yaml"
    good.write_text("lora: {r: 32, rank_pattern: {q_proj: 4}}\ntraining: {seed: 3}\n")
    answer = handle.fn(str(good), values, info, REQUEST)
    assert props(answer[ui.form["lora.r"]])["value"] == 32 and answer[ui.form["training.seed"]] == 3
    assert answer[ui.extra] == {"lora": {"rank_pattern": {"q_proj": 4}}}
    broken = tmp_path / "broken.yaml"
    broken.write_text("lora: {r: [1\n")
    with pytest.raises(gr.Error, match="not valid YAML"):
        handle.fn(str(broken), values, info, REQUEST)


def test_loading_an_unknown_run_into_the_form_is_refused(page, form):
    values, _, info = form
    handle = wired(page, page.ui.clone, "click")
    with pytest.raises(gr.Error, match="Load into form: no run 'nope' to load"):
        handle.fn("nope", values, info, REQUEST)


def test_the_fix_button_sets_the_fix_and_recounts(page, form, tmp_path):
    ui, (values, extra, _) = page.ui, form
    handle = wired(page, ui.apply_fix, "click")
    assert updated(page, handle, handle.fn(values, extra, form[2], REQUEST)) == {ui.values, *count_outputs(ui)}
    (tmp_path / "config.json").write_text(json.dumps(FULL["Meta-Llama-3-8B"][0]))
    values.update({"model.name_or_path": str(tmp_path), "ui.gpu": "t4"})
    info = model_info(values)
    values.update(retarget(values, info))
    before, fix = dict(values), understand(values, extra, info)["fix"]
    answer = handle.fn(values, extra, info, REQUEST)
    assert answer[ui.form["model.quantization"]] == "4bit" and values["model.quantization"] == "4bit"
    assert props(answer[ui.apply_fix])["visible"] is False   # it fits now: no further fix
    assert updated(page, handle, answer) - {ui.values, *count_outputs(ui)} == \
        {ui.form[key] for key, value in fix.items() if before[key] != value}


def test_the_data_source_shows_the_path_box_or_the_upload(page):
    ui = page.ui
    handle = wired(page, ui.data_source, "input")
    answer = handle.fn("hub", "demo")
    assert props(answer[ui.form["data.path"]]) == {"visible": True, "value": "", "interactive": True}
    assert props(answer[ui.data_file]) == {"visible": False}
    assert updated(page, handle, answer) == {ui.form["data.path"], ui.data_file}


# --- Force stop and the Playground ---

def test_force_stop_is_offered_once_and_refuses_unknown_runs(page, monkeypatch):
    ui = page.ui
    offer = wired(page, ui.timer, "tick", output=ui.force_cancel)
    assert updated(page, offer, offer.fn(None, False)) == set()
    monkeypatch.setattr(page.jobs, "status", lambda run_id: {"force_available": True})
    answer = offer.fn("r1", False)
    assert props(answer[ui.force_cancel]) == {"visible": True} and True in answer.values()
    assert len(updated(page, offer, answer)) == 2
    assert updated(page, offer, offer.fn("r1", True)) == set()   # shown already: nothing sent
    monkeypatch.undo()
    force = wired(page, ui.force_cancel, "click")
    with pytest.raises(gr.Error, match="no run 'nope'"):
        force.fn("nope")
    with pytest.raises(gr.Error, match="no run selected"):
        force.fn(None)


def test_the_playground_lists_runs_once_and_names_its_answer_boxes(page):
    p = page.ui.playground
    choices = wired(page, p.refresh, "click")
    answer = choices.fn(None, None)
    assert updated(page, choices, answer) == {p.run, p.shown}
    assert updated(page, choices, choices.fn(None, answer[p.shown])) == set()
    select = wired(page, p.run, "change", output=p.status)
    assert updated(page, select, select.fn(None)) == {p.answer_base, p.answer_adapter, p.status}
    assert updated(page, select, select.fn("no-such-run")) == {p.status}


def test_every_handler_gets_the_request_and_sign_in_it_asks_for(page):
    """Gradio passes a gr.Request (or the sign-in) only to a parameter whose annotation it can resolve in the
    handler's module, and None otherwise: the fix button's handler (gradio imported inside a function) got None
    and took the lock all sessions share instead of its own."""
    for fn in page.demo.fns.values():
        if fn.fn is None:
            continue
        special = [name for name in inspect.signature(fn.fn).parameters
                   if name in ("request", "profile", "oauth_token")]
        hints = gradio_utils.get_type_hints(fn.fn)
        assert all(name in hints for name in special), f"{fn.fn.__module__}.{fn.fn.__qualname__}: {special}"


# --- the error boundary ---

def test_the_cores_refusals_become_one_line_user_errors(caplog):
    with caplog.at_level(logging.WARNING, "finetune.app"):
        with pytest.raises(gr.Error) as error, refusals():
            raise RunFileError(["lora.r: must be a whole number", "data.path: no such file"])
        assert error.value.message == "lora.r: must be a whole number\ndata.path: no such file"
        assert error.value.__suppress_context__ and not error.value.print_exception
        with pytest.raises(gr.Error) as error, refusals():
            raise UnknownRun("x")
        assert error.value.message == "no run 'x'"
    assert [r.getMessage() for r in caplog.records] == ["refused: lora.r: must be a whole number (+1 more)",
                                                        "refused: no run 'x'"]
    with pytest.raises(ValueError, match="a bug"), refusals():   # anything else is no refusal: unchanged
        raise ValueError("a bug")
    assert user_error_from(UnknownRun("a/b")).message.startswith("run id: must be a run folder's name")


def test_only_the_apps_own_refusals_are_quiet(page):
    """Building the page changes nothing of gradio's class: a gr.Error raised elsewhere keeps its traceback."""
    assert gr.Error("raised by someone else").print_exception
    assert not user_error("a refusal").print_exception


def test_the_watch_poll_sends_what_changed_and_nothing_once_settled(page):
    """The one-second poll of the selected run: its first answer draws everything, the settings go alone,
    then the data twice more (finetune/ui/plots.py), then nothing (gr.skip(), accepted by Gradio)."""
    ui = page.ui
    tick = wired(page, ui.timer, "tick", ui.loss_plot)
    seen, answers = None, []
    for _ in range(8):
        answer = tick.fn(None, seen)
        answers.append(updated(page, tick, answer))
        if answer != gr.skip():
            seen = answer[ui.seen]
    assert {ui.loss_plot, ui.progress, ui.log, ui.seen} <= answers[0]
    assert answers[-1] == set() and answers[-2] == set()


def test_the_runs_poll_lists_a_new_run_once(page):
    ui = page.ui
    tick = wired(page, ui.list_timer, "tick", ui.runs_table)
    first = tick.fn(None, None, [], None, [])
    assert {ui.run_select, ui.run_list, ui.runs_table, ui.runs_shown} <= updated(page, tick, first)
    again = tick.fn(None, first[ui.run_list], [], first[ui.runs_shown], [])
    assert updated(page, tick, again) == set()
    run_id = page.jobs.submit("model: {name_or_path: demo}\ntraining: {max_steps: 1}\n")
    try:
        later = tick.fn(None, first[ui.run_list], [run_id], first[ui.runs_shown], [])
        assert {ui.run_select, ui.runs_table} <= updated(page, tick, later)
        assert props(later[ui.run_select]).get("value") == run_id   # this page launched it: it follows it
    finally:
        page.jobs.cancel(run_id)
        page.jobs.wait(run_id, timeout=120)
