"""The same settings as an Axolotl YAML config, written from a checked RunConfig. The PEFT + TRL script is
finetune/train/export_peft.py: it needs the job's own arguments, which are built in train/.
"""

from __future__ import annotations

import yaml

from finetune.demo import resolve_data, resolve_model
from finetune.runfile import ALL_LINEAR, RunConfig, axolotl
from finetune.runfile.data_formats import BY_NAME
from finetune.runfile.method import DATA_FORMATS


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
    data_path = resolve_data(data.path)
    dataset = {"path": data_path, **dataset_type(run)}
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
    out.update(strategy(run))
    # Further TrainingArguments keys keep their names: Axolotl's config takes them as they are (eval_strategy...).
    out.update(run.training_extra)
    return out


def dataset_type(run: RunConfig) -> dict:
    """datasets[0].type as Axolotl's reader for this method takes it (its rl readers: utils/data/rl.py and
    prompt_strategies/dpo|kto|orpo). `auto` is settled when the data is read; Axolotl needs a type up front,
    so it gets the method's first format."""
    method = run.method.name
    if method == "grpo":
        # A typed dataset goes to Axolotl's DPO reader (chosen/rejected); a typeless one reaches GRPO as it is.
        return {}
    if method == "orpo":
        # ORPO's only reader: chosen and rejected as message lists, each ending with the answer, with an optional
        # prompt string and system. The preference format reads those rows too; Axolotl refuses string answers.
        return {"type": axolotl.ORPO_TYPE}
    fmt = run.data.format if run.data.format != "auto" else DATA_FORMATS[method][0]
    return {"type": BY_NAME[fmt].axolotl}


def strategy(run: RunConfig) -> dict:
    """How several GPUs share the model, in Axolotl's keys: one of the DeepSpeed files Axolotl ships (`axolotl
    fetch deepspeed_configs`) for the ZeRO stage, or FSDP2 sharding each decoder layer as the job does (with no
    class named, accelerate wraps the model's own _no_split_modules, its decoder layers)."""
    training = run.training
    if training.strategy == "deepspeed":
        return {"deepspeed": f"deepspeed_configs/zero{training.zero_stage}.json"}
    if training.strategy == "fsdp":
        return {"fsdp_version": 2, "fsdp_config": {"auto_wrap_policy": "TRANSFORMER_BASED_WRAP",
                                                   "reshard_after_forward": True}}
    return {}


def axolotl_dropped(run: RunConfig) -> list[str]:
    """Settings Axolotl has no key for that differ from their defaults: what the export cannot carry."""
    defaults = RunConfig()

    def value(config, key):
        section, field = key.split(".")
        return getattr(getattr(config, section), field)

    return [f"{key} ({why})" for key, why in axolotl.NOT_IN_AXOLOTL.items()
            if value(run, key) != value(defaults, key)]


def export(run: RunConfig, to: str) -> str:
    if to != "axolotl":
        raise ValueError(f"unknown export {to!r}: the PEFT script is finetune.train.export_peft.to_peft")
    # What Axolotl cannot take is said in comments at the top: they are kept by YAML readers and by people.
    notes = "".join(f"# not carried over: {line}\n" for line in axolotl_dropped(run))
    if run.method.name == "orpo":
        notes += (f"# datasets[0]: Axolotl's ORPO reads {axolotl.ORPO_TYPE} only: chosen and rejected as lists of "
                  "role/content messages ending with the answer (plain-string answers fail there)\n")
    return notes + yaml.safe_dump(to_axolotl(run), sort_keys=False)
