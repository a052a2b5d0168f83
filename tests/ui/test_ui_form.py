"""The form <-> run file mapping (finetune/ui/form.py), without a browser."""

from finetune.runfile import RunConfig
from finetune.ui.form import extra_of, form_to_run, run_to_form, target_modules

ALL = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def test_a_run_file_survives_the_form():
    raw = {"model": {"name_or_path": "demo", "revision": "main"},
           "lora": {"r": 8, "lora_alpha": 16.0, "target_modules": ["q_proj", "v_proj"], "rank_pattern": {"q_proj": 4},
                    "modules_to_save": ["lm_head"], "layers_to_transform": [0, 2]},
           "training": {"max_steps": 5, "lr_scheduler_type": "cosine"}}
    full = RunConfig.from_dict(raw).to_dict()
    values = run_to_form(full, ALL)
    assert values["lora.modules_to_save"] == "lm_head" and values["lora.layers_to_transform"] == "0, 2"
    assert values["ui.targets"] == ["q_proj", "v_proj"] and not values["ui.all_linear"]
    back = form_to_run(values, extra_of(full), ALL)
    assert RunConfig.from_dict(back).to_dict() == RunConfig.from_dict(full).to_dict()


def test_all_linear_holds_only_while_every_module_is_ticked():
    assert target_modules(ALL, True, "", ALL) == "all-linear"
    assert target_modules(ALL[1:], True, "", ALL) == ALL[1:]      # unticked one: the switch no longer counts
    assert target_modules(ALL, False, "", ALL) == ALL
    assert target_modules(["q_proj"], False, r" .*\.q_proj ", ALL) == r".*\.q_proj"   # a regex wins


def test_text_boxes_become_lists_or_null():
    values = {"lora.modules_to_save": " embed_tokens,lm_head ", "lora.layers_to_transform": "3",
              "model.revision": "  "}
    run = form_to_run(values, {}, ALL)
    assert run["lora"]["modules_to_save"] == ["embed_tokens", "lm_head"]
    assert run["lora"]["layers_to_transform"] == 3
    assert run["model"]["revision"] is None
    assert form_to_run({"lora.layers_to_transform": "1, x"}, {}, ALL)["lora"]["layers_to_transform"] == [1, "x"]


def test_a_regex_or_unknown_names_are_kept_for_the_checks_to_name():
    values = run_to_form({"lora": {"target_modules": r".*\.q_proj"}}, ALL)
    assert values["ui.target_regex"] == r".*\.q_proj" and values["ui.targets"] == []
    values = run_to_form({"lora": {"target_modules": ["q_projj"]}}, ALL)
    assert values["ui.targets"] == ["q_projj"]
