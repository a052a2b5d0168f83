"""What the Configure and Understand panels compute from the form's values (finetune/ui/panel.py): the run and
its problems, the count, the model's modules, the widgets a whole run file changes. No page, no server."""

import json
from types import SimpleNamespace

import gradio as gr
import pytest
from tiny_configs import TINY

from finetune.runfile import RunConfig
from finetune.ui import panel


def props(update) -> dict:
    """What an update sets: a component returned as an update (gr.Slider(value=...)) carries its arguments."""
    return update.constructor_args if isinstance(update, gr.components.Component) else update


@pytest.fixture(scope="module")
def start():
    """The page's opening form: the demo run (panel.initial(), as build_app computes it)."""
    return panel.initial()


@pytest.fixture(scope="module")
def phi3(tmp_path_factory):
    """A model folder with only a config.json: fused qkv_proj and gate_up_proj, no q_proj."""
    folder = tmp_path_factory.mktemp("phi3")
    (folder / "config.json").write_text(json.dumps(TINY["phi3"]))
    return str(folder)


def test_the_opening_form_is_the_demo_run_and_launchable(start):
    values, info = start["values"], start["info"]
    assert values["model.name_or_path"] == "demo" and values["ui.all_linear"]
    assert values["ui.targets"] == info["all_linear"] == ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj",
                                                          "up_proj", "down_proj"]
    assert start["launchable"] and start["errors"] == ""
    assert "trainable parameters" in start["count"] and "<table>" in start["details"]
    assert "target_modules: all-linear" in start["run_file"]


def test_form_values_become_the_checked_run(start):
    values = {**start["values"], "lora.r": 8.0, "lora.modules_to_save": "lm_head", "ui.all_linear": False,
              "ui.targets": ["q_proj", "v_proj"]}
    raw, run, problems = panel.form_run(values, {"training": {"max_grad_norm": 0.5}}, start["info"])
    assert problems == [] and isinstance(run, RunConfig)
    assert run.lora.r == 8 and run.lora.target_modules == ["q_proj", "v_proj"]
    assert run.lora.modules_to_save == ["lm_head"]
    assert run.training.max_grad_norm == 0.5   # a key the form has no widget for rides along
    assert raw["lora"]["r"] == 8


def test_every_bad_value_is_a_problem_and_nothing_launches(start):
    values = {**start["values"], "lora.r": 0, "training.learning_rate": 5, "data.format": "csvish"}
    _, run, problems = panel.form_run(values, {}, start["info"])
    assert run is None
    assert "lora.r: must be a whole number >= 1 and <= 4096, got 0" in problems
    assert any(p.startswith("training.learning_rate:") for p in problems)
    assert any(p.startswith("data.format:") for p in problems)
    view = panel.understand(values, {}, start["info"])
    assert not view["launchable"] and "fix the settings below" in view["count"]
    assert view["errors"].splitlines() == [f"- {p}" for p in problems]
    assert view["fix"] is None and view["fix_label"] is None


def test_a_module_the_model_lacks_is_named_by_the_count(start):
    values = {**start["values"], "ui.all_linear": False, "ui.targets": ["q_proj", "nope_proj"]}
    view = panel.understand(values, {}, start["info"])
    assert not view["launchable"] and "nope_proj" in view["errors"]


def test_the_run_file_text_is_resolved_when_valid_and_as_typed_otherwise(start):
    assert "output_dir: runs/run" in panel.run_file_text(start["values"], {}, start["info"])
    typed = panel.run_file_text({**start["values"], "lora.r": 0}, {}, start["info"])
    assert "r: 0" in typed and "output_dir" not in typed


def test_model_info_lists_the_modules_and_an_unreadable_model_has_none(phi3):
    info = panel.model_info({"model.name_or_path": phi3})
    assert [name for _, name in info["choices"]] == ["embed_tokens", "o_proj", "qkv_proj", "gate_up_proj",
                                                     "down_proj", "lm_head"]
    assert info["all_linear"] == ["o_proj", "qkv_proj", "gate_up_proj", "down_proj"]
    assert info["note"].startswith("Phi3ForCausalLM (phi3):")
    assert panel.model_info({"model.name_or_path": "/no/such/model"}) == {"choices": [], "all_linear": [], "note": ""}


def test_a_new_model_keeps_the_ticked_modules_it_has(start, phi3):
    info = panel.model_info({"model.name_or_path": phi3})
    kept = panel.retarget({"ui.targets": ["o_proj", "q_proj"], "ui.all_linear": False}, info)
    assert kept["ui.targets"] == ["o_proj"] and not kept["ui.all_linear"]
    # Nothing left ticked, or the switch on: the new model's all-linear set.
    for values in ({"ui.targets": ["q_proj"], "ui.all_linear": False}, {"ui.targets": [], "ui.all_linear": True}):
        again = panel.retarget(values, info)
        assert again["ui.targets"] == info["all_linear"] and again["ui.all_linear"]


def test_a_partial_run_fills_the_rest_with_defaults(start):
    values = panel.form_values({"lora": {"r": 4, "target_modules": ["q_proj"]}, "training": {"optim": "sgd"}},
                               start["info"])
    defaults = RunConfig().to_dict()
    assert values["lora.r"] == 4 and values["training.optim"] == "sgd"
    assert values["ui.targets"] == ["q_proj"] and not values["ui.all_linear"]
    assert values["training.max_steps"] == defaults["training"]["max_steps"]
    assert values["data.max_length"] == defaults["data"]["max_length"]


def test_filling_the_form_updates_only_the_widgets_that_changed(start, phi3):
    before, info = start["values"], start["info"]
    after = {**before, "lora.r": 300, "lora.lora_alpha": 0.5, "training.seed": 7}
    updates = panel.widget_updates(after, info, before, info)
    assert set(updates) == {"lora.r", "lora.lora_alpha", "training.seed"}
    assert updates["training.seed"] == 7
    assert props(updates["lora.r"]) == {"value": 300, "maximum": 300}   # the slider grows to fit
    assert props(updates["lora.lora_alpha"]) == {"value": 0.5, "minimum": 0.5, "maximum": 512}
    assert panel.widget_updates(before, info, dict(before), info) == {}


def test_new_module_choices_redraw_the_ticks_with_unknown_names_shown(start, phi3):
    info = panel.model_info({"model.name_or_path": phi3})
    after = {**start["values"], "ui.targets": ["o_proj", "q_proj"]}
    updates = panel.widget_updates(after, info, start["values"], start["info"])
    ticks = props(updates["ui.targets"])
    assert ticks["value"] == ["o_proj", "q_proj"]
    assert [name for _, name in ticks["choices"]] == [name for _, name in info["choices"]] + ["q_proj"]


def test_the_count_view_is_keyed_by_its_components(start):
    ui = SimpleNamespace(param_count="param_count", count_details="count_details", errors="errors",
                         launch="launch", memory="memory", apply_fix="apply_fix", runner_note="runner_note",
                         form={"runner.timeout": "runner_timeout"})
    view = panel.count_view(ui, start["values"], {}, start["info"])
    assert list(view) == panel.count_outputs(ui)
    assert "trainable parameters" in view["param_count"] and view["errors"] == ""
    assert props(view["launch"]) == {"interactive": True}
    assert props(view["apply_fix"]) == {"value": "Apply the fix", "visible": False}   # the demo fits: no fix
    bad = panel.count_view(ui, {**start["values"], "lora.r": 0}, {}, start["info"])
    assert props(bad["launch"]) == {"interactive": False} and bad["errors"].startswith("- lora.r:")
