"""A remote job's log, line by line, into the local run folder: the folder the page, /status, compare, samples
and the runs table read, as they would a local run's.

The job prints every write to its own run folder as a tagged line (`@finetune status|metrics|sample {json}`,
finetune/train/runfolder.py); every other line is its log, which the follower prints (its output is train.log). The log is the job's to write, so each line is
untrusted input: a line is at most MAX_LINE characters, a record must be a JSON object, and a status may set
only the job's own keys (never the pid this machine signals, or the slots it counts). A final state from the
job is held back (`remote_state`) until the job's machine has stopped and its adapter is here: the follower
writes the final state (finetune/jobs/remote.py).
"""

from __future__ import annotations

import json

from finetune.train.runfolder import ECHO_TAG, FINAL_STATES, RunFolder
from finetune.train.statusfile import KINDS, is_kind

MAX_LINE = 64 << 10
# Keys that belong to this machine's view of the run: what it started, signals and counts.
LOCAL_KEYS = {"pid", "pid_started", "slot", "slots", "gpu", "origin", "submitted_at", "started_at", "finished_at",
              "updated_at", "warm", "cold_start", "resume", "forced", "devices", "hf_job", "runner", "remote_state"}


class Mirror:
    """Applies one job's lines to `folder`. A replayed line (a reconnect, a restart that re-attaches) is
    recognised: records already in the folder are not added twice."""

    def __init__(self, folder: RunFolder):
        self.folder = folder
        self._metrics = {_key(r) for r in folder.read_metrics()}
        self._samples = {_key(r) for r in folder.read_samples()}
        self._started = False    # the job's first `running` status trims the curve as the job does
        self.final: dict = {}    # the job's own last word: state, error

    def line(self, text: str) -> str | None:
        """Apply one line; a line of the job's log (not a record) is returned, for whoever shows the log."""
        text = text.rstrip("\n")[:MAX_LINE]
        if text.startswith(ECHO_TAG + " "):
            kind, _, payload = text[len(ECHO_TAG) + 1:].partition(" ")
            try:
                record = json.loads(payload)
            except (ValueError, RecursionError):
                record = None
            apply = {"status": self._status, "metrics": self._metric, "sample": self._sample}.get(kind)
            if isinstance(record, dict) and apply is not None:
                apply(record)
                return None
        return text

    def _status(self, record: dict) -> None:
        fields = {k: v for k, v in record.items() if k not in LOCAL_KEYS and (k not in KINDS or is_kind(v, KINDS[k]))}
        state = fields.pop("state", None)
        if state in FINAL_STATES:
            self.final = {"state": state, "error": fields.get("error")}
            fields["remote_state"] = state
        elif state == "running" and not self._started:
            self._started = True
            self._trim(fields.get("step"))
        if fields:
            self.folder.write_status(**fields)

    def _trim(self, step) -> None:
        """A job starting at `step` (0, or its checkpoint on resume) trains every later step again: the points
        this folder has after it are dropped, as the job drops them from its own metrics.jsonl."""
        step = step if isinstance(step, int) else 0
        records = self.folder.read_metrics()
        kept = [r for r in records if r["step"] <= step]
        if len(kept) != len(records):
            self.folder.metrics_file.write_text("".join(json.dumps(r) + "\n" for r in kept), encoding="utf-8")
            self._metrics = {_key(r) for r in kept}

    def _metric(self, record: dict) -> None:
        if type(record.get("step")) is int and (key := _key(record)) not in self._metrics:
            self._metrics.add(key)
            self.folder.append_metrics(record)

    def _sample(self, record: dict) -> None:
        if (key := _key(record)) not in self._samples:
            self._samples.add(key)
            self.folder.append_sample(record)



def _key(record: dict) -> str:
    return json.dumps(record, sort_keys=True, default=str)
