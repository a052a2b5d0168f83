"""The form <-> run file mapping, kept free of Gradio so it is tested without a browser.

The form shows the run file's common fields one widget each (keyed "section.key") plus three widgets that
together give lora.target_modules ("ui.targets" ticks, the "ui.all_linear" switch, an optional
"ui.target_regex"). Keys the form has no widget for (rank_pattern, further SFTConfig keys...) live in
the session's `extra` dict, which the form is laid over, so loading a run file loses nothing.
"""

from __future__ import annotations

import re

from finetune.runfile import ALL_LINEAR

RUN_KEYS = [
    "model.name_or_path", "model.quantization", "model.revision", "model.trust_remote_code",
    "lora.r", "lora.lora_alpha", "lora.lora_dropout",
    "lora.bias", "lora.use_rslora", "lora.use_dora", "lora.layers_to_transform", "lora.modules_to_save",
    "data.path", "data.format", "data.max_length", "data.packing", "data.eval_size",
    "training.learning_rate", "training.num_train_epochs", "training.max_steps",
    "training.per_device_train_batch_size", "training.gradient_accumulation_steps",
    "training.lr_scheduler_type", "training.warmup_steps", "training.weight_decay", "training.optim",
    "training.gradient_checkpointing", "training.logging_steps", "training.save_steps", "training.seed",
    "hub.repo_id",
    "training.devices", "training.strategy",
]
TARGET_KEYS = ["ui.targets", "ui.all_linear", "ui.target_regex"]
FORM_KEYS = RUN_KEYS + TARGET_KEYS

LIST_KEYS = {"lora.modules_to_save"}                  # a comma-separated text box <-> a list of names
INDEX_KEYS = {"lora.layers_to_transform"}             # "0, 2, 4" <-> [0, 2, 4]
OPTIONAL_TEXT_KEYS = {"model.revision", "hub.repo_id"} | LIST_KEYS | INDEX_KEYS   # empty box <-> null
WHOLE_NUMBER_KEYS = {"lora.r", "data.max_length", "training.max_steps", "training.per_device_train_batch_size",
                     "training.gradient_accumulation_steps", "training.logging_steps", "training.save_steps",
                     "training.seed"}


def split_names(text) -> list[str]:
    return [part for part in re.split(r"[,\s]+", str(text or "")) if part]


def _index(token: str):
    """'3' -> 3; anything else is passed on as typed, so the run file's check names it."""
    return int(token) if re.fullmatch(r"\d+", token) else token


def widget_to_run_value(key: str, value):
    if key == "training.devices":  # a dropdown of "1", "2", ... and "auto"
        text = str(value).strip() if value is not None else "1"
        return int(text) if text.isdigit() else text
    if key in OPTIONAL_TEXT_KEYS:
        if value is None or not str(value).strip():
            return None
        if key in LIST_KEYS:
            return split_names(value)
        if key in INDEX_KEYS:
            items = [_index(t) for t in split_names(value)]
            return items[0] if len(items) == 1 else items
        return str(value).strip()
    if isinstance(value, float) and value.is_integer() and key in WHOLE_NUMBER_KEYS:
        return int(value)
    if isinstance(value, str):
        return value.strip()
    return value


def run_value_to_widget(key: str, value):
    if key == "training.devices":
        return str(value)
    if key in OPTIONAL_TEXT_KEYS:
        if value is None:
            return ""
        return ", ".join(str(v) for v in value) if isinstance(value, (list, tuple)) else str(value)
    return value


def target_modules(targets, all_linear: bool, regex: str, all_linear_names) -> str | list[str]:
    """lora.target_modules from the three target widgets. The switch counts only while every module it
    stands for is still ticked, so unticking one module takes effect at once, without a second event to
    turn the switch off first."""
    if regex and regex.strip():
        return regex.strip()
    ticked = list(targets or [])
    if all_linear and set(all_linear_names or ()) <= set(ticked):
        return ALL_LINEAR
    return ticked


def target_widgets(value, all_linear_names) -> dict:
    """The three target widgets' values for a run file's lora.target_modules."""
    if value == ALL_LINEAR:
        return {"ui.targets": list(all_linear_names), "ui.all_linear": True, "ui.target_regex": ""}
    if isinstance(value, str):  # PEFT reads a string as a regular expression matched on full paths
        return {"ui.targets": [], "ui.all_linear": False, "ui.target_regex": value}
    # Names this model does not have stay ticked (the caller adds them to the choices), so the check
    # names them instead of the form dropping them silently.
    return {"ui.targets": list(value or []), "ui.all_linear": False, "ui.target_regex": ""}


def form_to_run(values: dict, extra: dict | None, all_linear_names) -> dict:
    """The run file (as a dict) that the form describes, laid over `extra`."""
    run = {section: dict(body) if isinstance(body, dict) else body for section, body in (extra or {}).items()}
    for key in RUN_KEYS:
        if key not in values:
            continue
        section, name = key.split(".", 1)
        run.setdefault(section, {})[name] = widget_to_run_value(key, values[key])
    lora = run.setdefault("lora", {})
    if "ui.targets" in values:
        lora["target_modules"] = target_modules(values["ui.targets"], values.get("ui.all_linear"),
                                                values.get("ui.target_regex"), all_linear_names)
    return run


def run_to_form(run: dict, all_linear_names) -> dict:
    """Widget values for a (complete) run file dict."""
    out = {}
    for key in RUN_KEYS:
        section, name = key.split(".", 1)
        if name in (run.get(section) or {}):
            out[key] = run_value_to_widget(key, run[section][name])
    out.update(target_widgets((run.get("lora") or {}).get("target_modules", ALL_LINEAR), all_linear_names))
    return out


def extra_of(run: dict) -> dict:
    """The part of a run dict the form has no widget for."""
    covered = {tuple(k.split(".", 1)) for k in RUN_KEYS} | {("lora", "target_modules"), ("training", "output_dir")}
    out = {}
    for section, body in run.items():
        if not isinstance(body, dict):
            out[section] = body
            continue
        rest = {k: v for k, v in body.items() if (section, k) not in covered}
        if rest:
            out[section] = rest
    return out
