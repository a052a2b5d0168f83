"""Training a sweep's runs one after another (`python -m finetune sweep ... --launch`), and the checks that
need a model's config.json, made for every combination before the first run starts.

Each run is its own `python -m finetune train FILE` process, its output in its own train.log as the job
manager does it (ten interleaved logs on one terminal help nobody; the terminal gets one line per run). A run
that fails does not stop the sweep. Ctrl-C (or SIGTERM) is passed on to the run in progress, which stops
gracefully (it finishes its step and saves its checkpoint and adapter, finetune/train/stopping.py), and the
runs after it are skipped: their folders stay without a status, "not run" in the ranking. In the app, a
sweep's runs go through the JobManager's queue instead (finetune/ui/sweep.py).
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from finetune.errors import RunFileError
from finetune.jobs.process import exit_reason, job_env, signal_job, spawn
from finetune.runfile.sweep import Combination, name_problems
from finetune.train.runfolder import FINAL_STATES, RunFolder


def model_problems(combos: Sequence[Combination]) -> list[str]:
    """What the count finds wrong in each combination (a varied target_modules that matches nothing, say),
    named as plan_sweep names its problems: refused before the first run, not by run 5 an hour later."""
    from finetune.model.count import count_run

    found = {}
    for combo in combos:
        try:
            count_run(combo.run)
        except RunFileError as exc:
            found[combo.name] = exc.problems
        except Exception:  # a model the count cannot read (offline, say) is the job's to judge
            continue
    return name_problems(list(combos), found) if found else []


def folder_problems(combos: Sequence[Combination]) -> list[str]:
    """A combination whose folder already holds a run (a sweep launched twice into one --out): refused, as
    the job would refuse it, but before any run starts."""
    out = []
    for combo in combos:
        folder = RunFolder(combo.run.training.output_dir)
        if folder.status_file.exists() or folder.adapter_dir.exists():
            out.append(f'{combo.name}: training.output_dir "{folder.path}" already holds a run; choose another '
                       "--out folder (or remove that one)")
    return out


class _Interrupts:
    """While a sweep trains: SIGINT and SIGTERM set `stop` and are passed on to the run in progress (it has
    its own session, so a terminal's Ctrl-C reaches only us). Restores the previous handlers on exit."""

    def __init__(self):
        self.stop = False
        self.pid: int | None = None
        self.previous: dict = {}

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():   # handlers can only be set there
            for sig in (signal.SIGINT, signal.SIGTERM):
                self.previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc):
        for sig, handler in self.previous.items():
            signal.signal(sig, handler)

    def _handle(self, signum, frame):
        name = signal.Signals(signum).name
        if not self.stop:   # os.write: a print here could re-enter one under way in the main thread
            os.write(2, f"\nsweep: {name}: stopping the current run gracefully (it saves its checkpoint and "
                        "adapter); the runs after it are skipped\n".encode())
        self.stop = True
        if self.pid is not None:
            signal_job(self.pid, signal.SIGINT)


def train_in_turn(combos: Sequence[Combination], run_files: Sequence[str], say: Callable[[str], None],
                  cwd: str | None = None, command: Sequence[str] | None = None) -> bool:
    """Train each run file in turn, its output in its folder's train.log; returns whether a signal stopped
    the sweep early. `command`: the argv prefix (default `python -m finetune train`), the file appended."""
    command = list(command or [sys.executable, "-m", "finetune", "train"])
    env = job_env(None)
    env.pop("FINETUNE_SERVING", None)   # no page to leave a core to: a CLI run uses the whole machine
    with _Interrupts() as interrupts:
        for i, (combo, run_file) in enumerate(zip(combos, run_files, strict=True), 1):
            if interrupts.stop:
                break
            folder = RunFolder(combo.run.training.output_dir)
            folder.path.mkdir(parents=True, exist_ok=True)
            say(f"sweep: [{i}/{len(combos)}] {combo.name}: training (log: {folder.log_file})")
            began = time.monotonic()
            try:
                proc = spawn([*command, run_file], folder.log_file, Path(cwd or os.getcwd()), env)
            except OSError as exc:
                folder.write_status(state="failed", error=f"the job could not be started: {exc}")
                continue
            interrupts.pid = proc.pid
            if interrupts.stop:   # a signal between the check above and the pid being known
                signal_job(proc.pid, signal.SIGINT)
            returncode = proc.wait()
            interrupts.pid = None
            status = folder.read_status()
            if status.get("state") not in FINAL_STATES:   # it exited before writing a final state (exit 2)
                status = folder.write_status(state="failed", error=exit_reason(folder, returncode),
                                             finished_at=time.time())
            error = f": {status.get('error')}" if status.get("error") else ""
            say(f"sweep: [{i}/{len(combos)}] {combo.name}: {status['state']} after "
                f"{time.monotonic() - began:.0f} s{error}")
    return interrupts.stop
