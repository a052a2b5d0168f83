"""A run file with `training.devices` > 1 starts its own process group: `python -m finetune train RUN` (the
CLI, and so the job manager) becomes the launcher of N ranks, each `python -m finetune.train RUN`.

The launcher is torch.distributed's own (`torch.distributed.run`, torchrun), run in this process rather
than as `python -m torch.distributed.run`, for three reasons measured here:
- `accelerate launch --cpu --num_processes 2` fell back to one process on this CPU machine; torchrun with
  the gloo backend trains two;
- a failed rank makes the torchrun command print a ChildFailedError traceback; here it becomes one line;
- a cancel must reach every rank exactly once. torchrun starts each rank in a session of its own, so the job
  manager's signal to this process group reaches only us; torchrun's agent (in this process) forwards it to
  every rank and waits for them to save. A second signal would be a hard stop, so the ranks must never get
  the same one twice.

The command a user would type for the same launch is printed to train.log (`launch: ...`), and
`python -m finetune export RUN --to accelerate` writes the cluster form of it.
"""

from __future__ import annotations

import logging
import os
import sys
import time

from finetune.errors import EXIT_FAILED, EXIT_INVALID, EXIT_OK, RunFileError
from finetune.model.machine import cpu_count, gpu_count
from finetune.train import distributed

SHUTDOWN_TIMEOUT_S = 60  # after a cancel, how long ranks get to finish the step and save before SIGKILL


def torchrun_args(n: int, run_path: str, resume: bool) -> list[str]:
    """torch.distributed.run's arguments for N ranks on this machine (a free port, found by its c10d store)."""
    return ["--standalone", "--nproc_per_node", str(n), "--shutdown-timeout", str(SHUTDOWN_TIMEOUT_S),
            "-m", "finetune", "train", run_path, *(["--resume"] if resume else [])]


def command(n: int, run_path: str, resume: bool) -> list[str]:
    """The same launch as a command line."""
    return [sys.executable, "-m", "torch.distributed.run", *torchrun_args(n, run_path, resume)]


def maybe_launch(run_path: str, resume: bool, stopper) -> int | None:
    """Launch the ranks when the run file asks for several devices and this process is not a rank already;
    returns the exit code, or None when the job runs here, in one process."""
    if distributed.is_rank():
        return None
    from finetune.runfile import load_run
    from finetune.runfile.parallel import wants_group

    try:
        run = load_run(run_path)
    except RunFileError:
        return None  # the job reports it in its own words
    if not wants_group(run.training):
        return None
    gpus = distributed.visible_gpus()
    problems = distributed.machine_problems(run, gpus)
    if problems:
        for problem in problems:
            print(f"error: {problem}", file=sys.stderr)
        return EXIT_INVALID
    n = distributed.resolve_devices(run.training, gpus)
    if n == 1:
        print("devices: auto found one device; training in this process", flush=True)
        return None
    return launch(run, run_path, resume, n, stopper)


def launch(run, run_path: str, resume: bool, n: int, stopper) -> int:
    from torch.distributed import run as torchrun
    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError

    from finetune.train.runfolder import RunFolder
    from finetune.train.stopping import Cancelled

    folder = RunFolder(run.training.output_dir)
    strategy = run.training.strategy
    print(f"launch: {n} processes ({strategy}, {'gpu' if gpu_count() else 'cpu, gloo'}): "
          f"{' '.join(command(n, run_path, resume))}", flush=True)
    # The agent logs each signal and failure (with tracebacks) on loggers of its own, each with its own level;
    # the outcome is reported below, once.
    for name in list(logging.root.manager.loggerDict):
        if name.startswith(("torch.distributed.elastic", "torch.distributed.launcher", "torch.distributed.run")):
            logging.getLogger(name).setLevel(logging.CRITICAL)
    os.environ[distributed.LAUNCHER_ENV] = str(os.getpid())
    # torchrun would set 1 thread per rank (and warn about it); share the cores between the ranks instead.
    os.environ.setdefault("OMP_NUM_THREADS", str(max(1, cpu_count() // n)))
    # Until torchrun's agent installs its signal handlers (just before it starts the ranks) ours raise
    # Cancelled; from then on a signal is the agent's to forward to every rank.
    try:
        if stopper.requested:
            raise Cancelled(stopper.signal_name)
        torchrun.run(torchrun.parse_args(torchrun_args(n, run_path, resume)))
    except Cancelled as exc:
        print(f"cancelled ({exc}) before the ranks started", flush=True)
        if folder.path.is_dir():
            folder.write_status(state="cancelled", finished_at=time.time(), error=None)
        return EXIT_OK
    except SignalException as exc:  # a cancel: the ranks have saved (or were killed after the timeout)
        return settle(folder, None, f"stopped by {exc.sigval.name}")
    except ChildFailedError as exc:
        return settle(folder, exc.failures, None)
    finally:
        os.environ.pop(distributed.LAUNCHER_ENV, None)
    return settle(folder, {}, None)


def settle(folder, failures: dict | None, signalled: str | None) -> int:
    """The group's outcome as the job's exit code; the status gets a final state if rank 0 could not write
    one (it crashed, or was killed)."""
    status = folder.read_status()
    state = status.get("state")
    if failures:
        codes = {r: f.exitcode for r, f in failures.items()}
        if all(code == EXIT_INVALID for code in codes.values()):
            return EXIT_INVALID  # invalid input: rank 0 printed the error lines
        first = min(failures.items(), key=lambda item: (item[1].timestamp, item[0]))
        rank, failure = first
        reason = f"rank {rank} ended with exit code {failure.exitcode}"
        if state != "failed" or rank != 0:  # rank 0's own reason stands when it is the cause
            error = f"{reason}: {status['error']}" if state == "failed" and status.get("error") else \
                f"{reason} (its traceback is in train.log)"
            folder.write_status(state="failed", error=error[:500], finished_at=time.time())
        print(f"failed: {reason}", flush=True)
        return EXIT_FAILED
    if signalled and state not in ("completed", "failed", "cancelled"):
        folder.write_status(state="cancelled", finished_at=time.time(), error=None)
    if signalled:
        print(f"cancelled: {signalled}; every rank has ended", flush=True)
    return EXIT_FAILED if folder.read_status().get("state") == "failed" else EXIT_OK
