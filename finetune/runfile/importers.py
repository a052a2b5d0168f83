"""Run files from the configs people already have: an Axolotl YAML, or a PEFT adapter_config.json.

    python -m finetune import CONFIG > run.yaml

Each importer returns (a partial run file as a dict, notes): the notes say, one line per key, what could not
be carried over, so nothing is dropped silently. The Axolotl names come from the one table the export also
reads (finetune/runfile/axolotl.py), so exporting a run and importing it back gives the same run, its data
format named (Axolotl has no `auto`); settings Axolotl shapes otherwise are read by axolotl_import.py.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from finetune.errors import RunFileError
from finetune.runfile import ALL_LINEAR, DEMO, SECTIONS, axolotl, axolotl_import
from finetune.runfile.data_formats import FORMATS
from finetune.runfile.method import NAMES
from finetune.runfile.validators import show

# Axolotl keys that belong to the composed fields (read by code below), and keys with nothing to carry.
AXOLOTL_COMPOSED = {"base_model", "adapter", "load_in_4bit", "load_in_8bit", "lora_target_linear",
                    "lora_target_modules", "datasets", "warmup_ratio", "rl", "rl_beta", "orpo_alpha", "trl",
                    *axolotl_import.KEYS}
# Types Axolotl documents beside the ones the export writes (data_formats.FORMATS), read as the same format:
# ORPO's only preference type, chosen/rejected as chat turns (which the preference format reads).
AXOLOTL_TYPES = {"chat_template.argilla": "preference"}
# Axolotl settings whose value is what a run does anyway: nothing to carry, nothing to say.
AXOLOTL_AS_OURS = {"train_on_inputs": False, "strict": False, "tokenizer_type": "AutoTokenizer",
                   "group_by_length": False, "ds_type": "json",
                   "bf16": "auto"}   # bf16 auto: model.dtype auto decides the same way
# PEFT's LoraConfig keys that map onto the lora section under the same name.
PEFT_SAME = ("r", "lora_alpha", "lora_dropout", "target_modules", "exclude_modules", "bias", "use_rslora",
             "use_dora", "lora_bias", "modules_to_save", "layers_to_transform", "layers_pattern", "rank_pattern",
             "alpha_pattern", "init_lora_weights", "fan_in_fan_out")
# adapter_config.json bookkeeping that says nothing about what trains.
# LoraConfig options this project has no field for, at PEFT's defaults that are not empty values.
PEFT_OTHER_DEFAULTS = {"megatron_core": "megatron.core", "qalora_group_size": 16}
PEFT_BOOKKEEPING = {"peft_type", "task_type", "inference_mode", "auto_mapping", "peft_version",
                    "base_model_name_or_path", "revision"}


def kind_of(raw: dict) -> str:
    """"run" (this project's own run file), "peft" (adapter_config.json) or "axolotl"; raises otherwise."""
    from finetune.runfile import SECTIONS

    if raw and all(k in SECTIONS for k in raw):
        return "run"
    if "peft_type" in raw or ("r" in raw and "target_modules" in raw and "lora_alpha" in raw):
        return "peft"
    if {"base_model", "adapter", "datasets", "lora_r", "sequence_len", "micro_batch_size"} & set(raw):
        return "axolotl"
    raise RunFileError("config: neither a run file (sections model, lora, data, training), an Axolotl config "
                       "(base_model, adapter, lora_r, datasets, ...) nor a PEFT adapter_config.json (peft_type, r, "
                       f"target_modules); its keys are {', '.join(map(str, list(raw)[:8])) or 'none'}")


def as_run_file(raw: dict) -> tuple[dict, list[str], str]:
    """What the page's "Load a run file" does with a parsed file: (run dict, notes, kind). A run file (or
    anything not recognised, whose problems the form then names) passes through unchanged and unchecked."""
    try:
        kind = kind_of(raw) if raw else "run"
    except RunFileError:
        kind = "run"
    if kind == "run":
        return raw, [], kind
    run, notes = convert(raw)
    return run, notes, kind


def import_config(path: str | Path) -> tuple[dict, list[str]]:
    """Read an Axolotl YAML, a PEFT adapter_config.json (or the adapter folder holding it), or a run file;
    (the run file's dict, notes). Raises RunFileError (one line per problem)."""
    from finetune.runfile import read_file

    path = Path(path)
    if path.is_dir() and (path / "adapter_config.json").is_file():
        path = path / "adapter_config.json"
    return convert(read_file(path))


def convert(raw: dict) -> tuple[dict, list[str]]:
    """A parsed config of any of the three kinds as a run file's dict, with the notes; the result is checked
    (RunFileError lists every problem, in the run file's names)."""
    from finetune.runfile import RunConfig

    kind = kind_of(raw)
    if kind == "run":
        RunConfig.from_dict(raw)
        return raw, []
    run, notes = from_peft(raw) if kind == "peft" else from_axolotl(raw)
    # A value the run file refuses is one more key not carried over (said with the reason), not a failed
    # import: the rest of the config is still worth having.
    for _ in range(len(_keys(run)) + 1):
        try:
            RunConfig.from_dict(run)
            return run, notes
        except RunFileError as exc:
            dropped = [p for p in exc.problems if _drop(run, p)]
            if not dropped:
                raise
            notes += [f"{p} (not carried over)" for p in dropped]
    RunConfig.from_dict(run)
    return run, notes


def _keys(run: dict) -> list:
    return [key for body in run.values() if isinstance(body, dict) for key in body]


def _drop(run: dict, problem: str) -> bool:
    """Remove the field a problem line names ("lora.r: ..."); whether there was one."""
    head = problem.split(":", 1)[0]
    section, _, name = head.partition(".")
    if isinstance(run.get(section), dict) and name in run[section]:
        del run[section][name]
        if not run[section]:
            del run[section]
        return True
    return False


# --- Axolotl ----------------------------------------------------------------------------------------------

def _builtin(value, builtin_path) -> object:
    """The export writes the built-in demo's real paths; read them back as `demo`."""
    try:
        if isinstance(value, str) and Path(value).resolve() == Path(builtin_path).resolve():
            return DEMO
    except OSError:
        pass
    return value


def from_axolotl(raw: dict) -> tuple[dict, list[str]]:
    from finetune.demo import DATA_FILE, MODEL_DIR
    from finetune.runfile.allowlist import check_allowed

    # Every section the table can name (hub_model_id is hub.repo_id): put() writes into any of them.
    run: dict = {section: {} for section in SECTIONS}
    notes: list[str] = []
    renamed = {name: key for key, name in axolotl.RENAMED.items()}

    def put(key: str, value) -> None:
        section, name = key.split(".")
        run[section][name] = value

    if raw.get("base_model") is not None:
        put("model.name_or_path", _builtin(raw["base_model"], MODEL_DIR))
    adapter = raw.get("adapter")
    if adapter not in (None, "lora", "qlora"):
        notes.append(f"adapter: {show(adapter)} is not carried over (only lora and qlora); imported as lora")
    elif adapter is None:
        notes.append("adapter: not set (a full fine-tune in Axolotl); imported as a LoRA run")
    four, eight = bool(raw.get("load_in_4bit")), bool(raw.get("load_in_8bit"))
    if four or adapter == "qlora":
        put("model.quantization", "4bit")
    elif eight:
        put("model.quantization", "8bit")
    if raw.get("lora_target_linear"):
        put("lora.target_modules", ALL_LINEAR)
        if raw.get("lora_target_modules"):
            notes.append("lora_target_modules: not carried over; lora_target_linear: true already takes every "
                         "linear layer")
    elif raw.get("lora_target_modules") is not None:
        put("lora.target_modules", raw["lora_target_modules"])
    _axolotl_method(raw, run, notes)
    _axolotl_data(raw.get("datasets"), run, notes, DATA_FILE)
    notes += axolotl_import.strategy(raw, run) + axolotl_import.trust_remote_code(raw, run)
    notes += axolotl_import.attention(raw)
    if "warmup_ratio" in raw:
        put("training.warmup_steps", raw["warmup_ratio"])
    for key, value in raw.items():
        if key in AXOLOTL_COMPOSED or value is None or AXOLOTL_AS_OURS.get(key, ...) == value:
            continue   # unset in Axolotl's own way (an empty key), or what a run does anyway
        if not isinstance(key, str):   # YAML allows `123:` or `null:` as a key; no setting is named so
            notes.append(f"{show(key)}: not carried over (no run-file setting for it)")
        elif key in renamed:
            put(renamed[key], value)
        elif (verdict := check_allowed(key, value)) == "":
            run["training"][key] = value   # a TrainingArguments key Axolotl passes through: ours too
        else:
            notes.append(f"{key}: not carried over ({verdict or 'no run-file setting for it'})")
    return {k: v for k, v in run.items() if v}, notes


def _axolotl_method(raw: dict, run: dict, notes: list[str]) -> None:
    """Axolotl's `rl:` (dpo | kto | orpo | grpo) as method.name, its beta taken as Axolotl takes it (trl.beta,
    else rl_beta, else ORPO's orpo_alpha), and GRPO's `trl:` settings."""
    rl = raw.get("rl")
    if rl is not None and rl not in NAMES:
        notes.append(f"rl: {show(rl)} is not carried over (methods: {', '.join(NAMES[1:])}); imported as sft")
    trl = raw["trl"] if isinstance(raw.get("trl"), dict) else {}
    if rl not in NAMES:
        notes += [f"{key}: not carried over (a setting of the rl methods, and this config trains with sft)"
                  for key in ("rl_beta", "orpo_alpha", "trl") if raw.get(key) not in (None, {})]
        return
    run["method"]["name"] = rl
    beta = raw.get("rl_beta")
    if raw.get("orpo_alpha") is not None:
        if rl == "orpo" and beta is None:
            beta = raw["orpo_alpha"]
        else:
            notes.append("orpo_alpha: not carried over (ORPO's beta when rl_beta is not set)")
    if beta is not None:
        run["method"]["beta"] = beta
    for key, value in trl.items():
        if key == "beta" or (key in axolotl.TRL_GRPO and rl == "grpo"):
            run["method"][key] = value
        elif value is not None:
            notes.append(f"trl.{key}: not carried over (no run-file setting for it; rewards go in method.rewards)")


def _axolotl_data(datasets, run: dict, notes: list[str], demo_file) -> None:
    if not datasets:
        return
    if not isinstance(datasets, list) or not isinstance(datasets[0], dict):
        notes.append(f"datasets: not carried over (expected a list of mappings, got {show(datasets)})")
        return
    first = dict(datasets[0])
    if "path" in first:
        run["data"]["path"] = _builtin(first.pop("path"), demo_file)
    kind = first.pop("type", None)
    if kind is not None:
        # Axolotl has no `auto`: the type names the format (the export writes auto as the method's first).
        found = AXOLOTL_TYPES.get(kind) if isinstance(kind, str) else None
        found = found or next((f.name for f in FORMATS if f.axolotl == kind), None)
        if found is None:
            notes.append(f"datasets[0].type: {show(kind)} is not carried over (known: "
                         f"{', '.join(str(f.axolotl) for f in FORMATS if isinstance(f.axolotl, str))}); "
                         "data.format left to auto")
        else:
            run["data"]["format"] = found
        if found == "chat":
            notes += axolotl_import.chat_fields(first)
    for name in ("name", "split"):
        if name in first:
            run["data"][name] = first.pop(name)
    if first.pop("ds_type", None) not in (None, "json", "csv", "parquet"):
        notes.append("datasets[0].ds_type: not carried over (the file's extension says how it is read)")
    for key in first:
        notes.append(f"datasets[0].{key}: not carried over (no run-file setting for it)")
    for i, _ in enumerate(datasets[1:], start=1):
        notes.append(f"datasets[{i}]: not carried over (a run trains on one dataset)")


# --- PEFT -------------------------------------------------------------------------------------------------

def from_peft(raw: dict) -> tuple[dict, list[str]]:
    from finetune.demo import MODEL_DIR
    from finetune.runfile import UNSUPPORTED, LoraSection

    peft_type = str(raw.get("peft_type", "LORA")).upper()
    if peft_type != "LORA":
        raise RunFileError(f"peft_type: only LoRA adapters can be imported, got {show(raw.get('peft_type'))}")
    run: dict = {"model": {}, "lora": {}}
    notes: list[str] = []
    if raw.get("base_model_name_or_path"):
        run["model"]["name_or_path"] = _builtin(raw["base_model_name_or_path"], MODEL_DIR)
    if raw.get("revision"):
        run["model"]["revision"] = raw["revision"]
    task = raw.get("task_type")
    if task not in (None, "CAUSAL_LM"):
        notes.append(f"task_type: {show(task)} is not carried over (runs train causal language models)")
    defaults = dataclasses.asdict(LoraSection())
    for key, value in raw.items():
        if key in PEFT_SAME and value == defaults.get(key):
            continue   # the run file's default already: left out, so the imported file says what differs
        if key in PEFT_SAME:
            if key == "target_modules" and isinstance(value, list):
                value = sorted(value)   # PEFT keeps a set and writes it in no particular order
            run["lora"][key] = value
        elif key in PEFT_BOOKKEEPING:
            continue
        elif _unset(key, value):
            continue   # a LoraConfig option left at its default carries nothing
        elif key in UNSUPPORTED.get("lora", ()):
            notes.append(f"{key}: not carried over (the run file does not support it)")
        else:
            notes.append(f"{key}: not carried over (no run-file setting for it)")
    return {k: v for k, v in run.items() if v}, notes


def _unset(key: str, value) -> bool:
    return value is None or value is False or value in ({}, [], "") or PEFT_OTHER_DEFAULTS.get(key) == value
