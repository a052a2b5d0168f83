"""Reading a run folder's files as untrusted input: status.json checked key by key, metrics.jsonl records
checked, and every read bounded.

A run folder is written by the job, but anyone with a shell (or a full disk, or a crash of another tool)
can leave anything in it, and the job manager reads every folder each second: a status.json that was a JSON
list raised in every poll and stopped the queue; one cut short read as {} and a completed run showed as
`queued`; /dev/zero would be read for ever. So a file is opened without blocking (a named pipe would wait
for a writer), must be a regular file, and is read only up to a cap; a status must be a JSON object with
a known `state` and keys of the types below, or it is `broken`, with a one-line reason.
"""

from __future__ import annotations

import json
import math
import os
import stat
from pathlib import Path

STATES = ("queued", "running", "completed", "failed", "cancelled")
FINAL_STATES = ("completed", "failed", "cancelled")
BROKEN = "broken"   # read, never written: a status.json that is not a status (its error says why)
STATUS_MAX_BYTES = 1 << 20   # a status is under 2 KB; a bigger file is not one, and is not read whole

# What readers do arithmetic or formatting with: key -> kind. A kind is checked only when the value is not
# None (None means unset for every key but state). Other keys are kept as they are.
KINDS = {
    "step": "count", "max_steps": "count", "start_step": "count", "pid": "count", "slot": "count",
    "world_size": "count", "error": "text", "origin": "text", "gpu": "text", "resumed_from": "text",
    "cold_start": "text", "submitted_at": "time", "started_at": "time", "finished_at": "time",
    "updated_at": "time", "training_started_at": "time", "pid_started": "time", "resume": "flag",
    "forced": "flag", "warm": "flag", "slots": "counts", "devices": "devices", "runner": "text",
    "reattached": "count",
}
KIND_NAMES = {"count": "a whole number", "text": "text", "time": "a number (seconds)", "flag": "true or false",
              "counts": "a list of whole numbers", "devices": 'a whole number or "auto"'}
# metrics.jsonl: a record's step must be a whole number; these values must be numbers (NaN is a loss that
# diverged: kept) or null, or they are dropped from the record.
METRIC_NUMBERS = ("loss", "eval_loss", "learning_rate", "grad_norm", "epoch", "tokens_per_second",
                  "token_accuracy")


class Unreadable(ValueError):
    """The file is there but is not one to read: its message completes "<name> ..."."""


def read_bounded(path: Path, max_bytes: int, tail: bool = False, whole_lines: bool = True) -> bytes:
    """At most `max_bytes` of a regular file: all of it, or with `tail` its end (from the start of a line
    unless not `whole_lines`). Raises FileNotFoundError, OSError, or Unreadable (not a regular file; larger
    than max_bytes without `tail`)."""
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))   # a pipe: no wait for a writer
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            kind = "a folder" if stat.S_ISDIR(info.st_mode) else "a device, pipe or socket"
            raise Unreadable(f"is not a regular file ({kind})")
        if info.st_size > max_bytes and not tail:
            raise Unreadable(f"is larger than any it could be ({info.st_size:,} bytes; at most "
                             f"{max_bytes:,} are read)")
        start = max(0, info.st_size - max_bytes)
        os.lseek(fd, start, os.SEEK_SET)
        chunks, left = [], max_bytes
        while left > 0 and (chunk := os.read(fd, min(left, 1 << 20))):
            chunks.append(chunk)
            left -= len(chunk)
        data = b"".join(chunks)
        if start and whole_lines and b"\n" in data:
            data = data.split(b"\n", 1)[1]   # the first line, cut by the cap
        return data
    finally:
        os.close(fd)


def _show(value) -> str:
    text = json.dumps(value)
    return text if len(text) <= 40 else text[:37] + "..."


def is_kind(value, kind: str) -> bool:
    if kind == "count":
        return isinstance(value, int) and not isinstance(value, bool) and value >= 0
    if kind == "time":
        return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if kind == "text":
        return isinstance(value, str)
    if kind == "flag":
        return isinstance(value, bool)
    if kind == "counts":
        return isinstance(value, list) and all(is_kind(v, "count") for v in value)
    return value == "auto" or is_kind(value, "count")   # devices


def check(data) -> tuple[dict, str | None]:
    """(the keys of `data` that can be used, why it is not a status or None)."""
    if not isinstance(data, dict):
        kinds = {list: "a list", str: "a string", bool: "true or false", int: "a number", float: "a number"}
        what = "null" if data is None else kinds.get(type(data), type(data).__name__)
        return {}, f"is {what}, not a JSON object"
    wrong = [key for key, kind in KINDS.items() if data.get(key) is not None and not is_kind(data[key], kind)]
    usable = {k: v for k, v in data.items() if k not in wrong and (k != "state" or v in STATES)}
    if "state" not in data:
        return usable, "has no state"
    if data["state"] not in STATES:
        return usable, f"has state {_show(data['state'])}, not one of {', '.join(STATES)}"
    if wrong:
        key = wrong[0]
        return usable, f'has "{key}" {_show(data[key])}, not {KIND_NAMES[KINDS[key]]}'
    return usable, None


def load(path: Path) -> tuple[dict, str | None]:
    """status.json read and checked: (status, None); ({}, None) when there is none yet; or (what of it can
    be used, why it is broken), the reason completing "status.json ...", one line."""
    try:
        data = read_bounded(path, STATUS_MAX_BYTES)
    except FileNotFoundError:
        if os.path.islink(path):
            return {}, "is a link to nothing"
        return {}, None
    except Unreadable as exc:
        return {}, str(exc)
    except OSError as exc:
        return {}, f"cannot be read ({exc.strerror or exc})"
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        return {}, f"is not UTF-8 text (byte {exc.start})"
    if not text.strip():
        return {}, "is empty (a write cut short?)"
    try:
        return check(json.loads(text))
    except RecursionError:
        return {}, "is not a status (nested too deep)"
    except ValueError as exc:
        if text.lstrip().startswith("{") and not text.rstrip().endswith("}"):   # a write that stopped
            return {}, f"is cut short (it ends after {len(data):,} bytes, inside its JSON)"
        return {}, f"is not JSON ({getattr(exc, 'msg', exc)} at character {getattr(exc, 'pos', '?')})"


def metrics_record(record: dict) -> dict | None:
    """A metrics.jsonl record whose values can be drawn, or None when its step is not a whole number."""
    step = record.get("step")
    if "step" in record and not is_kind(step, "count"):
        return None
    # Every value but the step is a number: the known ones (METRIC_NUMBERS) and each method's own, under TRL's
    # names (rewards/margins, reward, kl...: finetune/train/methods.py).
    bad = [k for k in record if k != "step" and record[k] is not None
           and (isinstance(record[k], bool) or not isinstance(record[k], (int, float)))]
    return {k: v for k, v in record.items() if k not in bad} if bad else record
