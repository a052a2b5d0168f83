"""The app's side of the playground: one generation worker process (finetune.adapter.worker), started on a
slot of the job manager and given back when it goes idle.

    Playground(jobs, idle_timeout=300, use_slots=None, log_file=None)
        use_slots: take a job-manager slot for the worker (its GPU); default: when this machine has a GPU.
        Without one there is no GPU memory to share, so the worker runs beside the training jobs.
    .generate(run_dir, prompt, settings, compare=True) -> iterator of events:
        {"event": "waiting", "message"}          no free slot, or another generation is running
        {"event": "loading", "label"}            the model is loading (the first prompt, or a new run)
        {"event": "text", "answers": {...}}      the answers so far (every side the request asked for)
        {"event": "done", "answers", "tokens", "seconds", "first_token_s"}
        RunFileError is raised with the worker's one-line message when it refuses or fails.
    .close()                                      stop the worker and give its slot back

One generation runs at a time (a second request waits, and says so). The worker keeps its model while
prompts keep coming; it exits after idle_timeout s without one, and at once when a training run is
queued for its slot (a run waits for a playground no longer than a prompt takes).
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import queue
import subprocess
import sys
import threading
import time
from pathlib import Path

from finetune.adapter.generate import GenSettings
from finetune.errors import RunFileError
from finetune.jobs.process import PACKAGE_ROOT, detect_gpus

HOLDER = "playground"
WAIT_POLL_S = 0.5


class _Process:
    """A running worker: its Popen, the lines it printed (parsed, in a queue: a reader thread always drains
    its stdout), and the slot it holds."""

    def __init__(self, proc: subprocess.Popen[bytes], slot):
        assert proc.stdin is not None and proc.stdout is not None, "_spawn starts the worker with both pipes"
        self.proc, self.slot, self.stdin, self.stdout = proc, slot, proc.stdin, proc.stdout
        self.events: queue.Queue[dict] = queue.Queue()
        self.busy = False
        threading.Thread(target=self._read, name="playground-reader", daemon=True).start()

    def _read(self) -> None:
        for line in self.stdout:
            try:
                self.events.put(json.loads(line))
            except ValueError:
                continue
        self.events.put({"event": "exit"})

    def send(self, **request) -> bool:
        try:
            self.stdin.write((json.dumps(request) + "\n").encode())
            self.stdin.flush()
            return True
        except (BrokenPipeError, OSError, ValueError):
            return False

    def alive(self) -> bool:
        return self.proc.poll() is None


class _ExitedIdle(Exception):
    """The worker exited cleanly before it answered anything: it had reached its idle timeout."""


class Playground:
    def __init__(self, jobs=None, idle_timeout: float = 300.0, use_slots: bool | None = None, log_file=None,
                 python: str = sys.executable):
        self.jobs, self.idle_timeout, self.python = jobs, idle_timeout, python
        self.use_slots = (bool(detect_gpus()) if use_slots is None else use_slots) and jobs is not None
        runs_dir = getattr(jobs, "runs_dir", None)
        self.log_file = Path(log_file) if log_file else (Path(runs_dir) / ".playground.log" if runs_dir else None)
        self._worker: _Process | None = None
        self._lock = threading.Lock()        # one generation at a time
        self._state = threading.Lock()       # guards _worker
        self._ids = itertools.count(1)
        self._closed = threading.Event()
        threading.Thread(target=self._watch, name="playground-watch", daemon=True).start()

    # ----- generating -----

    def generate(self, run_dir, prompt: str, settings: GenSettings | None = None, compare: bool = True):
        settings = settings or GenSettings()
        while not self._lock.acquire(timeout=WAIT_POLL_S):
            yield {"event": "waiting", "message": "another generation is running; yours starts when it ends"}
        try:
            yield from self._generate(str(run_dir), prompt, settings, compare)
        finally:
            self._lock.release()

    def _generate(self, run_dir: str, prompt: str, settings: GenSettings, compare: bool):
        for _ in range(2):
            worker = None
            while worker is None:
                worker = self._ensure_worker()
                if worker is None:
                    yield {"event": "waiting", "message": self._waiting_message()}
                    time.sleep(WAIT_POLL_S)
            try:
                yield from self._request(worker, run_dir, prompt, settings, compare)
                return
            except _ExitedIdle:
                # It reached its idle timeout just as this request came: a new worker takes it.
                continue
        raise RunFileError(self._died())

    def _request(self, worker: _Process, run_dir: str, prompt: str, settings: GenSettings, compare: bool):
        rid = str(next(self._ids))
        heard = False
        sides = ["base", "adapter"] if compare else ["adapter"]
        answers = dict.fromkeys(sides, "")
        worker.busy = True
        finished = False
        try:
            if not worker.send(op="generate", id=rid, run_dir=run_dir, prompt=prompt, compare=compare,
                               settings=vars(settings)):
                finished = True
                if worker.proc.wait() == 0:
                    raise _ExitedIdle()
                raise RunFileError(self._died())
            while True:
                batch = [worker.events.get()]
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
                        raise RunFileError(self._died())
                    if event.get("id") != rid:
                        continue   # the end of an earlier, abandoned request
                    heard = True
                    if kind == "loading":
                        yield {"event": "loading", "label": event.get("label")}
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
                # The caller went away mid-answer (a closed page): stop the worker and wait for its end,
                # so the next request does not read this one's tail.
                worker.send(op="stop")
                self._drain(worker, rid)
            worker.busy = False

    @staticmethod
    def _drain(worker: _Process, rid: str, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                event = worker.events.get(timeout=max(0.01, deadline - time.monotonic()))
            except queue.Empty:
                return
            if event.get("event") == "exit" or (event.get("id") == rid and event.get("event") in ("done", "error")):
                return

    def _died(self) -> str:
        where = f"; see {self.log_file}" if self.log_file else ""
        return f"the generation worker stopped unexpectedly{where}"

    # ----- the worker process and its slot -----

    def _ensure_worker(self) -> _Process | None:
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
                self._worker = _Process(self._spawn(gpu), lease)
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
