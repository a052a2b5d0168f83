"""The app's handle on a running generation worker (finetune.adapter.worker): its process, the events it
printed (parsed, in a queue that a reader thread fills, so its stdout pipe never fills up), the slot it
holds, and the two ways a request that went away is cleared: waiting for its end, or killing the process.
"""

from __future__ import annotations

import contextlib
import json
import queue
import subprocess
import threading
import time


class WorkerProcess:
    """A running worker: its Popen, the lines it printed (parsed, in a queue: a reader thread always drains
    its stdout), and the slot it holds."""

    def __init__(self, proc: subprocess.Popen[bytes], slot):
        assert proc.stdin is not None and proc.stdout is not None, "Playground._spawn starts the worker with both pipes"
        self.proc, self.slot, self.stdin, self.stdout = proc, slot, proc.stdin, proc.stdout
        self.events: queue.Queue[dict] = queue.Queue()
        self.busy = False
        self.abandoned: str | None = None   # a request told to stop, whose end the next request waits for
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

    def settle(self, grace: float) -> bool:
        """Whether the worker is free for the next request: it ended the request abandoned before (told to
        stop, it answers within a token), or it is killed after `grace` seconds and False is returned."""
        rid, self.abandoned = self.abandoned, None
        deadline = time.monotonic() + grace
        while rid is not None:
            try:
                event = self.events.get(timeout=max(0.01, deadline - time.monotonic()))
            except queue.Empty:
                self.kill()
                return False
            if event.get("event") == "exit":
                self.proc.wait()
                return False
            if event.get("id") == rid and event.get("event") in ("done", "error"):
                return True
        return True

    def kill(self) -> None:
        """End a worker that does not stop when asked; its model's memory goes back with it."""
        with contextlib.suppress(OSError):
            self.proc.kill()
        self.proc.wait()
