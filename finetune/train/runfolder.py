"""The run folder (`training.output_dir`): the contract between a training job and whoever watches it.

The job writes; the UI and the job manager read. Writes of status.json are atomic (write, then rename),
so a reader never sees half a file, and each update (read, change, write) holds an flock on
`.status.lock`, so the job's and the job manager's updates never drop each other's keys; metrics.jsonl is
only ever appended to, one JSON object per line.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from pathlib import Path

try:
    import fcntl
except ImportError:   # not on POSIX: updates are not serialised
    fcntl = None  # type: ignore[assignment]

STATES = ("queued", "running", "completed", "failed", "cancelled")
FINAL_STATES = ("completed", "failed", "cancelled")


class RunFolder:
    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)

    run_yaml = property(lambda self: self.path / "run.yaml")
    status_file = property(lambda self: self.path / "status.json")
    metrics_file = property(lambda self: self.path / "metrics.jsonl")
    log_file = property(lambda self: self.path / "train.log")
    adapter_dir = property(lambda self: self.path / "adapter")

    def read_status(self) -> dict:
        """The last status written, or {} when there is none yet."""
        try:
            return json.loads(self.status_file.read_text(encoding="utf-8"))
        except (FileNotFoundError, json.JSONDecodeError):
            return {}

    def write_status(self, **fields) -> dict:
        """Update status.json with `fields` (state, step, max_steps, error, pid, ...) and stamp the time."""
        if "state" in fields and fields["state"] not in STATES:
            raise ValueError(f"unknown state {fields['state']!r}")
        self.path.mkdir(parents=True, exist_ok=True)
        with self._status_lock():
            status = self.read_status()
            status.update(fields, updated_at=time.time())
            tmp = self.status_file.with_name(f".status.{os.getpid()}.tmp")
            tmp.write_text(json.dumps(status, indent=1), encoding="utf-8")
            os.replace(tmp, self.status_file)
        return status

    @contextlib.contextmanager
    def _status_lock(self):
        if fcntl is None:
            yield
            return
        fd = os.open(self.path / ".status.lock", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    def append_metrics(self, record: dict) -> None:
        self.path.mkdir(parents=True, exist_ok=True)
        with self.metrics_file.open("a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")

    def read_metrics(self) -> list[dict]:
        """Every complete record so far; a line still being written is skipped."""
        try:
            lines = self.metrics_file.read_text(encoding="utf-8").splitlines()
        except FileNotFoundError:
            return []
        out = []
        for line in lines:
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError:
                continue
        return out

    def log_tail(self, max_chars: int = 4000) -> str:
        try:
            with self.log_file.open("rb") as f:
                f.seek(0, os.SEEK_END)
                f.seek(max(0, f.tell() - max_chars))
                return f.read().decode("utf-8", errors="replace")
        except FileNotFoundError:
            return ""
