"""The run file: defaults, parsing, and one clear line per problem."""

import dataclasses

import pytest

from finetune.errors import RunFileError
from finetune.runfile import SECTIONS, RunConfig, field_help, overlay, parse_run, parse_text


def problems(text: str) -> list[str]:
    with pytest.raises(RunFileError) as info:
        parse_run(text)
    return info.value.problems


def test_empty_file_gives_the_demo_defaults():
    run = parse_run("")
    assert run.model.name_or_path == "demo" and run.data.path == "demo"
    assert run.lora.r == 16 and run.lora.target_modules == "all-linear"


def test_design_example_round_trips():
    text = """
model: {name_or_path: HuggingFaceTB/SmolLM2-135M, quantization: none}
lora: {r: 16, lora_alpha: 16, lora_dropout: 0.0, target_modules: [q_proj, k_proj, v_proj, o_proj], bias: none}
data: {path: data/sample.jsonl, format: auto, max_length: 512, packing: false}
training: {output_dir: runs/my-run, learning_rate: 2.0e-4, max_steps: -1, num_train_epochs: 1,
           per_device_train_batch_size: 2, gradient_accumulation_steps: 4, logging_steps: 1, seed: 42}
"""
    run = parse_run(text)
    assert parse_run(run.to_yaml()) == run
    assert parse_run('{"lora": {"r": 4}}').lora.r == 4  # JSON is accepted too


def test_yaml_number_without_dot_is_a_number():
    assert parse_run("training: {learning_rate: 2e-4}").training.learning_rate == pytest.approx(2e-4)


@pytest.mark.parametrize("text, expected", [
    ("lora: {r: 0}", "lora.r: must be a whole number >= 1 and <= 4096, got 0"),
    ("lora: {r: 2.5}", "lora.r: must be a whole number >= 1 and <= 4096, got 2.5"),
    ("lora: {r: sixteen}", 'lora.r: must be a whole number >= 1 and <= 4096, got "sixteen"'),
    ("lora: {r: true}", "lora.r: must be a whole number >= 1 and <= 4096, got true"),
    ("lora: {lora_dropout: 1}", "lora.lora_dropout: must be a number >= 0 and < 1, got 1"),
    ("lora: {lora_alpha: 0}", "lora.lora_alpha: must be a number > 0 and <= 65536, got 0"),
    ("lora: {bias: al}", 'lora.bias: must be one of "none", "all", "lora_only", got "al" (did you mean "all"?)'),
    ("lora: {target_modules: []}", "lora.target_modules: must name at least one module, got an empty list"),
    ("lora: {target_modules: 3}", "lora.target_modules: must be a string or a list of names, got 3"),
    ("lora: {use_dora: 1}", "lora.use_dora: must be true or false, got 1"),
    ("lora: {lora_alpah: 8}", 'lora.lora_alpah: unknown key (did you mean "lora_alpha"?)'),
    ("lora: {rank_pattern: {q_proj: 0}}", 'lora.rank_pattern: "q_proj" must be a whole number >= 1 and <= 4096, got 0'),
    ("lora: {layers_to_transform: [0, -1]}", "lora.layers_to_transform: must be a whole number >= 0 and <= 9999, got -1"),
    ("lora: {layers_pattern: layers}", "lora.layers_pattern: only means something with lora.layers_to_transform, which is not set"),
    ("lora: {loftq_config: {}}", "lora.loftq_config: not supported by LoRA Launchpad"),
    ("model: {quantization: 4-bit}", 'model.quantization: must be one of "none", "4bit", "8bit", got "4-bit" (did you mean "4bit"?)'),
    ("model: {name_or_path: ''}", 'model.name_or_path: must be a non-empty string, got ""'),
    ("data: {format: chatml}", 'data.format: must be one of "auto", "chat", "unpaired_preference", "preference", "prompt_completion", "alpaca", "text", "prompt_only", got "chatml" (did you mean "chat"?)'),
    ("data: {max_length: 4}", "data.max_length: must be a whole number >= 8 and <= 1048576, got 4"),
    ("training: {max_steps: 0}", "training.max_steps: must be -1 (use num_train_epochs) or a whole number >= 1, got 0"),
    ("training: {learning_rate: .inf}", "training.learning_rate: must be a number > 0 and <= 1, got inf"),
    ("training: {per_device_train_batch_size: 0}", "training.per_device_train_batch_size: must be a whole number >= 1 and <= 65536, got 0"),
    ("trainig: {}", 'trainig: unknown section (did you mean "training"?); the sections are model, lora, data, training'),
    ("lora: 5", "lora: must be a mapping of settings, got 5"),
    ("lora: {r: [1, 2", "run file: not valid YAML or JSON (line 2, column 1)"),   # libyaml: where input ended
    ("[1, 2]", "run file: must be a mapping with sections model, lora, data, training; got list"),
])
def test_each_bad_value_is_one_line_naming_field_and_value(text, expected):
    found = problems(text)
    assert len(found) == 1 and found[0].startswith(expected), found


def test_every_problem_is_reported_at_once():
    found = problems("lora: {r: 0, lora_dropout: 2, bias: x}\ntraining: {seed: -1}")
    assert [p.split(":")[0] for p in found] == ["lora.r", "lora.lora_dropout", "lora.bias", "training.seed"]


def test_training_takes_further_allowlisted_sftconfig_keys_with_checked_values():
    run = parse_run("training: {eval_strategy: epoch, dataloader_num_workers: 0}")
    assert run.training_extra == {"eval_strategy": "epoch", "dataloader_num_workers": 0}
    assert run.to_dict()["training"]["eval_strategy"] == "epoch"
    assert problems("training: {dataloader_num_workers: two}") == [
        'training.dataloader_num_workers: must be a whole number >= 0 and <= 16, got "two"']
    assert problems("training: {learing_rate: 1e-4}") == [
        'training.learing_rate: unknown key (did you mean "learning_rate"?)']


def test_every_field_is_documented_once():
    for name, section in SECTIONS.items():
        for f in dataclasses.fields(section):
            assert len(field_help(name, f.name)) > 20, f"{name}.{f.name} has no help"


def test_overlay_merges_sections_key_by_key():
    base = {"lora": {"r": 8, "lora_alpha": 8}, "model": {"name_or_path": "x"}}
    assert overlay(base, {"lora": {"r": 64}}) == {"lora": {"r": 64, "lora_alpha": 8}, "model": {"name_or_path": "x"}}
    assert base["lora"]["r"] == 8


def test_parse_text_of_nothing_is_empty():
    assert parse_text("  \n") == {} and RunConfig.from_dict({}) == RunConfig()
