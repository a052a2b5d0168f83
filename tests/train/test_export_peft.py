"""finetune/train/export_peft.py and trainer_args.py: the PEFT + TRL script passes its config class exactly the
keyword arguments the job passes (run for real on the demo model: the job's setup, and the script itself with
training patched out), builds the same LoraConfig and BitsAndBytesConfig, and follows the device it is
written for (a T4 has no bfloat16: float16 weights, fp16, 4-bit compute in float16)."""

import ast
import importlib
import json

import peft
import pytest
import yaml

from finetune.demo import DATA_FILE
from finetune.model.dtypes import this_device
from finetune.model.loading import lora_config, quantization_config, weights_dtype
from finetune.runfile import RunConfig, load_run
from finetune.runfile.presets import list_presets, load_preset
from finetune.train import job
from finetune.train.export_peft import DEVICE_WORDS, DEVICES, lora_kwargs, to_peft
from finetune.train.methods import METHODS
from finetune.train.trainer_args import config_args

QUICK = {"max_steps": 2, "per_device_train_batch_size": 2, "gradient_accumulation_steps": 1, "logging_steps": 1}

# Each run exercises a choice the export used to make on its own: the eval split and its eval_steps default,
# 4-bit loading and its compute dtype, a method's own config and settings, the CPU optimizer fallback with
# early stopping (which moves save_steps onto the evaluations), a multi-device run exported as one process.
RUNS = {
    "sft-eval": {"data": {"path": "PAIRS", "eval_size": 0.25}, "training": {"save_steps": 7}},
    "qlora": {"model": {"quantization": "4bit"}, "data": {"path": "PAIRS"},
              "training": {"gradient_checkpointing": True}},
    "dpo": {"method": {"name": "dpo", "beta": 0.2}, "data": {"max_length": 64}},
    "cpu-optimizer": {"data": {"path": "PAIRS", "eval_size": 4},
                      "training": {"optim": "paged_adamw_8bit", "early_stopping_patience": 2, "eval_steps": 3}},
    "grpo": {"method": {"name": "grpo", "num_generations": 2, "max_completion_length": 8,
                        "rewards": [{"type": "contains", "text": "helper", "weight": 0.5}]}},
}


def pairs_file(tmp_path) -> str:
    """Demo questions as prompt/completion rows: the job keeps them as they are (chat rows would have it
    choose the loss from the chat template, which the script leaves to the user)."""
    rows = [json.loads(line)["messages"] for line in DATA_FILE.read_text().splitlines()[:24]]
    path = tmp_path / "pairs.jsonl"
    path.write_text("".join(json.dumps({"prompt": m[-2]["content"], "completion": " " + m[-1]["content"]}) + "\n"
                            for m in rows), encoding="utf-8")
    return str(path)


def write_run(tmp_path, name: str) -> str:
    spec = RUNS[name]
    data = {"path": "demo", "max_length": 64, **spec.get("data", {})}
    if data["path"] == "PAIRS":
        data["path"] = pairs_file(tmp_path)
    run = {"model": {"name_or_path": "demo", **spec.get("model", {})}, "lora": {"r": 4, "lora_alpha": 8},
           "method": spec.get("method", {"name": "sft"}), "data": data,
           "training": {"output_dir": str(tmp_path / "out"), **QUICK, **spec.get("training", {})}}
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(run), encoding="utf-8")
    return str(path)


def record_configs(monkeypatch, where: str) -> list[dict]:
    """Every keyword-argument set the class at `where` ("module:Class") is built with, from here on."""
    module_name, name = where.split(":")
    module = importlib.import_module(module_name)
    seen: list[dict] = []

    class Recording(getattr(module, name)):
        def __init__(self, **kwargs):
            seen.append(kwargs)
            super().__init__(**kwargs)

    monkeypatch.setattr(module, name, Recording)
    return seen


@pytest.mark.parametrize("name", list(RUNS))
def test_the_exported_script_passes_the_config_class_what_the_job_passes(tmp_path, monkeypatch, name):
    run_path = write_run(tmp_path, name)
    run = load_run(run_path)
    seen = record_configs(monkeypatch, METHODS[run.method.name].config)
    plan = job.setup(run_path, resume=False)
    assert len(seen) == 1 and plan.args is not None
    module_name, trainer = METHODS[run.method.name].trainer.split(":")
    monkeypatch.setattr(getattr(importlib.import_module(module_name), trainer), "train", lambda self, **kw: None)
    script = to_peft(run)
    namespace: dict = {}
    lora = record_configs(monkeypatch, "peft:LoraConfig")   # the trainer fills in the one it is given
    exec(compile(script, "exported.py", "exec"), namespace)   # loads the demo model, builds the trainer
    assert len(seen) == 2, "the script builds its config once"
    assert seen[1] == seen[0]
    assert peft.LoraConfig(**lora[0]) == lora_config(run.lora)
    if run.model.quantization != "none":
        assert namespace["quant"].to_dict() == quantization_config(run.model, weights_dtype(run.model)).to_dict()
    if run.data.eval_size:
        assert len(namespace["eval_dataset"]) == len(plan.examples.eval)
    assert f"# Device assumed: {DEVICE_WORDS[this_device()]}, this machine, as `finetune train` would run" in script


def test_a_t4_export_is_float16_throughout():
    run = RunConfig.from_dict(load_preset("qlora"))
    t4 = to_peft(run, DEVICES["cuda-fp16"])
    ast.parse(t4)
    assert "a CUDA GPU without bfloat16 (T4, V100...), as chosen: weights in float16" in t4
    for text in ("dtype=torch.float16", "bnb_4bit_compute_dtype=torch.float16", "fp16=True", "bf16=False",
                 "use_cpu=False", "optim='paged_adamw_32bit'"):
        assert text in t4
    assert "bfloat16" not in t4.split("\n", 3)[3]   # past the header, which names the GPUs that have it
    a100 = to_peft(run, DEVICES["cuda-bf16"])
    for text in ("dtype=torch.bfloat16", "bnb_4bit_compute_dtype=torch.bfloat16", "bf16=True", "fp16=False"):
        assert text in a100
    cpu = config_args(run, DEVICES["cpu"]).kwargs
    assert (cpu["bf16"], cpu["fp16"], cpu["use_cpu"], cpu["optim"]) == (False, False, True, "adamw_torch")


def test_a_multi_device_run_is_exported_as_one_process_and_says_so():
    run = RunConfig.from_dict({"training": {"devices": 2, "strategy": "fsdp"}})
    script = to_peft(run, DEVICES["cuda-bf16"])
    assert "# One process here: finetune train starts 2 for this run itself" in script
    assert "fsdp" not in script and "ddp_" not in script and "devices" not in script


@pytest.mark.parametrize("name", [p["name"] for p in list_presets()])
def test_each_preset_exports_valid_python_for_each_device(name):
    run = RunConfig.from_dict(load_preset(name))
    for device in DEVICES.values():
        ast.parse(to_peft(run, device))


def test_float16_weights_never_train_in_bfloat16():
    run = RunConfig.from_dict({"model": {"dtype": "float16"}})
    kwargs = config_args(run, DEVICES["cuda-bf16"]).kwargs
    assert (kwargs["fp16"], kwargs["bf16"]) == (True, False)


def test_every_non_default_lora_setting_reaches_the_script_as_the_job_builds_it():
    run = RunConfig.from_dict({"lora": {"r": 8, "use_dora": True, "bias": "lora_only", "layers_to_transform": [0],
                                        "target_modules": ["v_proj", "q_proj"], "rank_pattern": {"q_proj": 4}}})
    script = to_peft(run, DEVICES["cpu"])
    for text in ("use_dora=True", "bias='lora_only'", "layers_to_transform=[0]",
                 "target_modules=['q_proj', 'v_proj']", "rank_pattern={'q_proj': 4}"):
        assert text in script
    assert peft.LoraConfig(task_type="CAUSAL_LM", **lora_kwargs(run)) == lora_config(run.lora)
