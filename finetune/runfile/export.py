"""The same settings in the forms other tools take: a PEFT + TRL Python script, or an Axolotl YAML config.

Both are written from a checked RunConfig, so what is exported is exactly what `finetune train` would run.
"""

from __future__ import annotations

import yaml

from finetune.data.registry import BY_NAME
from finetune.runfile import ALL_LINEAR, RunConfig
from finetune.demo import resolve_data, resolve_model

# LoraSection fields left out of the exported LoraConfig when they hold PEFT's own default.
PEFT_DEFAULTS = {"exclude_modules": None, "bias": "none", "use_rslora": False, "use_dora": False, "lora_bias": False,
                 "modules_to_save": None, "layers_to_transform": None, "layers_pattern": None, "rank_pattern": {},
                 "alpha_pattern": {}, "init_lora_weights": True, "fan_in_fan_out": False}


def _kwargs(values: dict, indent: str) -> str:
    return "".join(f"{indent}{k}={v!r},\n" for k, v in values.items())


def to_peft(run: RunConfig) -> str:
    """A standalone Python script that trains the same adapter with PEFT and TRL."""
    lora = {k: v for k, v in vars(run.lora).items() if PEFT_DEFAULTS.get(k, object()) != v}
    model_id = resolve_model(run.model.name_or_path)
    lines = [
        "# Exported by LoRA Launchpad: the same run with PEFT and TRL directly.",
        "import torch",
        "from datasets import load_dataset",
        "from peft import LoraConfig, get_peft_model, prepare_model_for_kbit_training",
        "from transformers import AutoModelForCausalLM, AutoTokenizer, BitsAndBytesConfig",
        "from trl import SFTConfig, SFTTrainer",
        "",
        f"model_id = {model_id!r}",
    ]
    load = f"model_id, trust_remote_code={run.model.trust_remote_code!r}"
    if run.model.revision:
        load += f", revision={run.model.revision!r}"
    if run.model.quantization == "4bit":
        lines += ["quant = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type='nf4', bnb_4bit_use_double_quant=True,",
                  "                           bnb_4bit_compute_dtype=torch.bfloat16)",
                  f"model = AutoModelForCausalLM.from_pretrained({load}, quantization_config=quant)",
                  "model = prepare_model_for_kbit_training(model)"]
    elif run.model.quantization == "8bit":
        lines += ["quant = BitsAndBytesConfig(load_in_8bit=True)",
                  f"model = AutoModelForCausalLM.from_pretrained({load}, quantization_config=quant)",
                  "model = prepare_model_for_kbit_training(model)"]
    else:
        lines += [f"model = AutoModelForCausalLM.from_pretrained({load})"]
    lines += ["tokenizer = AutoTokenizer.from_pretrained(model_id)", "",
              "lora_config = LoraConfig(\n    task_type='CAUSAL_LM',\n" + _kwargs(lora, "    ") + ")",
              "model = get_peft_model(model, lora_config)",
              "model.print_trainable_parameters()", ""]
    data, data_path = run.data, resolve_data(run.data.path)
    if data_path.endswith((".jsonl", ".json", ".csv", ".parquet")):
        kind = {"jsonl": "json"}.get(data_path.rsplit(".", 1)[-1], data_path.rsplit(".", 1)[-1])
        lines.append(f"dataset = load_dataset({kind!r}, data_files={data_path!r}, split='train')")
    else:
        lines.append(f"dataset = load_dataset({data.path!r}, {data.name!r}, split={data.split!r})")
    training = {k: v for k, v in vars(run.training).items() if v is not None}
    training.update(run.training_extra)
    training.update(max_length=data.max_length, packing=data.packing, report_to="none")
    lines += ["", "args = SFTConfig(\n" + _kwargs(training, "    ") + ")",
              "trainer = SFTTrainer(model=model, args=args, train_dataset=dataset, processing_class=tokenizer)",
              "trainer.train()",
              "model.save_pretrained(args.output_dir + '/adapter')", ""]
    return "\n".join(lines)


def to_axolotl(run: RunConfig) -> dict:
    """An Axolotl config (its own key names: lora_r, lora_target_linear, peft_layers_to_transform, ...)."""
    lora, t, data = run.lora, run.training, run.data
    out = {"base_model": run.model.name_or_path,
           "adapter": "qlora" if run.model.quantization == "4bit" else "lora",
           "load_in_4bit": run.model.quantization == "4bit",
           "load_in_8bit": run.model.quantization == "8bit",
           "lora_r": lora.r, "lora_alpha": lora.lora_alpha, "lora_dropout": lora.lora_dropout}
    if lora.target_modules == ALL_LINEAR:
        out["lora_target_linear"] = True
    elif isinstance(lora.target_modules, list):
        out["lora_target_modules"] = lora.target_modules
    else:  # Axolotl passes a string target through to PEFT, which reads it as a regular expression.
        out["lora_target_modules"] = lora.target_modules
    optional = {"lora_modules_to_save": lora.modules_to_save, "peft_layers_to_transform": lora.layers_to_transform,
                "peft_use_dora": lora.use_dora or None, "peft_use_rslora": lora.use_rslora or None,
                "lora_fan_in_fan_out": lora.fan_in_fan_out or None}
    out.update({k: v for k, v in optional.items() if v is not None})
    # `auto` is settled when the data is read; Axolotl needs a type up front, and chat is the common case.
    dtype = BY_NAME.get(data.format, BY_NAME["chat"]).axolotl
    dataset = {"path": data.path, "type": dtype}
    if data.path.endswith((".jsonl", ".json")):
        dataset["ds_type"] = "json"
    out.update({"datasets": [dataset], "val_set_size": data.eval_size, "sequence_len": data.max_length,
                "sample_packing": data.packing, "output_dir": t.output_dir, "learning_rate": t.learning_rate,
                "num_epochs": t.num_train_epochs, "micro_batch_size": t.per_device_train_batch_size,
                "gradient_accumulation_steps": t.gradient_accumulation_steps, "lr_scheduler": t.lr_scheduler_type,
                "warmup_steps": t.warmup_steps, "weight_decay": t.weight_decay, "max_grad_norm": t.max_grad_norm,
                "optimizer": t.optim, "gradient_checkpointing": t.gradient_checkpointing,
                "logging_steps": t.logging_steps, "save_steps": t.save_steps, "seed": t.seed})
    if t.max_steps > 0:
        out["max_steps"] = t.max_steps
    return out


def export(run: RunConfig, to: str) -> str:
    if to == "peft":
        return to_peft(run)
    return yaml.safe_dump(to_axolotl(run), sort_keys=False)

