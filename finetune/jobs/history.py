"""Runs read back from their folders, for whoever shows them side by side: a run's curves (train loss, eval
loss and learning rate by step), its figures (last and best loss, tokens/s: the one definition every list of
runs shows), a one-row summary per run for a runs table, and the settings that differ between runs. Plain data from the run folder contract (finetune/train/runfolder.py); no UI here.

Reading is cheap enough to repeat every second: a folder's summary is kept until its status.json,
metrics.jsonl or run.yaml changes (a finished run is read once), and the trainable count, which needs the
model's config.json, once per run.yaml.
"""

from __future__ import annotations

import copy
import math
import os
import statistics
import threading
import time
from pathlib import Path
from typing import Any

from finetune.jobs.folders import RUN_ID  # the folders module, not the manager (which imports this one)
from finetune.train import checkpoints as saved
from finetune.train.runfolder import FINAL_STATES, RunFolder

# The curve of each metrics.jsonl field: series name -> record key.
CURVES = {"train": "loss", "eval": "eval_loss", "learning_rate": "learning_rate"}
# A step's rate as the job logs it (tokens_per_second), and as the Trainer's own end-of-training summary names it.
SPEEDS = ("tokens_per_second", "train_tokens_per_second")
# Keys that differ between any two runs by construction: not worth listing in a diff.
UNCOMPARED = {"training.output_dir"}

# "path" -> (its files' signature, what was read from them): a folder's summary, a run.yaml, its count
_cache: dict[str, tuple[tuple, Any]] = {}
_cache_lock = threading.Lock()


def curves(records: list[dict]) -> dict[str, list[tuple[int, float]]]:
    """{"train": [(step, loss), ...], "eval": [...], "learning_rate": [...]}, each in step order with one
    point per step: should a step be logged twice (a resumed run trims its curve to its checkpoint, but a
    crash mid-write or an older job may leave one behind), the last record wins, so no step is drawn twice."""
    out = {}
    for name, key in CURVES.items():
        points = {}
        for record in records:
            step, value = record.get("step"), record.get(key)
            if isinstance(step, (int, float)) and isinstance(value, (int, float)) and math.isfinite(value):
                points[int(step)] = float(value)
        out[name] = sorted(points.items())
    return out


def figures(records: list[dict]) -> dict:
    """A run's figures from its metrics records, as the runs table, JobManager.list_runs and status and a
    sweep's ranking all show them: last_loss, the train loss at the curve's last step (curves(): finite values,
    a step's last record wins); best_loss and best_eval_loss, the curves' lowest; tokens_per_second, the median
    of the logged rates (the first steps carry warm-up and compilation, and one value is noisy), to 0.1."""
    points = curves(records)
    losses = [loss for _, loss in points["train"]]
    speeds: list[float] = [r[key] for r in records for key in SPEEDS if _positive(r.get(key))]
    return {"last_loss": losses[-1] if losses else None, "best_loss": min(losses, default=None),
            "best_eval_loss": min((v for _, v in points["eval"]), default=None),
            "tokens_per_second": round(statistics.median(speeds), 1) if speeds else None}


def _positive(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and value > 0


def run_dirs(runs_dir) -> list[Path]:
    try:
        return [p for p in Path(runs_dir).iterdir() if p.is_dir() and RUN_ID.match(p.name)]
    except FileNotFoundError:
        return []


def settings(folder: RunFolder) -> dict:
    """The run's run.yaml as a dict ({} when it is missing or not a run file: not UTF-8, not a mapping, over
    the run file limits, not a regular file); parsed once per version of the file (a page asks every second,
    and parsing takes milliseconds)."""
    from finetune.errors import RunFileError
    from finetune.runfile.text import read_file

    try:
        stat = folder.run_yaml.stat()
    except OSError:
        return {}
    key, sig = f"yaml:{folder.run_yaml}", (stat.st_mtime_ns, stat.st_size)
    with _cache_lock:
        hit = _cache.get(key)
    if hit and hit[0] == sig:
        return copy.deepcopy(hit[1])
    try:   # within the run file limits (size first, no aliases, bounded nesting); only a regular file
        data = read_file(folder.run_yaml) if folder.run_yaml.is_file() else {}
    except RunFileError:
        data = {}
    with _cache_lock:
        _cache[key] = (sig, data)
    return copy.deepcopy(data)


def section(conf: dict, name: str) -> dict:
    """A section of a run file's dict, {} when it is missing or not a mapping (`lora: 5` in a run.yaml
    edited by hand)."""
    value = conf.get(name)
    return value if isinstance(value, dict) else {}


def checkpoints(folder: RunFolder) -> list[int]:
    """The steps of the run's complete checkpoints, ascending: what `train --resume` can go on from
    (finetune/train/checkpoints.py decides), so the page offers Resume only where the job will resume."""
    return saved.complete_steps(folder.path)


def _trainable(folder: RunFolder) -> int | None:
    """Trainable parameters as PEFT reports them, counted from run.yaml (config.json only, no weights)."""
    from finetune.errors import RunFileError
    from finetune.model.count import count_run
    from finetune.runfile import load_run

    try:
        stat = folder.run_yaml.stat()
    except OSError:
        return None
    key, sig = f"count:{folder.run_yaml}", (stat.st_mtime_ns, stat.st_size)
    with _cache_lock:
        hit = _cache.get(key)
    if hit and hit[0] == sig:
        return hit[1]
    try:
        trainable = count_run(load_run(folder.run_yaml)).trainable
    except (RunFileError, OSError, ValueError):
        trainable = None   # a model the count cannot read (offline Hub id...): the table shows nothing
    with _cache_lock:
        _cache[key] = (sig, trainable)
    return trainable


def _signature(folder: RunFolder) -> tuple:
    sig: list[tuple[int, int] | None] = []
    for path in (folder.status_file, folder.metrics_file, folder.run_yaml):
        try:
            st = path.stat()
            sig.append((st.st_mtime_ns, st.st_size))
        except OSError:   # missing, or a link to nothing or to itself
            sig.append(None)
    return tuple(sig)


def _targets(lora: dict) -> str:
    targets = lora.get("target_modules")
    return ", ".join(map(str, targets)) if isinstance(targets, list) else str(targets or "")


def _read_summary(folder: RunFolder) -> dict:
    status, conf = folder.read_status(), settings(folder)
    model, lora = section(conf, "model"), section(conf, "lora")
    records = folder.read_metrics()
    points = curves(records)
    return {
        **figures(records),   # last_loss, best_loss, best_eval_loss, tokens_per_second
        "run_id": folder.path.name, "state": status.get("state", "queued"),
        "model": model.get("name_or_path"), "quantization": model.get("quantization"),
        "r": lora.get("r"), "lora_alpha": lora.get("lora_alpha"), "targets": _targets(lora),
        "method": section(conf, "method").get("name") or "sft",   # an sft run's run.yaml has no method section
        "trainable": _trainable(folder) if folder.run_yaml.is_file() else None,
        "step": status.get("step") or (points["train"][-1][0] if points["train"] else 0),
        "max_steps": status.get("max_steps"), "error": status.get("error"),
        "submitted_at": status.get("submitted_at") or status.get("started_at") or folder.path.stat().st_mtime,
        "started_at": status.get("started_at") or status.get("training_started_at"),
        "finished_at": status.get("finished_at") or status.get("updated_at"),
        "origin": status.get("origin"),
    }


def summary(folder: RunFolder | str | os.PathLike) -> dict:
    """One run in a row: run_id, state, model, r, lora_alpha, targets, trainable, last_loss, best_loss,
    tokens_per_second, duration_s, step, max_steps, checkpoint (the last one's step, or None), ..."""
    folder = folder if isinstance(folder, RunFolder) else RunFolder(folder)
    sig = _signature(folder)
    key = str(folder.path)
    with _cache_lock:
        hit = _cache.get(key)
    if hit and hit[0] == sig:
        row = dict(hit[1])
    else:
        row = _read_summary(folder)
        with _cache_lock:
            _cache[key] = (sig, dict(row))
    end = row["finished_at"] if row["state"] in FINAL_STATES else time.time()
    row["duration_s"] = max(0.0, end - row["started_at"]) if row["started_at"] and end else None
    ticks = checkpoints(folder)
    row["checkpoint"] = ticks[-1] if ticks else None
    return row


def summaries(runs_dir) -> list[dict]:
    """Every run folder's summary, newest first (folders without status.json or run.yaml are skipped)."""
    rows = []
    for path in run_dirs(runs_dir):
        folder = RunFolder(path)
        if folder.exists():
            rows.append(summary(folder))
    return sorted(rows, key=lambda r: (r["submitted_at"], r["run_id"]), reverse=True)


def flatten(tree: dict, prefix: str = "") -> dict:
    """{"lora": {"r": 8}} -> {"lora.r": 8}; lists stay values."""
    out = {}
    for key, value in (tree or {}).items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            out.update(flatten(value, f"{name}."))
        else:
            out[name] = value
    return out


def config_diff(runs: dict[str, dict]) -> list[tuple[str, list]]:
    """[(key, [value in each run, in the order given])] for the settings whose values are not all the same
    (a key one run lacks counts as None there), in the run file's order; training.output_dir is left out."""
    flat = {run_id: flatten(conf) for run_id, conf in runs.items()}
    keys: list[str] = []
    for conf in flat.values():
        keys += [k for k in conf if k not in keys and k not in UNCOMPARED]
    rows = []
    for key in keys:
        values = [conf.get(key) for conf in flat.values()]
        if any(v != values[0] for v in values[1:]):
            rows.append((key, values))
    return rows
