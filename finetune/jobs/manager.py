"""The job manager: runs training jobs (`python -m finetune train RUN`) in the background, one per GPU at a
time (one on a CPU-only machine), queues the rest, and reports on them from their run folders.

Everything about a run lives in its folder under the runs directory (finetune/train/runfolder.py), never
only in memory: a new manager on the same folder (an app restart, a second browser tab's server) rebuilds
the run list, re-attaches to jobs still running, marks jobs whose process died as failed, and starts the
queued ones in submission order. Exactly one manager per runs directory starts jobs (the "runner"; it
holds an flock on `<runs_dir>/.jobs.lock`, which the OS drops if it dies); any other one only reads,
submits (to the queue on disk) and cancels, and takes over when the runner goes away. A cancel leaves
`.cancel-requested` in the run folder, so whichever manager sees the job end records it as `cancelled`.

Public API (the UI and the app's HTTP endpoints; each method's docstring says more):

    JobManager(runs_dir=None, slots=None, *, command=None, cwd=None, poll_interval=1.0, cancel_timeout=30.0)
        runs_dir: default env FINETUNE_RUNS_DIR, else "runs/". slots: jobs at once; default one per GPU, 1
        without; a run with training.devices N holds N (finetune/jobs/slots.py), a run on Hugging Face Jobs
        none (finetune/jobs/remote.py). command: the argv prefix a job runs (the run file's path is appended);
        default [sys.executable, "-m", "finetune", "train"]. cwd: where relative paths in run files resolve.
    .submit(run, origin=None, token=None) -> run id      .resume(run_id, token=None) -> status
    .status(run_id) -> dict (finetune/jobs/report.py)    .metrics(run_id), .log_tail(run_id), .queue_position()
    .cancel(run_id, force=False) -> status               .list_runs(), .wait(run_id, timeout), .poll()
    .warm_up(), .shutdown(cancel_jobs=False)             .lease_slot(holder), .release_slot(holder)
    UnknownRun(KeyError): a run id with no folder
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from finetune.errors import RunFileError
from finetune.jobs import cancel as stopping
from finetune.jobs import folders, remote, report
from finetune.jobs import slots as slotting
from finetune.jobs.folders import RUN_ID as RUN_ID  # where history, the UI and tests have imported them
from finetune.jobs.folders import UnknownRun as UnknownRun
from finetune.jobs.process import detect_gpus, exit_reason, is_job_process, job_env, spawn, started_at
from finetune.jobs.runner import RunnerLock
from finetune.jobs.warm import ENABLED as WARM_ENABLED
from finetune.jobs.warm import WarmStarter
from finetune.model.count import count_run
from finetune.runfile import RunConfig, parse_run
from finetune.train import checkpoints
from finetune.train.runfolder import BROKEN, FINAL_STATES, RunFolder

log = logging.getLogger(__name__)

CANCEL_MARK = stopping.CANCEL_MARK  # in a run folder: a manager asked it to stop, so its end is `cancelled`
@dataclass
class _Job:
    """A job this manager watches: `proc` when it started it, None when it re-attached to it."""
    pid: int
    proc: subprocess.Popen | None
    slot: int | None
    slots: tuple = ()  # every slot it holds (training.devices > 1 holds several); slot is the first


DEFAULT_COMMAND = [sys.executable, "-m", "finetune", "train"]


class JobManager:
    def __init__(self, runs_dir=None, slots: int | None = None, *, command=None, cwd=None,
                 poll_interval: float = 1.0, cancel_timeout: float = 30.0):
        self.cwd = Path(cwd or os.getcwd()).resolve()
        self.runs_dir = (self.cwd / (runs_dir or os.environ.get("FINETUNE_RUNS_DIR") or "runs")).resolve()
        self.runs_dir.mkdir(parents=True, exist_ok=True)
        self._gpus = detect_gpus()
        self.slots = slots if slots is not None else max(1, len(self._gpus))
        self.command = list(command or DEFAULT_COMMAND)
        self.poll_interval, self.cancel_timeout = poll_interval, cancel_timeout
        self._jobs: dict[str, _Job] = {}
        self._leases: dict[str, int] = {}  # slots lent to work that is not a run (lease_slot)
        self._settled: set[str] = set()  # folders seen in a final state: the runner's scan skips them
        self._trouble: dict[str, str] = {}  # run id -> what went wrong with its folder, logged once
        self._tokens: dict[str, str] = {}   # run id -> the launcher's token, for a run on Hugging Face Jobs
        self._lock = threading.RLock()
        self._runner = RunnerLock(self.runs_dir)   # held while this manager is the one starting jobs
        self._stop = threading.Event()
        self._warm: WarmStarter | None = None
        self.poll()  # re-attach, settle and start at once, not a poll interval later
        self._thread = threading.Thread(target=self._loop, name="finetune-jobs", daemon=True)
        self._thread.start()

    def warm_up(self) -> bool:
        """Start the warm process (finetune/jobs/warm.py) that later jobs are forked from; whether it was
        started. Call it once this process has set its environment (Gradio sets a variable when a page is
        built): a job whose environment then differs starts cold. Not with a custom command, not where
        FINETUNE_WARM_JOBS=0. On a GPU machine the warm process imports only what leaves CUDA untouched
        (finetune/jobs/warm.py), so each forked job initialises CUDA itself."""
        if self._warm is None and self.command == DEFAULT_COMMAND and os.environ.get(WARM_ENABLED, "1") != "0":
            self._warm = WarmStarter(job_env(None), self.runs_dir / ".warm.log", gpu=bool(self._gpus))
        return self._warm is not None

    # ----- submitting and reading -----

    def submit(self, run: RunConfig | str, origin: str | None = None, token: str | None = None) -> str:
        """Check the run, give it a folder and queue it; it starts at once when a slot is free (a run on
        Hugging Face Jobs takes none: it starts at once). `origin` (e.g. "api") is kept in status.json for
        whoever shows runs (the page follows API runs). `token`: whose Hugging Face token a run on Jobs
        uses (on a Space, the signed-in launcher's; finetune/jobs/remote.py)."""
        if isinstance(run, str):
            run = parse_run(run)
        elif isinstance(run, RunConfig):
            run = RunConfig.from_dict(run.to_dict())  # a copy, checked again: it may have been built by hand
        else:
            raise TypeError(f"submit() takes a RunConfig or the run file's text, not {type(run).__name__}")
        # What needs only the model's config.json (a typo in target_modules, say) is refused now, not by a
        # job that fails seconds later; the count is cached, so this costs nothing on a second launch.
        count_run(run)
        if not run.runner.remote:   # a remote run trains on its flavour's GPUs, not this machine's
            slotting.refuse_unfit(run, self._gpus, self.slots)
        with self._lock:
            folder = folders.new_folder(self.runs_dir, run)
            run.training.output_dir = str(folder.path)
            folder.run_yaml.write_text(run.to_yaml(), encoding="utf-8")
            max_steps = run.training.max_steps if run.training.max_steps > 0 else None  # as the job writes it
            folder.write_status(state="queued", step=0, max_steps=max_steps, error=None, submitted_at=time.time(),
                                devices=run.training.devices, origin=origin,
                                runner=remote.RUNNER if run.runner.remote else None)
            if run.runner.remote and token:
                self._tokens[folder.path.name] = token   # in memory only: its follower's environment
        self.poll()
        return folder.path.name

    def resume(self, run_id: str, token: str | None = None) -> dict:
        """Queue a cancelled or failed run again, in its own folder, as `train RUN --resume`: it goes on from
        its last checkpoint-N (the job trims the curve to that step, so no step is logged twice). A run on
        Hugging Face Jobs starts a new job on its bucket folder, where its checkpoints are."""
        folder = self._folder(run_id)
        with self._lock:
            status = folder.read_status()
            if status.get("state") not in ("cancelled", "failed"):
                raise RunFileError(f"resume: run {run_id} is {status.get('state')}; only a cancelled or failed "
                                   "run can be resumed")
            on_jobs = status.get("runner") == remote.RUNNER
            if not on_jobs and not checkpoints.resumable(folder.path):   # the job's own rule
                raise RunFileError(f"resume: run {run_id} has no checkpoint to go on from (no complete "
                                   "checkpoint-N: none finished saving)")
            if on_jobs and token:
                self._tokens[run_id] = token
            folder.write_status(state="queued", resume=True, error=None, forced=None, finished_at=None,
                                submitted_at=time.time(), reattached=None)
            stopping.clear(folder)   # the cancel that ended the last job is not a request to stop this one
            self._settled.discard(run_id)
        self.poll()
        return self.status(run_id)

    def status(self, run_id: str) -> dict:
        folder = self._folder(run_id)
        out = report.status(folder)
        out["queue_position"] = self.queue_position(run_id) if out["state"] == "queued" else None
        out.update(stopping.stopping_view(folder, out, self.cancel_timeout))
        return out

    def metrics(self, run_id: str) -> list[dict]:
        return self._folder(run_id).read_metrics()

    def log_tail(self, run_id: str, max_chars: int = 4000) -> str:
        return self._folder(run_id).log_tail(max_chars)

    def queue_position(self, run_id: str) -> int | None:
        self._folder(run_id)
        queue = self._queued()
        return queue.index(run_id) + 1 if run_id in queue else None

    def list_runs(self) -> list[dict]:
        """One summary per run folder, newest first, read from disk alone."""
        queue = self._queued()
        runs = [row for path in self._run_dirs() if (row := report.summary(path, queue)) is not None]
        return sorted(runs, key=lambda r: (r["submitted_at"], r["run_id"]), reverse=True)

    def wait(self, run_id: str, timeout: float | None = None) -> dict:
        deadline = None if timeout is None else time.monotonic() + timeout
        # A broken status.json no job of ours will write again stays broken: waiting would not end.
        while (status := self.status(run_id))["state"] not in FINAL_STATES and \
                (status["state"] != BROKEN or run_id in self._jobs):
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError(f"run {run_id} is still {status['state']} after {timeout} s")
            time.sleep(0.2)
        return status

    # ----- cancelling -----

    def cancel(self, run_id: str, force: bool = False) -> dict:
        """Stop a run: a queued one never starts; a running one is asked once to stop (SIGTERM: it finishes
        the step, saves and writes `cancelled`), and asking again while it stops does nothing. force=True
        kills it now (SIGKILL: nothing is saved) and its status says so (finetune/jobs/cancel.py)."""
        folder = self._folder(run_id)
        with self._lock:
            status = folder.read_status()
            state = status.get("state")
            if state in FINAL_STATES:
                return self.status(run_id)
            job = self._jobs.get(run_id)
            pid = job.pid if job else status.get("pid")
            if state == BROKEN and not job:   # no job to stop, and its status.json is not ours to replace
                return self.status(run_id)
            if state in ("running", BROKEN) and pid and is_job_process(pid, folder):
                if force:
                    stopping.force(folder, int(pid))
                else:
                    stopping.graceful(folder, status, int(pid))
            elif not job:  # queued, or its process is gone already
                stopping.request(folder)
                folder.write_status(state="cancelled", finished_at=time.time())
        return self.status(run_id)

    # ----- the runner: reaping and starting -----

    def poll(self) -> None:
        """Settle jobs that ended and start queued ones while slots are free (only the runner does). What
        fails for one folder (a status.json it cannot write: a full disk) is logged once and tried again
        next poll; the other runs go on."""
        with self._lock:
            if self._stop.is_set() or not self._runner.acquire():
                return
            for run_id, job in list(self._jobs.items()):
                folder = RunFolder(self.runs_dir / run_id)
                returncode = job.proc.poll() if job.proc else None
                if (job.proc and returncode is None) or (not job.proc and is_job_process(job.pid, folder)):
                    continue
                del self._jobs[run_id]   # if settling fails, the scan below finds it `running` and retries
                self._for(run_id, "settling its ended job", self._settle, folder, returncode)
            queued = []
            for path in self._run_dirs():
                if path.name in self._jobs or (path.name in self._settled and not self._requeued(path)):
                    continue
                status = RunFolder(path).read_status()
                if status.get("state") in FINAL_STATES:
                    self._settled.add(path.name)
                    self._tokens.pop(path.name, None)
                elif status.get("state") == "running":  # a job of a manager gone before us
                    self._for(path.name, "re-attaching to its job", self._adopt, RunFolder(path), status)
                elif status.get("state") == "queued":
                    queued.append((status.get("submitted_at") or 0, path.name))
                elif status.get("state") == BROKEN:   # shown as such; nothing to start or settle
                    self._note(path.name, f"{status['error']}: shown as broken, left out of the queue")
            for _, run_id in sorted(queued):  # in order: a run waiting for 2 slots is not overtaken
                folder = RunFolder(self.runs_dir / run_id)
                if folder.read_status().get("runner") == remote.RUNNER:   # no slot here: its follower starts now
                    self._for(run_id, "starting its follower", self._start, folder, [])
                    continue
                need = slotting.needed(folder.read_status().get("devices", 1), bool(self._gpus), self.slots)
                if (reason := slotting.too_many(need, self.slots)) is not None:
                    self._for(run_id, "refusing it", folder.write_status, state="failed", error=reason,
                              finished_at=time.time())
                    continue
                slots = slotting.pick(need, self.slots, self._taken())
                if slots is None:
                    break
                self._for(run_id, "starting its job", self._start, folder, slots)

    def _for(self, run_id: str, doing: str, action, *args, **kwargs) -> None:
        """action(*args, **kwargs) for one run; an error is that run's alone (logged once, not a traceback
        a second), so the queue keeps moving."""
        try:
            action(*args, **kwargs)
        except Exception as exc:   # the folder's trouble (a full disk, a permission): tried again next poll
            self._note(run_id, f"{doing} failed ({type(exc).__name__}: {exc}); trying again each poll")
        else:
            self._trouble.pop(run_id, None)

    def _note(self, run_id: str, what: str) -> None:
        if self._trouble.get(run_id) != what:
            self._trouble[run_id] = what
            log.warning("run %s: %s", run_id, what)

    def _settle(self, folder: RunFolder, returncode: int | None) -> None:
        """A job's process is gone (so its last write is done): make sure its status is final. A follower of a
        job on Hugging Face that died (the machine restarted) is started again: it re-attaches."""
        if folder.read_status().get("state") in (*FINAL_STATES, "queued"):   # queued: resumed as it exited
            return
        requested = stopping.requested_at(folder, folder.read_status()) is not None
        if not requested and (again := remote.reattach(folder.read_status())) is not None:
            folder.write_status(state="queued", resume=False, reattached=again)
            return
        if requested:
            folder.write_status(state="cancelled", finished_at=time.time())
        else:
            folder.write_status(state="failed", error=exit_reason(folder, returncode), finished_at=time.time())

    def _adopt(self, folder: RunFolder, status: dict) -> None:
        pid = status.get("pid")
        if pid and is_job_process(pid, folder):
            held = status.get("slots") or [status.get("slot")]
            taken = self._taken()
            if not all(isinstance(s, int) and s not in taken and 0 <= s < self.slots for s in held):
                held = [self._free_slot()]
            held = tuple(s for s in held if s is not None)
            self._jobs[folder.path.name] = _Job(pid=int(pid), proc=None, slot=held[0] if held else None,
                                                slots=held)
        else:
            self._settle(folder, None)

    def _taken(self) -> set[int]:
        return {s for job in self._jobs.values() for s in (job.slots or (job.slot,)) if s is not None} | \
            set(self._leases.values())

    # ----- slots lent to other work: the playground's generation worker (finetune.adapter.service) -----

    def lease_slot(self, holder: str) -> tuple[int, str | None] | None:
        """Take one free slot for `holder` until release_slot(holder): (slot, its GPU or None), or None while
        every slot is busy. Queued runs are started first (poll), so a lease never overtakes them. Leases
        live in this manager's memory: they count only where this manager is the runner (the app's is)."""
        self.poll()
        with self._lock:
            if holder not in self._leases:
                slot = self._free_slot()
                if slot is None or self._queued():
                    return None
                self._leases[holder] = slot
            slot = self._leases[holder]
            return slot, (self._gpus[slot % len(self._gpus)] if self._gpus else None)

    def release_slot(self, holder: str) -> None:
        with self._lock:
            self._leases.pop(holder, None)
        self.poll()  # a queued run may start now

    def _free_slot(self) -> int | None:
        free = slotting.pick(1, self.slots, self._taken())
        return free[0] if free else None

    def _start(self, folder: RunFolder, slots: list[int]) -> None:
        slot = slots[0] if slots else None
        # One GPU per slot; the job sees only these (so its devices: auto is what it was given).
        gpu = ",".join(self._gpus[s % len(self._gpus)] for s in slots) if self._gpus else None
        resume = ["--resume"] if folder.read_status().get("resume") else []   # queued by resume()
        argv, env = [*self.command, str(folder.run_yaml), *resume], job_env(gpu)
        if token := self._tokens.get(folder.path.name):
            env[remote.TOKEN_ENV] = token
        proc = None
        # Written before the job starts: a warm job (finetune/jobs/warm.py) writes its own status at once,
        # and its state must not be overwritten by this one.
        folder.write_status(state="running", slot=slot, slots=list(slots), gpu=gpu, started_at=time.time())
        try:
            # A follower of a remote job (no training libraries to import) starts cold.
            warm = self._warm if folder.read_status().get("runner") != remote.RUNNER else None
            pid = warm.spawn(argv, folder.log_file, self.cwd, env) if warm else None
            if pid is None:
                proc = spawn(argv, folder.log_file, cwd=self.cwd, env=env)
                pid = proc.pid
        except OSError as exc:
            folder.write_status(state="failed", error=f"the job could not be started: {exc}")
            return
        # pid_started: with the pid, what names the job's process (process.is_job_process).
        folder.write_status(pid=pid, pid_started=started_at(pid), warm=proc is None,
                            cold_start=self._warm.declined if self._warm and proc else None)
        self._jobs[folder.path.name] = _Job(pid=pid, proc=proc, slot=slot, slots=tuple(slots))

    def _requeued(self, path: Path) -> bool:
        """A settled run that was queued again (resume() by this or another manager): scan it again."""
        if RunFolder(path).read_status().get("state") == "queued":
            self._settled.discard(path.name)
            return True
        return False

    def _loop(self) -> None:
        while not self._stop.wait(self.poll_interval):
            try:
                self.poll()
            except Exception:  # the queue must keep moving: log and go on
                log.exception("job manager poll failed")

    def shutdown(self, cancel_jobs: bool = False) -> None:
        """Stop watching (jobs keep running unless cancel_jobs) and let another manager be the runner."""
        if cancel_jobs:
            for run_id in list(self._jobs):
                self.cancel(run_id)
            for run_id in list(self._jobs):
                try:
                    self.wait(run_id, timeout=self.cancel_timeout + 10)
                except TimeoutError:   # asked by whoever shuts down: the explicit force
                    self.cancel(run_id, force=True)
        self._stop.set()
        self._thread.join()
        if self._warm is not None:
            self._warm.close()
        with self._lock:
            self._runner.release()

    # ----- folders (finetune/jobs/folders.py) -----

    def _run_dirs(self) -> list[Path]:
        return folders.run_dirs(self.runs_dir)

    def _folder(self, run_id: str) -> RunFolder:
        return folders.lookup(self.runs_dir, run_id)

    def _queued(self) -> list[str]:
        return folders.queued(self.runs_dir)
