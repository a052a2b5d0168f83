"""The app's side of the playground: one generation worker process (finetune.adapter.worker), started on a
slot of the job manager and given back when it goes idle.

    Playground(jobs, idle_timeout=300, use_slots=None, log_file=None, time_limit=None)
        use_slots: take a job-manager slot for the worker (its GPU); default: when this machine has a GPU.
        Without one there is no GPU memory to share, so the worker runs beside the training jobs.
        time_limit: seconds a generation may run (default FINETUNE_GENERATE_TIME_LIMIT, else 60), and the
        longest a request waits for its turn.
    .generate(run_dir, prompt, settings, compare=True) -> iterator of events:
        {"event": "waiting", "message"}          no free slot, or another generation is running
        {"event": "loading", "label"}            the model is loading (the first prompt, or a new run)
        {"event": "text", "answers": {...}}      the answers so far (every side the request asked for)
        {"event": "tick"}                        nothing new for a second (a caller's chance to notice it left)
        {"event": "done", "answers", "tokens", "seconds", "first_token_s", "stopped", "time_limit_s"}
        RunFileError is raised with the worker's one-line message when it refuses the request or it fails;
        GenerationError when busy or past the time limit; WorkerCrashed when the worker process died.
    .close()                                      stop the worker and give its slot back

One generation runs at a time (a second request waits, and says so). The worker keeps its model while
prompts keep coming; it exits after idle_timeout s without one, and at once when a training run is
queued for its slot (a run waits for a playground no longer than a prompt takes).

No request holds the next one up for longer than the time limit: a generation stops at it (the worker
checks after every token, and its answer says so); a worker that has not stopped GRACE_S later is killed;
a request whose caller left (the iterator closed: a closed page, a cancelled Gradio event) is told to stop
at once; and a request that waited the whole limit for its turn is refused instead of waiting on.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import queue
import subprocess
import sys
import threading
import time
from pathlib import Path

from finetune.adapter.generate import TIME_LIMIT_S, GenSettings, check_prompt
from finetune.adapter.worker_process import WorkerProcess
from finetune.errors import FinetuneError, RunFileError
from finetune.jobs.process import PACKAGE_ROOT, detect_gpus

HOLDER = "playground"
WAIT_POLL_S = 0.5
GRACE_S = 5.0   # a worker that has not stopped this long after its time limit, or after a stop, is killed
# With nothing new from the worker, the caller still gets an event this often: Gradio notices that a caller
# left (and closes its generator, which stops the worker) only when the generator yields.
TICK_S = 1.0


class GenerationError(FinetuneError):
    """The Playground could not answer this prompt: busy for longer than its limit, or past its own time limit.
    Not a RunFileError: nothing the user wrote is wrong, and retrying later may work."""


class WorkerCrashed(GenerationError):
    """The generation worker process died (killed for memory, a crash in a library): said as such, never as a
    problem with the run file."""


class _ExitedIdle(Exception):
    """The worker exited cleanly before it answered anything: it had reached its idle timeout."""


class Playground:
    def __init__(self, jobs=None, idle_timeout: float = 300.0, use_slots: bool | None = None, log_file=None,
                 python: str = sys.executable, time_limit: float | None = None):
        from finetune.adapter.worker import time_limit as checked_limit

        self.jobs, self.idle_timeout, self.python = jobs, idle_timeout, python
        self.time_limit = checked_limit(time_limit if time_limit is not None else
                                        os.environ.get("FINETUNE_GENERATE_TIME_LIMIT", TIME_LIMIT_S))
        self.use_slots = (bool(detect_gpus()) if use_slots is None else use_slots) and jobs is not None
        runs_dir = getattr(jobs, "runs_dir", None)
        self.log_file = Path(log_file) if log_file else (Path(runs_dir) / ".playground.log" if runs_dir else None)
        self._worker: WorkerProcess | None = None
        self._lock = threading.Lock()        # one generation at a time
        self._state = threading.Lock()       # guards _worker
        self._ids = itertools.count(1)
        self._closed = threading.Event()
        threading.Thread(target=self._watch, name="playground-watch", daemon=True).start()

    # ----- generating -----

    def generate(self, run_dir, prompt: str, settings: GenSettings | None = None, compare: bool = True):
        check_prompt(prompt)   # a 1 MB prompt is refused here, in microseconds, before it waits for anything
        settings = settings or GenSettings()
        give_up = time.monotonic() + self.time_limit
        while not self._lock.acquire(timeout=WAIT_POLL_S):
            if time.monotonic() >= give_up:
                raise GenerationError(f"busy: the generations before this one took its whole time limit of "
                                   f"{self.time_limit:g} s; try again in a moment")
            yield {"event": "waiting", "message": "another generation is running; yours starts when it ends"}
        try:
            yield from self._generate(str(run_dir), prompt, settings, bool(compare), give_up)
        finally:
            self._lock.release()

    def _generate(self, run_dir: str, prompt: str, settings: GenSettings, compare: bool, give_up: float):
        for _ in range(3):
            worker = None
            while worker is None:
                worker = self._ensure_worker()
                if worker is not None and not worker.settle(GRACE_S):
                    worker = None   # it did not end an abandoned request in time: killed, a new one comes
                    continue
                if worker is None:
                    if time.monotonic() >= give_up:
                        raise GenerationError(f"busy: {self._waiting_message()}, for longer than this request's time "
                                           f"limit of {self.time_limit:g} s; try again later")
                    yield {"event": "waiting", "message": self._waiting_message()}
                    time.sleep(WAIT_POLL_S)
            try:
                yield from self._request(worker, run_dir, prompt, settings, compare)
                return
            except _ExitedIdle:
                # It reached its idle timeout just as this request came: a new worker takes it.
                continue
        raise WorkerCrashed(self._died())

    def _request(self, worker: WorkerProcess, run_dir: str, prompt: str, settings: GenSettings, compare: bool):
        rid = str(next(self._ids))
        heard = False
        sides = ["base", "adapter"] if compare else ["adapter"]
        answers = dict.fromkeys(sides, "")
        worker.busy = True
        finished = False
        clock: float | None = time.monotonic()   # when its time began; None while its model loads
        try:
            if not worker.send(op="generate", id=rid, run_dir=run_dir, prompt=prompt, compare=compare,
                               settings=vars(settings), time_limit_s=self.time_limit):
                finished = True
                if worker.proc.wait() == 0:
                    raise _ExitedIdle()
                raise WorkerCrashed(self._died())
            while True:
                if clock is not None and time.monotonic() > clock + self.time_limit + GRACE_S:
                    finished = True
                    worker.kill()
                    raise GenerationError(f"the generation ran past its time limit of {self.time_limit:g} s and did "
                                       "not stop, so its worker was ended; the next prompt starts a new one")
                try:
                    batch = [worker.events.get(timeout=TICK_S)]
                except queue.Empty:
                    if heard:
                        yield {"event": "tick"}
                    continue
                while True:   # everything already printed: one update for the page, not one per token
                    try:
                        batch.append(worker.events.get_nowait())
                    except queue.Empty:
                        break
                grew = False
                for event in batch:
                    kind = event.get("event")
                    if kind == "exit":
                        finished = True
                        if not heard and worker.proc.wait() == 0:
                            raise _ExitedIdle()
                        raise WorkerCrashed(self._died())
                    if event.get("id") != rid:
                        continue   # the end of an earlier, abandoned request
                    heard = True
                    if kind == "loading":
                        clock = None
                        yield {"event": "loading", "label": event.get("label")}
                    elif kind == "loaded":
                        clock = time.monotonic()
                    elif kind == "text":
                        side = event["side"]
                        answers[side] = event["text"] if "text" in event else answers[side] + event.get("delta", "")
                        grew = True
                    elif kind == "error":
                        finished = True
                        raise RunFileError(event.get("error") or "the generation failed")
                    elif kind == "done":
                        finished = True
                        yield {**event, "answers": {**answers, **event.get("answers", {})}}
                        return
                if grew:
                    yield {"event": "text", "answers": dict(answers)}
        finally:
            if not finished and worker.alive():
                # The caller went away mid-answer (a closed page, a cancelled event): stop the worker now. The
                # next request waits for its end (WorkerProcess.settle), not this one: Gradio closes an abandoned
                # generator on its event loop, which must not wait here.
                worker.send(op="stop")
                worker.abandoned = rid
            worker.busy = False

    def _died(self) -> str:
        where = f"; see {self.log_file}" if self.log_file else ""
        return f"the generation worker stopped unexpectedly{where}"

    # ----- the worker process and its slot -----

    def _ensure_worker(self) -> WorkerProcess | None:
        """The running worker, or a new one on a free slot; None while no slot is free."""
        with self._state:
            if self._worker is not None and self._worker.alive():
                return self._worker
            self._retire()
            lease = None
            if self.use_slots:
                lease = self.jobs.lease_slot(HOLDER)
                if lease is None:
                    return None
            gpu = lease[1] if lease else None
            try:
                self._worker = WorkerProcess(self._spawn(gpu), lease)
            except OSError:
                if lease:
                    self.jobs.release_slot(HOLDER)
                raise
            return self._worker

    def _spawn(self, gpu) -> subprocess.Popen[bytes]:
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        env["PYTHONPATH"] = os.pathsep.join(p for p in (PACKAGE_ROOT, env.get("PYTHONPATH")) if p)
        if self.use_slots:
            env["CUDA_VISIBLE_DEVICES"] = gpu if gpu is not None else ""
        log = self.log_file.open("ab") if self.log_file else subprocess.DEVNULL
        try:
            # Its own session: the app's Ctrl-C is the app's; the worker ends when its stdin closes.
            return subprocess.Popen([self.python, "-m", "finetune.adapter.worker", "--idle-timeout",
                                     str(self.idle_timeout)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                    stderr=log, env=env, cwd=PACKAGE_ROOT, start_new_session=True)
        finally:
            if not isinstance(log, int):   # a file we opened, not subprocess.DEVNULL
                log.close()

    def _retire(self) -> None:
        """Forget an exited worker and give its slot back (under self._state)."""
        if self._worker is None or self._worker.alive():
            return
        self._worker.proc.wait()
        if self._worker.slot is not None:
            self.jobs.release_slot(HOLDER)
        self._worker = None

    def _waiting_message(self) -> str:
        try:
            busy = [r for r in self.jobs.list_runs() if r["state"] in ("running", "queued")]
        except Exception:  # only a message
            busy = []
        running = sum(r["state"] == "running" for r in busy)
        queued = len(busy) - running
        what = f"{running} training run{'s' * (running != 1)} running" + (f", {queued} queued" if queued else "")
        return f"waiting for a free GPU slot ({what}); the answer starts when one is free"

    def _watch(self) -> None:
        """Give the slot back as soon as the worker exits (idle), and ask an idle worker to exit when a
        training run is queued: a run should not wait minutes for a playground nobody is typing into."""
        while not self._closed.wait(2.0):
            with self._state:
                worker = self._worker
                if worker is None:
                    continue
                if not worker.alive():
                    self._retire()
                    continue
                if self.use_slots and not worker.busy and self._queued_runs():
                    worker.send(op="quit")

    def _queued_runs(self) -> bool:
        try:
            return any(r["state"] == "queued" for r in self.jobs.list_runs())
        except Exception:
            return False

    def stop(self) -> None:
        """End the current generation early; what it has said so far is its answer."""
        worker = self._worker
        if worker is not None and worker.busy:
            worker.send(op="stop")

    @property
    def worker_pid(self) -> int | None:
        worker = self._worker
        return worker.proc.pid if worker is not None and worker.alive() else None

    def close(self, timeout: float = 10.0) -> None:
        self._closed.set()
        with self._state:
            worker = self._worker
            if worker is not None and worker.alive():
                worker.send(op="stop")
                worker.send(op="quit")
                with contextlib.suppress(OSError):
                    worker.stdin.close()
                try:
                    worker.proc.wait(timeout=timeout)
                except subprocess.TimeoutExpired:
                    worker.proc.kill()
            self._retire()
