"""Presets are partial run files with a header saying where their values come from."""

import pytest

from finetune.errors import RunFileError
from finetune.runfile import RunConfig, overlay
from finetune.runfile.presets import PRESETS_DIR, list_presets, load_preset

NAMES = [p["name"] for p in list_presets()]


def test_the_documented_presets_exist():
    assert {"unsloth", "axolotl-llama3", "peft-defaults", "qlora", "lora-blog", "rslora", "dora"} <= set(NAMES)


@pytest.mark.parametrize("name", NAMES)
def test_each_preset_is_a_valid_partial_run_file_with_a_header(name):
    assert (PRESETS_DIR / f"{name}.yaml").read_text().startswith("# ")
    RunConfig.from_dict(load_preset(name))


def test_preset_values_match_their_sources():
    unsloth = RunConfig.from_dict(load_preset("unsloth"))
    assert (unsloth.lora.r, unsloth.lora.lora_alpha, unsloth.lora.lora_dropout) == (16, 16, 0.0)
    assert unsloth.lora.target_modules == ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
    assert unsloth.training.gradient_checkpointing and unsloth.training.seed == 42
    axolotl = RunConfig.from_dict(load_preset("axolotl-llama3"))
    assert (axolotl.lora.r, axolotl.lora.lora_alpha, axolotl.lora.lora_dropout) == (32, 16, 0.05)
    assert axolotl.lora.target_modules == "all-linear"
    qlora = RunConfig.from_dict(load_preset("qlora"))
    assert qlora.model.quantization == "4bit" and (qlora.lora.r, qlora.lora.lora_alpha) == (64, 16)
    assert qlora.training.optim == "paged_adamw_32bit" and qlora.training.max_grad_norm == 0.3
    peft = RunConfig.from_dict(load_preset("peft-defaults"))
    assert (peft.lora.r, peft.lora.lora_alpha, peft.lora.bias) == (8, 8, "none")


def test_a_preset_overlays_the_current_settings():
    current = {"model": {"name_or_path": "my/model"}, "lora": {"r": 4, "bias": "all"}}
    merged = RunConfig.from_dict(overlay(current, load_preset("qlora")))
    assert merged.model.name_or_path == "my/model" and merged.model.quantization == "4bit"
    assert merged.lora.r == 64 and merged.lora.bias == "none"


def test_unknown_preset_lists_the_ones_there_are():
    with pytest.raises(RunFileError, match=r'preset "unslot": no such preset; there are .*unsloth'):
        load_preset("unslot")
