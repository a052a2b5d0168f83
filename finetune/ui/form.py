"""The form <-> run file mapping, kept free of Gradio so it is tested without a browser.

The form shows the run file's common fields one widget each (keyed "section.key") plus three widgets that
together give lora.target_modules ("ui.targets" ticks, the "ui.all_linear" switch, an optional
"ui.target_regex"). Keys the form has no widget for (rank_pattern, further SFTConfig keys...) live in
the session's `extra` dict, which the form is laid over, so loading a run file loses nothing.
"""

from __future__ import annotations

import re

from finetune.runfile import ALL_LINEAR
from finetune.runfile.method import DEFAULTS

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
    "training.early_stopping_patience", "training.report_to", "samples.prompts",
]
TARGET_KEYS = ["ui.targets", "ui.all_linear", "ui.target_regex"]
# The method section: its name, each method's settings (a widget each, shown for the methods that take it,
# finetune.runfile.method.DEFAULTS) and GRPO's rewards as table rows (rewards_to_rows). Only the chosen
# method's settings go into the run file; an sft run has no method section at all.
METHOD_SETTINGS = ["method.beta", "method.loss_type", "method.desirable_weight", "method.undesirable_weight",
                   "method.num_generations", "method.max_completion_length", "method.temperature", "method.top_p"]
METHOD_KEYS = ["method.name", *METHOD_SETTINGS, "method.rewards"]
# Where it trains (finetune/ui/runner_view.py): "local" or a Hugging Face Jobs flavour, and the job's timeout;
# the rest of runner.hf_jobs (namespace, image) rides along in `extra`.
RUNNER_KEYS = ["runner.flavor", "runner.timeout"]
FORM_KEYS = RUN_KEYS + TARGET_KEYS + METHOD_KEYS + RUNNER_KEYS

LIST_KEYS = {"lora.modules_to_save"}                  # a comma-separated text box <-> a list of names
INDEX_KEYS = {"lora.layers_to_transform"}             # "0, 2, 4" <-> [0, 2, 4]
OPTIONAL_TEXT_KEYS = {"model.revision", "hub.repo_id"} | LIST_KEYS | INDEX_KEYS   # empty box <-> null
# Keys left out of the run file when their widget is empty (a null report_to would be written as one).
DROPPED_WHEN_EMPTY = {"training.early_stopping_patience", "training.report_to", "samples.prompts"}
WHOLE_NUMBER_KEYS = {"lora.r", "data.max_length", "training.max_steps", "training.per_device_train_batch_size",
                     "training.gradient_accumulation_steps", "training.logging_steps", "training.save_steps",
                     "training.seed", "training.early_stopping_patience", "method.num_generations",
                     "method.max_completion_length"}


def split_names(text) -> list[str]:
    return [part for part in re.split(r"[,\s]+", str(text or "")) if part]


def _index(token: str):
    """'3' -> 3; anything else is passed on as typed, so the run file's check names it."""
    return int(token) if re.fullmatch(r"\d+", token) else token


def widget_to_run_value(key: str, value):
    if key == "training.report_to":   # ticked trackers; none ticked: no report_to
        return list(value) if value else None
    if key == "samples.prompts":      # one prompt a line; an empty box: the default (from the eval split)
        lines = [line.strip() for line in str(value or "").splitlines() if line.strip()]
        return lines or None
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
    if key == "training.report_to":
        listed = value if isinstance(value, list) else [] if value is None else [value]
        return [str(v).strip().lower() for v in listed if str(v).strip().lower() != "none"]
    if key == "samples.prompts":
        return "\n".join(map(str, value)) if isinstance(value, list) else ("" if value is None else str(value))
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
        value = widget_to_run_value(key, values[key])
        if value is None and key in DROPPED_WHEN_EMPTY:
            (run.get(section) or {}).pop(name, None)
            continue
        run.setdefault(section, {})[name] = value
    lora = run.setdefault("lora", {})
    if "ui.targets" in values:
        lora["target_modules"] = target_modules(values["ui.targets"], values.get("ui.all_linear"),
                                                values.get("ui.target_regex"), all_linear_names)
    if "runner.flavor" in values:
        runner_section(run, values)
    if "method.name" in values:
        rest = run.pop("method", None)   # what the form has no widget for: an unknown key stays, for the check
        method = method_section(values)
        if not isinstance(rest, dict) and rest is not None:
            run["method"] = rest
        elif method is not None or rest:
            run["method"] = {**(rest or {}), **(method or {"name": "sft"})}
    return run


def runner_section(run: dict, values: dict) -> None:
    """The run's `runner` for the form's choice: left out for this machine; a flavour keeps the hf_jobs settings
    the form has no widget for (a loaded file's namespace, image)."""
    rest = run.pop("runner", None)
    flavor = values.get("runner.flavor") or "local"
    if flavor == "local":
        return
    kept = rest.get("hf_jobs") if isinstance(rest, dict) and isinstance(rest.get("hf_jobs"), dict) else {}
    timeout = str(values.get("runner.timeout") or "").strip() or "2h"
    run["runner"] = {"hf_jobs": {**kept, "flavor": flavor, "timeout": timeout}}


def method_section(values: dict) -> dict | None:
    """The run file's method section for the form's values: the name and the settings that method takes (a
    hidden widget's value for another method stays out, so switching methods leaves nothing behind); None for
    sft, whose run file is written as before methods existed."""
    name = values.get("method.name") or "sft"
    if name == "sft":
        return None
    out = {"name": name}
    for key in (k for k in METHOD_SETTINGS if k.split(".", 1)[1] in DEFAULTS.get(name, {})):
        value = widget_to_run_value(key, values.get(key))
        if value is not None and value != "":
            out[key.split(".", 1)[1]] = value
    if "rewards" in DEFAULTS.get(name, {}):
        out["rewards"] = rows_to_rewards(values.get("method.rewards") or [])
    return out


def run_to_form(run: dict, all_linear_names) -> dict:
    """Widget values for a (complete) run file dict."""
    out = {}
    for key in RUN_KEYS:
        section, name = key.split(".", 1)
        if name in (run.get(section) or {}) or key in DROPPED_WHEN_EMPTY:   # absent: the widget empties
            out[key] = run_value_to_widget(key, (run.get(section) or {}).get(name))
    out.update(target_widgets((run.get("lora") or {}).get("target_modules", ALL_LINEAR), all_linear_names))
    method = run.get("method") if isinstance(run.get("method"), dict) else {}
    out["method.name"] = method.get("name") or "sft"
    for key in METHOD_SETTINGS:
        out[key] = method.get(key.split(".", 1)[1])
    out["method.rewards"] = rewards_to_rows(method.get("rewards") or [])
    hf = run.get("runner", {}).get("hf_jobs") if isinstance(run.get("runner"), dict) else None
    out["runner.flavor"] = (hf or {}).get("flavor") or ("local" if hf is None else "a10g-small")
    out["runner.timeout"] = str((hf or {}).get("timeout") or "2h")
    return out


# --- GRPO's rewards as a table: one row each, [type, argument, weight] ---

REWARD_COLUMNS = ["type", "argument", "weight"]
# The one argument each reward type takes, as the table's second column writes it (finetune/runfile/rewards.py).
REWARD_ARGUMENTS = {"contains": "text", "regex": "pattern", "exact_match": "column", "length": "max_tokens",
                    "format": "tags, comma-separated", "python": "path.py:function"}


def rewards_to_rows(rewards) -> list[list]:
    """method.rewards -> table rows. A python reward's argument is `path:function`, a format's its tags."""
    rows = []
    for reward in rewards if isinstance(rewards, list) else []:
        if not isinstance(reward, dict):
            continue
        kind = str(reward.get("type") or "")
        if kind == "python":
            argument = f"{reward.get('path', '')}:{reward.get('function', '')}"
        elif kind == "format":
            tags = reward.get("tags") or []
            argument = ", ".join(map(str, tags)) if isinstance(tags, list) else str(tags)
        else:
            key = REWARD_ARGUMENTS.get(kind, "")
            argument = "" if reward.get(key) is None else str(reward.get(key))
        rows.append([kind, argument, reward.get("weight", 1.0)])
    return rows


def _blank(cell) -> bool:
    return cell is None or (isinstance(cell, float) and cell != cell) or not str(cell).strip()


def rows_to_rewards(rows) -> list[dict]:
    """Table rows -> method.rewards. Blank rows are skipped; anything else is passed on as typed, so the run
    file's check names the row and key (`method.rewards[1].type: must be one of ...`)."""
    out = []
    for row in rows or []:
        cells = [*list(row), None, None, None][:3]
        if all(_blank(c) for c in cells):
            continue
        kind, argument, weight = ("" if _blank(cells[0]) else str(cells[0]).strip(),
                                  "" if _blank(cells[1]) else str(cells[1]), cells[2])
        reward: dict = {"type": kind}
        if kind in ("contains", "regex") and argument:
            reward[REWARD_ARGUMENTS[kind]] = argument   # as typed: its spaces can matter
        elif kind == "exact_match" and argument.strip():
            reward["column"] = argument.strip()
        elif kind == "length" and argument.strip():
            reward["max_tokens"] = int(argument) if argument.strip().isdigit() else argument.strip()
        elif kind == "format" and argument.strip():
            reward["tags"] = split_names(argument)
        elif kind == "python" and argument.strip():
            path, colon, function = argument.strip().rpartition(":")
            reward.update({"path": path, "function": function} if colon else {"path": argument.strip()})
        if not _blank(weight):
            reward["weight"] = _number(weight)
        out.append(reward)
    return out


def _number(value):
    """A weight cell: a number, or its text as typed (the check names it)."""
    if isinstance(value, (int, float)):
        return value
    try:
        return float(str(value).strip())
    except ValueError:
        return str(value).strip()


def extra_of(run: dict) -> dict:
    """The part of a run dict the form has no widget for."""
    covered = {tuple(k.split(".", 1)) for k in RUN_KEYS + METHOD_KEYS} | {("lora", "target_modules"),
                                                                          ("training", "output_dir")}
    out = {}
    for section, body in run.items():
        if section == "runner":   # flavor and timeout have widgets; the rest of hf_jobs rides along
            hf = body.get("hf_jobs") if isinstance(body, dict) else None
            rest = {k: v for k, v in hf.items() if k not in ("flavor", "timeout")} if isinstance(hf, dict) else {}
            if rest:
                out["runner"] = {"hf_jobs": rest}
            elif not isinstance(body, dict) or set(body) - {"hf_jobs"}:
                out["runner"] = body   # not a runner the form can show: kept, and the check names it
            continue
        if not isinstance(body, dict):
            out[section] = body
            continue
        rest = {k: v for k, v in body.items() if (section, k) not in covered}
        if rest:
            out[section] = rest
    return out
