"""How a job that does not complete says so, in one line, where whoever watches it looks: state `failed`
(or `cancelled`) in status.json, and an `error:` line in train.log, which the job manager reads when
status.json could not be written (finetune/jobs/process.py, exit_reason).

- refused (exit 2): setup found problems, one `error:` line each, and the folder says `failed`: a folder left
  `running` would read as "ended without a final status (killed?)" to a manager with no exit code to go by
  (a job forked from the warm process). The folder is written only when it waits for
  this job (state running, naming this process or no process yet): `train RUN` refused on a folder that
  holds a finished run leaves that run's record as it was.
- failed (exit 1): the traceback, then `error: Type: first line`; a full disk is said as such, without a
  traceback (finetune/train/diskfull.py).
- cancelled before training began: nothing was started.
"""

from __future__ import annotations

import os
import sys
import time
import traceback
from pathlib import Path

from finetune.errors import EXIT_FAILED, EXIT_INVALID, RunFileError
from finetune.runfile.limits import cut
from finetune.train import diskfull, distributed
from finetune.train.runfolder import RunFolder

MAX_ERROR = 500   # characters of a reason kept in status.json


def _say(line: str) -> None:
    print(f"error: {line}", file=distributed.plain(sys.stderr), flush=True)


def _output_dir(run_path: str) -> Path | None:
    """training.output_dir as the run file has it, read without checking the rest (the checks may be what
    refused it)."""
    from finetune.runfile.text import read_file

    try:
        value = (read_file(run_path).get("training") or {}).get("output_dir")
    except (RunFileError, AttributeError):
        return None
    return Path(value) if isinstance(value, str) and value else None


def waiting_folder(run_path: str) -> RunFolder | None:
    """The run folder a job manager made for this job and is waiting on, or None: the run file's own folder
    (the manager runs <folder>/run.yaml) or its output_dir, whose status.json says `running` and names this
    process, or none yet (the manager records the pid just after the start)."""
    ours = {None, os.getpid(), distributed.launcher_pid()}
    for path in (Path(run_path).parent, _output_dir(run_path)):
        if path is None:
            continue
        folder = RunFolder(path)
        status = folder.read_status()
        if status.get("state") == "running" and status.get("pid") in ours:
            return folder
    return None


def refused(run_path: str, problems: list[str]) -> int:
    """Setup refused the run: one `error:` line per problem, the folder waiting for this job marked failed
    with them; exit code 2."""
    for problem in problems:
        _say(problem)
    folder = waiting_folder(run_path)
    if folder is not None:
        _write(folder, state="failed", error=cut("; ".join(problems), MAX_ERROR), finished_at=time.time())
    return EXIT_INVALID


def failed(folder: RunFolder, exc: BaseException, main_rank: bool) -> int:
    """Training failed: one line in train.log and status.json (rank 0 writes it); exit code 1."""
    words = diskfull.why(exc, folder.path)
    if words is None:
        traceback.print_exc()
        first = (str(exc).strip().splitlines() or [""])[0]
        reason = cut(f"{type(exc).__name__}: {first}", MAX_ERROR)
    elif main_rank:   # rank 0 alone touches the run folder
        reason = diskfull.report(folder, exc, words)
    else:
        reason = f"disk full ({words})"
    if main_rank:
        _say(reason)
        _write(folder, state="failed", error=reason, finished_at=time.time())
    else:
        print(f"failed: {reason}", flush=True)
    return EXIT_FAILED


def cancelled_early(run_path: str) -> None:
    """A job manager may have made the run folder already: tell it the job ended, without creating one."""
    from finetune.runfile import load_run

    try:
        folder = RunFolder(load_run(run_path).training.output_dir)
    except RunFileError:
        return
    if folder.path.is_dir():
        _write(folder, state="cancelled", finished_at=time.time(), error=None)


def _write(folder: RunFolder, **fields) -> None:
    """The final status; when even that cannot be written (the disk is still full), the `error:` line
    already in train.log is what the job manager reads instead."""
    try:
        folder.write_status(**fields)
    except OSError as exc:
        print(f"status.json: the {fields.get('state')} state could not be written ({exc.strerror or exc}); "
              "the job manager reads the line above from train.log", file=sys.stderr, flush=True)
