"""finetune.runfile.export: every field reaches the Axolotl export or is listed as not exportable; the export
of every preset is what a user can run (the PEFT script's tests: test_export_peft.py)."""

import dataclasses

import pytest
import yaml

from finetune.runfile import SECTIONS, RunConfig, axolotl
from finetune.runfile.export import axolotl_dropped, export, to_axolotl
from finetune.runfile.presets import list_presets, load_preset


def all_fields():
    return {f"{name}.{f.name}" for name, cls in SECTIONS.items() for f in dataclasses.fields(cls)}


def test_every_field_is_in_exactly_one_axolotl_table():
    tables = [set(axolotl.RENAMED), set(axolotl.COMPOSED), set(axolotl.NOT_IN_AXOLOTL)]
    for i, a in enumerate(tables):
        for b in tables[i + 1:]:
            assert not a & b
    assert set().union(*tables) == all_fields(), "a new field must be exported or listed as not exportable"


@pytest.mark.parametrize("name", [p["name"] for p in list_presets()])
def test_each_preset_exports_to_axolotl(name):
    run = RunConfig.from_dict(load_preset(name))
    config = yaml.safe_load(export(run, "axolotl"))
    assert config["lora_r"] == run.lora.r and config["lora_alpha"] == run.lora.lora_alpha
    assert config["micro_batch_size"] == run.training.per_device_train_batch_size
    assert ("lora_target_linear" in config) == (run.lora.target_modules == "all-linear")


def test_settings_axolotl_cannot_take_are_said_not_dropped_silently():
    run = RunConfig.from_dict({"lora": {"bias": "all", "rank_pattern": {"q_proj": 4}},
                               "training": {"warmup_steps": 0.1, "max_steps": 7}})
    text = export(run, "axolotl")
    assert "# not carried over: lora.bias" in text and "# not carried over: lora.rank_pattern" in text
    config = yaml.safe_load(text)
    assert config["warmup_ratio"] == 0.1 and "warmup_steps" not in config and config["max_steps"] == 7
    assert axolotl_dropped(RunConfig()) == []


def test_target_spellings_export_the_same_way():
    for spelling in ("all-linear", "All-Linear", "ALL-LINEAR"):
        config = to_axolotl(RunConfig.from_dict({"lora": {"target_modules": spelling}}))
        assert config.get("lora_target_linear") is True and "lora_target_modules" not in config
    names = to_axolotl(RunConfig.from_dict({"lora": {"target_modules": ["q_proj", "v_proj"]}}))
    assert names["lora_target_modules"] == ["q_proj", "v_proj"]



def test_the_strategy_is_carried_in_axolotl_s_keys_and_ddp_adds_none():
    """DDP is what Axolotl does without a key; the others are written, never listed as not carried over."""
    strategy_keys = {"deepspeed", "fsdp", "fsdp_config", "fsdp_version"}
    assert not strategy_keys & to_axolotl(RunConfig.from_dict({"training": {"devices": 2}})).keys()
    for training in ({"strategy": "deepspeed", "zero_stage": 3}, {"strategy": "fsdp"}):
        run = RunConfig.from_dict({"training": {**training, "devices": 2}})
        assert strategy_keys & to_axolotl(run).keys()
        assert [d.split(" ")[0] for d in axolotl_dropped(run)] == ["training.devices"]
