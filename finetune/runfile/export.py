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
    if to != "axolotl":
        raise ValueError(f"unknown export {to!r}: the PEFT script is finetune.train.export_peft.to_peft")
    # What Axolotl cannot take is said in comments at the top: they are kept by YAML readers and by people.
    notes = "".join(f"# not carried over: {line}\n" for line in axolotl_dropped(run))
    return notes + yaml.safe_dump(to_axolotl(run), sort_keys=False)
