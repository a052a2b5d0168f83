"""The same settings in the forms other tools take: a PEFT + TRL Python script, or an Axolotl YAML config.

Both are written from a checked RunConfig, so what is exported is exactly what `finetune train` would run.
"""

from __future__ import annotations

import yaml

from finetune.demo import resolve_data, resolve_model
from finetune.runfile import ALL_LINEAR, RunConfig, axolotl, dump_yaml
from finetune.runfile.data_formats import BY_NAME
from finetune.runfile.method import DATA_FORMATS
from finetune.runfile.parallel import LAUNCH_FIELDS

# LoraSection fields left out of the exported LoraConfig when they hold PEFT's own default.
PEFT_DEFAULTS: dict[str, object] = {"exclude_modules": None, "bias": "none", "use_rslora": False, "use_dora": False, "lora_bias": False,
                 "modules_to_save": None, "layers_to_transform": None, "layers_pattern": None, "rank_pattern": {},
                 "alpha_pattern": {}, "init_lora_weights": True, "fan_in_fan_out": False}


def _kwargs(values: dict, indent: str) -> str:
    return "".join(f"{indent}{k}={v!r},\n" for k, v in values.items())


def to_peft(run: RunConfig) -> str:
    """A standalone Python script that trains the same adapter with PEFT and TRL."""
    lora = {k: v for k, v in vars(run.lora).items() if PEFT_DEFAULTS.get(k, object()) != v}
    module, config, trainer = TRAINERS[run.method.name]
    model_id = resolve_model(run.model.name_or_path)
    lines = [
        "# Exported by LoRA Launchpad: the same run with PEFT and TRL directly.",
        "import torch",
        "from datasets import load_dataset",
        "from peft import LoraConfig, get_peft_model, prepare_model_for_kbit_training",
        "from transformers import AutoModelForCausalLM, AutoTokenizer, BitsAndBytesConfig",
        f"from {module} import {config}, {trainer}",
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
    data, data_path = run.data, resolve_data(run.data.path, run.method.name)
    if data_path.endswith((".jsonl", ".json", ".csv", ".parquet")):
        kind = {"jsonl": "json"}.get(data_path.rsplit(".", 1)[-1], data_path.rsplit(".", 1)[-1])
        lines.append(f"dataset = load_dataset({kind!r}, data_files={data_path!r}, split='train')")
    else:
        lines.append(f"dataset = load_dataset({data.path!r}, {data.name!r}, split={data.split!r})")
    # devices/strategy/zero_stage say how the job is launched; they are not SFTConfig keys.
    training = {k: v for k, v in vars(run.training).items() if v is not None and k not in LAUNCH_FIELDS}
    training.update(run.training_extra)
    training.update(method_kwargs(run), report_to="none")
    rewards = ""
    if run.method.name == "grpo":   # the run file's rewards, built the way `finetune train` builds them
        lines += ["", "from finetune.runfile import parse_run  # LoRA Launchpad's built-in rewards",
                  "from finetune.train.rewards import build",
                  f"reward_funcs, _ = build(parse_run({dump_yaml({'method': method_dict(run)})!r}))"]
        rewards = "reward_funcs=reward_funcs, "
    # With a PeftModel, DPO and KTO take the base model with the adapter off as their reference: no ref_model.
    lines += ["", f"args = {config}(\n" + _kwargs(training, "    ") + ")",
              f"trainer = {trainer}(model=model, {rewards}args=args, train_dataset=dataset, processing_class=tokenizer)",
              "trainer.train()",
              "model.save_pretrained(args.output_dir + '/adapter')", ""]
    return "\n".join(lines)


TRAINERS = {"sft": ("trl", "SFTConfig", "SFTTrainer"), "dpo": ("trl", "DPOConfig", "DPOTrainer"),
            "kto": ("trl", "KTOConfig", "KTOTrainer"), "grpo": ("trl", "GRPOConfig", "GRPOTrainer"),
            "orpo": ("trl.experimental.orpo", "ORPOConfig", "ORPOTrainer")}   # ORPO: experimental in TRL 1.16


def method_dict(run: RunConfig) -> dict:
    return {"name": run.method.name, **{k: v for k, v in vars(run.method).items() if k != "name" and v not in (None, [])}}


def method_kwargs(run: RunConfig) -> dict:
    """The method's config keywords, as the job passes them (finetune/train/methods.py)."""
    out: dict = {"max_length": run.data.max_length} if run.method.name != "grpo" else {}
    if run.method.name == "sft":
        out["packing"] = run.data.packing
    out.update({k: v for k, v in method_dict(run).items() if k not in ("name", "rewards")})
    if run.method.name == "grpo":
        out["reward_weights"] = [r["weight"] for r in run.method.rewards]
    return out


def to_axolotl(run: RunConfig) -> dict:
    """An Axolotl config in its own key names (the table in finetune/runfile/axolotl.py)."""
    lora, data = run.lora, run.data
    # Built-in names (`demo`) mean nothing to Axolotl: it gets the real local paths (the import reads them back).
    out: dict = {"base_model": resolve_model(run.model.name_or_path),
                 "adapter": "qlora" if run.model.quantization == "4bit" else "lora",
                 "load_in_4bit": run.model.quantization == "4bit",
                 "load_in_8bit": run.model.quantization == "8bit"}
    if lora.target_modules == ALL_LINEAR:
        out["lora_target_linear"] = True
    else:  # a list of names, or a string Axolotl passes through to PEFT as a regular expression
        out["lora_target_modules"] = lora.target_modules
    # `auto` is settled when the data is read; Axolotl needs a type up front, and chat is the common case.
    data_path = resolve_data(data.path)
    fmt = data.format if data.format != "auto" else DATA_FORMATS[run.method.name][0]
    dataset = {"path": data_path, "type": BY_NAME[fmt].axolotl}
    if data.name:
        dataset["name"] = data.name
    if data.split != "train":
        dataset["split"] = data.split
    if data_path.endswith((".jsonl", ".json")):
        dataset["ds_type"] = "json"
    out["datasets"] = [dataset]
    for key, name in axolotl.RENAMED.items():
        section, field = key.split(".")
        value = getattr(getattr(run, section), field)
        if value is None or (value is False and field != "gradient_checkpointing"):
            continue   # Axolotl's own default: left out, as people write these files
        if key == "training.max_steps" and value <= 0:
            continue
        out[name] = value
    if 0 < run.training.warmup_steps < 1:   # a fraction of all steps: Axolotl calls that warmup_ratio
        out["warmup_ratio"] = out.pop("warmup_steps")
    method = run.method
    if method.name != "sft":   # Axolotl's `rl:` key; GRPO's settings go under its `trl:` mapping
        out["rl"] = method.name
        if method.name == "grpo":
            out["trl"] = {k: getattr(method, k) for k in axolotl.TRL_GRPO if getattr(method, k) is not None}
        else:
            out["rl_beta"] = method.beta
    # Further TrainingArguments keys keep their names: Axolotl's config takes them as they are (eval_strategy...).
    out.update(run.training_extra)
    return out


def axolotl_dropped(run: RunConfig) -> list[str]:
    """Settings Axolotl has no key for that differ from their defaults: what the export cannot carry."""
    defaults = RunConfig()

    def value(config, key):
        section, field = key.split(".")
        return getattr(getattr(config, section), field)

    return [f"{key} ({why})" for key, why in axolotl.NOT_IN_AXOLOTL.items()
            if value(run, key) != value(defaults, key)]


def export(run: RunConfig, to: str) -> str:
    if to == "peft":
        return to_peft(run)
    # What Axolotl cannot take is said in comments at the top: they are kept by YAML readers and by people.
    notes = "".join(f"# not carried over: {line}\n" for line in axolotl_dropped(run))
    return notes + yaml.safe_dump(to_axolotl(run), sort_keys=False)
