"""`python -m finetune import` and `init`: run files from Axolotl and PEFT configs (one note per key that cannot
be carried over), export-then-import giving back the same run for every preset, and the commented template."""

import dataclasses
import json

import pytest
import yaml

from finetune.cli import main
from finetune.demo import DATA_FILE, MODEL_DIR
from finetune.errors import RunFileError
from finetune.runfile import RunConfig, field_help, overlay
from finetune.runfile.export import export, to_axolotl
from finetune.runfile.importers import convert, import_config
from finetune.runfile.method import DATA_FORMATS
from finetune.runfile.presets import list_presets, load_preset

PRESETS = [p["name"] for p in list_presets()]

# The shape of Axolotl's own LoRA examples (examples/llama-3/lora-8b.yml), empty keys and all.
AXOLOTL = """\
base_model: NousResearch/Meta-Llama-3-8B
model_type: LlamaForCausalLM
tokenizer_type: AutoTokenizer
load_in_8bit: true
load_in_4bit: false
strict: false
datasets:
  - path: mhenrichsen/alpaca_2k_test
    type: alpaca
  - path: other/dataset
    type: alpaca
dataset_prepared_path:
val_set_size: 0.05
output_dir: ./outputs/lora-out
sequence_len: 4096
sample_packing: true
pad_to_sequence_len: true
adapter: lora
lora_r: 32
lora_alpha: 16
lora_dropout: 0.05
lora_target_linear: true
lora_fan_in_fan_out:
gradient_accumulation_steps: 4
micro_batch_size: 2
num_epochs: 4
optimizer: adamw_bnb_8bit
lr_scheduler: cosine
learning_rate: 0.0002
train_on_inputs: false
bf16: auto
gradient_checkpointing: true
logging_steps: 1
flash_attention: true
warmup_steps: 10
evals_per_epoch: 4
weight_decay: 0.0
"""


def resolved(run: RunConfig) -> RunConfig:
    """The run as Axolotl holds it: no `auto` data format, the method's first one (what the export writes)."""
    if run.data.format == "auto":
        run = dataclasses.replace(run, data=dataclasses.replace(run.data, format=DATA_FORMATS[run.method.name][0]))
    return run


@pytest.mark.parametrize("name", [p for p in PRESETS if p != "grpo"])
def test_export_then_import_gives_back_the_same_run(name, tmp_path, capsys):
    run = resolved(RunConfig.from_dict(load_preset(name)))
    back, notes = convert(yaml.safe_load(export(run, "axolotl")))
    assert RunConfig.from_dict(back) == run and notes == []
    # The same through the CLI: what `import` prints is a run file that loads to the same run.
    config = tmp_path / "axolotl.yml"
    config.write_text(export(run, "axolotl"))
    assert main(["import", str(config)]) == 0
    out, err = capsys.readouterr()
    assert RunConfig.from_dict(yaml.safe_load(out)) == run and err == ""


def test_a_multi_gpu_run_exports_and_imports_back_through_the_cli(tmp_path, capsys):
    """The strategy travels as Axolotl's own keys (a shipped DeepSpeed file); what `import` prints loads to the
    same run, and its one note says the process count is Axolotl's launch's (devices: auto)."""
    run = resolved(RunConfig.from_dict({"training": {"strategy": "deepspeed", "zero_stage": 3, "devices": "auto"}}))
    config = tmp_path / "axolotl.yml"
    config.write_text(export(run, "axolotl"))
    assert main(["import", str(config)]) == 0
    out, err = capsys.readouterr()
    assert RunConfig.from_dict(yaml.safe_load(out)) == run
    assert "training.strategy deepspeed, zero_stage 3, on devices: auto" in err and "not carried" not in err


def test_a_grpo_config_imports_all_but_its_rewards_and_says_so_in_one_line(tmp_path, capsys):
    """Axolotl's GRPO names its rewards as Python import paths, which a run file does not carry: the export
    leaves them out and the import refuses in one line naming method.rewards, never a traceback."""
    run = RunConfig.from_dict(load_preset("grpo"))
    config = tmp_path / "axolotl.yml"
    config.write_text(export(run, "axolotl"))
    with pytest.raises(RunFileError) as info:
        convert(yaml.safe_load(config.read_text()))
    assert [p.split(":")[0] for p in info.value.problems] == ["method.rewards"]
    assert main(["import", str(config)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: method.rewards:"), err

def test_axolotl_keys_are_carried_over_and_the_rest_named_once_each():
    run, notes = convert(yaml.safe_load(AXOLOTL))
    checked = RunConfig.from_dict(run)
    assert (checked.model.name_or_path, checked.model.quantization) == ("NousResearch/Meta-Llama-3-8B", "8bit")
    assert (checked.lora.r, checked.lora.lora_alpha, checked.lora.lora_dropout) == (32, 16, 0.05)
    assert checked.lora.target_modules == "all-linear"
    assert (checked.data.path, checked.data.format, checked.data.max_length) == ("mhenrichsen/alpaca_2k_test",
                                                                               "alpaca", 4096)
    assert checked.data.packing and checked.data.eval_size == 0.05
    t = checked.training
    assert (t.per_device_train_batch_size, t.gradient_accumulation_steps, t.learning_rate, t.num_train_epochs,
            t.optim, t.lr_scheduler_type, t.warmup_steps) == (2, 4, 2e-4, 4, "adamw_bnb_8bit", "cosine", 10)
    keys = [n.split(":")[0] for n in notes]
    assert keys == ["datasets[1]", "flash_attention", "model_type", "pad_to_sequence_len", "evals_per_epoch"]
    # Empty keys and settings that are what a run does anyway say nothing.
    assert not any(k in " ".join(notes) for k in ("lora_fan_in_fan_out", "train_on_inputs", "strict", "bf16"))


def test_a_value_the_run_file_refuses_is_a_note_not_a_failed_import():
    run, notes = convert({"base_model": "x/y", "adapter": "qlora", "lora_r": 0, "optimizer": "lion_8bit"})
    assert "r" not in run.get("lora", {}) and "optim" not in run.get("training", {})
    assert run["model"] == {"name_or_path": "x/y", "quantization": "4bit"}
    assert any(n.startswith("lora.r:") and n.endswith("(not carried over)") for n in notes)
    assert any(n.startswith("training.optim:") for n in notes)


def test_the_demo_exports_as_real_paths_and_imports_back_as_demo():
    config = to_axolotl(RunConfig())
    assert config["base_model"] == str(MODEL_DIR) and config["datasets"][0]["path"] == str(DATA_FILE)
    back, _ = convert(config)
    assert back["model"]["name_or_path"] == "demo" and back["data"]["path"] == "demo"


# What PEFT 0.21's LoraConfig.save_pretrained writes (see the slow test below for the real thing).
ADAPTER_CONFIG = {
    "alora_invocation_tokens": None, "alpha_pattern": {}, "arrow_config": None, "auto_mapping": None,
    "base_model_name_or_path": "HuggingFaceTB/SmolLM2-135M", "bias": "none", "corda_config": None,
    "ensure_weight_tying": False, "eva_config": None, "exclude_modules": None, "fan_in_fan_out": False,
    "inference_mode": True, "init_lora_weights": True, "layer_replication": None, "layers_pattern": None,
    "layers_to_transform": None, "loftq_config": {}, "lora_alpha": 32, "lora_bias": False, "lora_dropout": 0.05,
    "megatron_config": None, "megatron_core": "megatron.core", "modules_to_save": None, "peft_type": "LORA",
    "peft_version": "0.21.2", "qalora_group_size": 16, "r": 8, "rank_pattern": {}, "revision": None,
    "target_modules": ["v_proj", "q_proj"], "target_parameters": None, "task_type": "CAUSAL_LM",
    "trainable_token_indices": None, "use_dora": True, "use_qalora": False, "use_rslora": False}


def test_peft_adapter_config(tmp_path, capsys):
    folder = tmp_path / "adapter"
    folder.mkdir()
    (folder / "adapter_config.json").write_text(json.dumps(ADAPTER_CONFIG))
    run, notes = import_config(folder)   # the adapter folder, or the file itself
    assert run == {"model": {"name_or_path": "HuggingFaceTB/SmolLM2-135M"},
                   "lora": {"lora_alpha": 32, "lora_dropout": 0.05, "r": 8, "target_modules": ["q_proj", "v_proj"],
                            "use_dora": True}}
    assert notes == []
    (folder / "adapter_config.json").write_text(json.dumps(dict(ADAPTER_CONFIG, layer_replication=[[0, 2]])))
    assert main(["import", str(folder / "adapter_config.json")]) == 0
    assert capsys.readouterr().err == "note: layer_replication: not carried over (the run file does not support it)\n"


def test_a_config_of_no_known_kind_is_one_line(tmp_path, capsys):
    path = tmp_path / "other.yaml"
    path.write_text("foo: 1\nbar: 2\n")
    assert main(["import", str(path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: config: neither a run file") and "foo, bar" in err[0]
    with pytest.raises(RunFileError):
        convert({"peft_type": "IA3", "target_modules": ["k"]})


@pytest.mark.slow
def test_peft_adapter_config_written_by_peft(tmp_path):
    from finetune.model.loading import lora_config

    run = RunConfig.from_dict(load_preset("unsloth"))
    lora_config(run.lora).save_pretrained(tmp_path)
    back, notes = import_config(tmp_path)
    imported = RunConfig.from_dict(back)
    assert notes == []
    assert set(imported.lora.target_modules) == set(run.lora.target_modules)
    assert imported.lora == type(run.lora)(**{**vars(run.lora), "target_modules": imported.lora.target_modules})


@pytest.mark.parametrize("preset,model", [(None, None), ("qlora", "HuggingFaceTB/SmolLM2-135M"), ("lora-blog", None)])
def test_init_writes_every_setting_with_its_documentation(preset, model, capsys):
    argv = ["init"] + (["--preset", preset] if preset else []) + (["--model", model] if model else [])
    assert main(argv) == 0
    text = capsys.readouterr().out
    raw = overlay(load_preset(preset) if preset else {}, {"model": {"name_or_path": model}} if model else {})
    assert RunConfig.from_dict(yaml.safe_load(text)) == RunConfig.from_dict(raw)
    lines = text.splitlines()
    for i, line in enumerate(lines):   # each field's line follows its documentation's last comment line
        if line.startswith("  ") and not line.lstrip().startswith("#") and ":" in line:
            section = next(lines[j] for j in range(i, -1, -1) if not lines[j].startswith((" ", "#")) and lines[j])
            key = line.split(":")[0].strip()
            try:
                doc = field_help(section.rstrip(":"), key)
            except KeyError:   # a further SFTConfig key from the preset
                assert "trl.SFTConfig" in lines[i - 1]
                continue
            assert lines[i - 1].startswith("  # ") and doc.split()[-1] in lines[i - 1]


def test_init_refuses_an_unknown_preset_in_one_line(capsys):
    assert main(["init", "--preset", "nope"]) == 2
    assert capsys.readouterr().err.count("\n") == 1
