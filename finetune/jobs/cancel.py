"""Cancelling a running job, the manager's side: one graceful request, then only an explicit force.

A graceful stop (SIGTERM) lets the job finish its step and save a checkpoint and the adapter, which takes
seconds to minutes on a large model. A second SIGTERM during that time would stop the job at once
without saving, and so would a kill on a timeout: either throws away what the user asked to keep. So a
request is recorded once, as the mtime of the run folder's `.cancel-requested` mark (the manager never
writes status.json while the job runs: the job owns it, and a second writer would race it), repeated
requests are no-ops, and only force=True kills (SIGKILL: nothing is saved), which the status then says. The page offers "Force stop" once a graceful stop has taken longer
than the manager's cancel_timeout.
"""

from __future__ import annotations

import signal
import time

from finetune.jobs.process import is_job_process, signal_job
from finetune.train.runfolder import FINAL_STATES, RunFolder

CANCEL_MARK = ".cancel-requested"  # in a run folder: a manager asked it to stop, so its end is `cancelled`
FORCED = "force-stopped: killed without saving (no adapter or checkpoint was written by this stop)"


def requested_at(folder: RunFolder, status: dict) -> float | None:
    """When a stop of the current job was asked for, or None. A mark older than the job's start was left
    by an earlier job in the same folder (a run resumed after a cancel) and does not count."""
    try:
        when = (folder.path / CANCEL_MARK).stat().st_mtime
    except OSError:
        return None
    return when if when + 1 >= (status.get("started_at") or 0) else None


def request(folder: RunFolder) -> None:
    (folder.path / CANCEL_MARK).touch()


def clear(folder: RunFolder) -> None:
    """Forget an earlier job's stop request: a run resumed within a second of its cancel otherwise read as
    stopping (requested_at's slack), and its page disabled Cancel."""
    (folder.path / CANCEL_MARK).unlink(missing_ok=True)


def graceful(folder: RunFolder, status: dict, pid: int) -> bool:
    """Ask the job to stop after its step, once; False when a stop was asked already (nothing is sent)."""
    if requested_at(folder, status) is not None:
        return False
    request(folder)
    signal_job(pid, signal.SIGTERM)
    return True


def force(folder: RunFolder, pid: int, wait_s: float = 10.0) -> None:
    """Kill the job's process group now and record that it was killed without saving."""
    request(folder)
    signal_job(pid, signal.SIGKILL)
    deadline = time.monotonic() + wait_s
    while is_job_process(pid, folder) and time.monotonic() < deadline:   # SIGKILL cannot be caught
        time.sleep(0.05)
    if folder.read_status().get("state") not in FINAL_STATES:   # the job can no longer write it
        folder.write_status(state="cancelled", error=FORCED, forced=True, finished_at=time.time())


def stopping_view(folder: RunFolder, status: dict, timeout_s: float) -> dict:
    """For status(): whether a graceful stop is under way, and whether it has taken long enough that the
    page offers to force it."""
    since = requested_at(folder, status) if status.get("state") == "running" else None
    return {"stopping": since is not None,
            "force_available": since is not None and time.time() - since > timeout_s}
