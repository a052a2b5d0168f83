"""The run folder (`training.output_dir`): the contract between a training job and whoever watches it.

The job writes; the UI and the job manager read. Writes of status.json are atomic (write, then rename),
so a reader never sees half a file, and each update (read, change, write) holds an flock on
`.status.lock`, so the job's and the job manager's updates never drop each other's keys; metrics.jsonl is
only ever appended to, one JSON object per line.

Reading never trusts the folder: anyone with a shell can leave anything there (a status.json of one byte
0xff, a JSON list, a file cut short by a full disk, /dev/zero), and the job manager reads it on every poll:
one such file raising there would stop its queue. So a status.json that is not a status reads as state
`broken` with a one-line reason (finetune/train/statusfile.py), never as a default state, and metrics.jsonl
yields only the records it holds.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from pathlib import Path

from finetune.train import statusfile
from finetune.train.statusfile import BROKEN, FINAL_STATES, STATES

try:
    import fcntl
except ImportError:   # not on POSIX: updates are not serialised
    fcntl = None  # type: ignore[assignment]

__all__ = ["BROKEN", "FINAL_STATES", "STATES", "RunFolder"]
# In a job on Hugging Face's machines (finetune/jobs/hf_jobs.py) every write is also printed as one tagged line:
# the job's log is all that reaches the machine that launched it, which rebuilds the folder from those lines
# (finetune/jobs/mirror.py).
ECHO_ENV, ECHO_TAG = "FINETUNE_ECHO", "@finetune"
METRICS_MAX_BYTES = 32 << 20   # ~150k logging steps; of a longer metrics.jsonl the newest part is read
SAMPLES_MAX_BYTES = 256 << 10  # the newest answers of samples.jsonl (60+ of up to ~4 KB): what a page shows


class RunFolder:
    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)

    run_yaml = property(lambda self: self.path / "run.yaml")
    status_file = property(lambda self: self.path / "status.json")
    metrics_file = property(lambda self: self.path / "metrics.jsonl")
    log_file = property(lambda self: self.path / "train.log")
    adapter_dir = property(lambda self: self.path / "adapter")
    samples_file = property(lambda self: self.path / "samples.jsonl")   # {step, prompt, answer, seconds}

    def exists(self) -> bool:
        """Whether this is a run's folder: it has a status.json (of any kind: a broken one is shown) or a
        run.yaml."""
        return os.path.lexists(self.status_file) or self.run_yaml.is_file()

    def read_status(self) -> dict:
        """The last status written; {} when there is none yet; {"state": "broken", "error": why} when
        status.json is there but is not a status (its keys then have the types statusfile.KINDS says)."""
        status, problem = statusfile.load(self.status_file)
        return {"state": BROKEN, "error": f"status.json {problem}"} if problem else status

    def write_status(self, **fields) -> dict:
        """Update status.json with `fields` (state, step, max_steps, error, pid, ...) and stamp the time."""
        if "state" in fields and fields["state"] not in STATES:
            raise ValueError(f"unknown state {fields['state']!r}")
        self.path.mkdir(parents=True, exist_ok=True)
        with self._status_lock():
            status, _ = statusfile.load(self.status_file)   # of a broken one, what can still be read
            status.update(fields, updated_at=time.time())
            tmp = self.status_file.with_name(f".status.{os.getpid()}.tmp")
            try:
                with open(tmp, "w", encoding="utf-8") as f:
                    f.write(json.dumps(status, indent=1))
                os.replace(tmp, self.status_file)
            except BaseException:   # a full disk: the old status.json stays whole, and no .tmp is left
                with contextlib.suppress(OSError):
                    tmp.unlink()
                raise
        _echo("status", fields)
        return status

    @contextlib.contextmanager
    def _status_lock(self):
        if fcntl is None:
            yield
            return
        fd = os.open(self.path / ".status.lock", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            # A file system without locks (a bucket mounted into a job) has one writer: it goes on unlocked.
            with contextlib.suppress(OSError):
                fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    def append_metrics(self, record: dict) -> None:
        self._append(self.metrics_file, record)
        _echo("metrics", record)

    def read_metrics(self) -> list[dict]:
        """Every complete record so far: a line still being written, one that is not a JSON object or whose
        step is not a whole number is skipped, and so is a value that is not a number (a loss of "high").
        A metrics.jsonl that is not a regular file (a folder, /dev/zero) has none."""
        checked = (statusfile.metrics_record(r) for r in self._objects(self.metrics_file, METRICS_MAX_BYTES))
        return [r for r in checked if r is not None]

    def append_sample(self, record: dict) -> None:
        self._append(self.samples_file, record)
        _echo("sample", record)

    def read_samples(self) -> list[dict]:
        """The newest answers to the samples (samples.jsonl's last 256 KB): records with a whole-number step and
        text prompt and answer; anything else in the file is skipped."""
        out = []
        for r in self._objects(self.samples_file, SAMPLES_MAX_BYTES):
            if type(r.get("step")) is int and isinstance(r.get("prompt"), str) and isinstance(r.get("answer"), str):
                seconds = r.get("seconds")
                out.append({"step": r["step"], "prompt": r["prompt"], "answer": r["answer"],
                            "seconds": seconds if type(seconds) in (int, float) else None})
        return out

    def _append(self, path: Path, record: dict) -> None:
        """One JSON line at the end of a JSONL file of the run (metrics.jsonl, samples.jsonl)."""
        self.path.mkdir(parents=True, exist_ok=True)
        with path.open("a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")

    @staticmethod
    def _objects(path: Path, max_bytes: int) -> list[dict]:
        """The JSON objects of a JSONL file's last `max_bytes` (whole lines only); a line still being written,
        or one that is not a JSON object, is skipped; a file that is not a regular file has none."""
        try:
            data = statusfile.read_bounded(path, max_bytes, tail=True)
        except (OSError, statusfile.Unreadable):
            return []
        out = []
        for line in data.decode("utf-8", errors="replace").splitlines():
            try:
                record = json.loads(line)
            except (ValueError, RecursionError):
                continue
            if isinstance(record, dict):
                out.append(record)
        return out

    def log_tail(self, max_chars: int = 4000) -> str:
        """The last `max_chars` bytes of train.log ("" when there is none, or it is not a regular file)."""
        try:
            data = statusfile.read_bounded(self.log_file, max_chars, tail=True, whole_lines=False)
        except (OSError, statusfile.Unreadable):
            return ""
        return data.decode("utf-8", errors="replace")


def _echo(kind: str, record: dict) -> None:
    if os.environ.get(ECHO_ENV) == "1":
        print(f"{ECHO_TAG} {kind} {json.dumps(record, default=str)}", flush=True)
