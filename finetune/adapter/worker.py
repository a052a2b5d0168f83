"""The generation worker: `python -m finetune.adapter.worker [--idle-timeout S]`, a process of its own so the
app never holds a model (its memory, GPU memory included, goes back when the worker exits).

It keeps the last model it loaded between prompts and exits after --idle-timeout seconds without a request,
or when its stdin closes (the app is gone). It speaks JSON, one object per line:

    stdin   {"op": "generate", "id", "run_dir", "prompt", "settings": {max_new_tokens, temperature, top_p},
             "compare": bool, "time_limit_s": s}   the generation stops after s seconds (loading not counted)
            {"op": "stop"}     end the current generation early (what it has so far is its answer)
            {"op": "quit"}
    stdout  {"event": "ready", "pid"}
            {"id", "event": "loading", "label"} / {"id", "event": "loaded", "seconds"}
            {"id", "event": "text", "side": "base"|"adapter", "delta"}  the answer grew by `delta`
            {"id", "event": "text", "side", "text"}                     the answer is now `text` (a re-decode)
            {"id", "event": "done", "answers", "tokens", "seconds", "first_token_s", "stopped", "time_limit_s"}
                                    stopped: "stop", "time limit", or null when the answers ended by themselves
            {"id", "event": "error", "error"}                           one line for the user
stderr is the worker's log (the caller points it at a file).
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import select
import sys
import threading
import time
import traceback

from finetune.errors import RunFileError

IDLE_TIMEOUT = 300.0   # seconds a loaded model waits for the next prompt


class Lines:
    """Whole lines from a file descriptor, waiting at most `timeout` seconds for one (select, not a
    buffered readline, so a timeout works and nothing read ahead is lost)."""

    def __init__(self, fd: int):
        self.fd, self.buffer, self.closed = fd, b"", False

    def next(self, timeout: float | None) -> bytes | None:
        """A line, None on timeout, b"" at end of input."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while b"\n" not in self.buffer:
            if self.closed:
                line, self.buffer = self.buffer, b""
                return line
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            ready, _, _ = select.select([self.fd], [], [], left)
            if not ready:
                return None
            chunk = os.read(self.fd, 65536)
            if not chunk:
                self.closed = True
            self.buffer += chunk
        line, self.buffer = self.buffer.split(b"\n", 1)
        return line + b"\n"


class Worker:
    def __init__(self, out=None):
        self.out = out or sys.stdout
        self.write_lock = threading.Lock()
        self.loaded = None   # finetune.adapter.generate.Loaded

    def send(self, **event) -> None:
        with self.write_lock:
            self.out.write(json.dumps(event) + "\n")
            self.out.flush()

    def model_for(self, request_id: str, run_dir: str):
        """The loaded model for the run's current adapter; a different one replaces it (one model at a time,
        and the old one's memory is given back first)."""
        from finetune.adapter.generate import load
        from finetune.adapter.source import find_adapter

        source = find_adapter(run_dir)
        if self.loaded is not None and self.loaded.source.key == source.key:
            return self.loaded
        self.unload()
        self.send(id=request_id, event="loading", label=source.label)
        self.loaded = load(source)
        self.send(id=request_id, event="loaded", seconds=round(self.loaded.load_seconds, 3),
                  device=self.loaded.device, label=source.label)
        return self.loaded

    def unload(self) -> None:
        if self.loaded is None:
            return
        self.loaded = None
        gc.collect()
        try:
            import torch

            if torch.cuda.is_available():
                torch.cuda.empty_cache()
        except ImportError:
            pass

    def generate(self, request: dict, lines: Lines) -> bool:
        """Serve one request, watching stdin for a stop; returns False when stdin closed meanwhile."""
        from finetune.adapter.generate import TIME_LIMIT_S, GenSettings, check_prompt, run_in_thread, stream

        rid = str(request.get("id", ""))
        try:
            settings = GenSettings.checked(**(request.get("settings") or {}))
            limit = time_limit(request.get("time_limit_s", TIME_LIMIT_S))
            check_prompt(request.get("prompt"))   # before a model is loaded for it
            loaded = self.model_for(rid, request.get("run_dir", ""))
        except RunFileError as exc:
            self.send(id=rid, event="error", error="\n".join(exc.problems))
            return True
        except Exception as exc:  # reported as one line; the traceback goes to the log
            traceback.print_exc()
            self.send(id=rid, event="error", error=f"{type(exc).__name__}: {one_line(exc)}")
            return True

        def on_text(side, text, before):
            if text.startswith(before):
                self.send(id=rid, event="text", side=side, delta=text[len(before):])
            else:
                self.send(id=rid, event="text", side=side, text=text)

        stop = threading.Event()
        thread, box = run_in_thread(stream, loaded, request.get("prompt", ""), settings,
                                    request.get("compare") is True, on_text, stop, limit)
        alive = True
        while thread.is_alive():
            line = lines.next(0.05)
            if line is None:
                continue
            if line == b"":
                alive = False
                stop.set()
                continue
            op = parse(line).get("op")
            if op in ("stop", "quit"):
                stop.set()
                alive = alive and op != "quit"
        thread.join()
        if "error" in box:
            error = box["error"]
            if not isinstance(error, RunFileError):
                traceback.print_exception(error)
            message = "\n".join(error.problems) if isinstance(error, RunFileError) else \
                f"{type(error).__name__}: {one_line(error)}"
            self.send(id=rid, event="error", error=message)
        else:
            self.send(id=rid, event="done", time_limit_s=limit, **box["result"])
        return alive

    def serve(self, fd: int, idle_timeout: float) -> int:
        lines = Lines(fd)
        self.send(event="ready", pid=os.getpid())
        while True:
            line = lines.next(idle_timeout)
            if line is None:
                print(f"idle for {idle_timeout:g} s: exiting, which gives the model's memory back", file=sys.stderr)
                return 0
            if line == b"":
                return 0
            request = parse(line)
            op = request.get("op")
            if op == "quit":
                return 0
            if op == "generate" and not self.generate(request, lines):
                return 0


def time_limit(value) -> float:
    """A request's time limit in seconds: a number > 0, at most an hour."""
    from finetune.runfile.validators import Invalid, Num

    try:
        return float(Num(gt=0, le=3600)(value))
    except Invalid as exc:
        raise RunFileError(f"time_limit_s: {exc}") from None


def parse(line: bytes) -> dict:
    try:
        value = json.loads(line)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def one_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [""])[0][:300]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m finetune.adapter.worker", description=__doc__.split("\n")[0])
    parser.add_argument("--idle-timeout", type=float, default=IDLE_TIMEOUT,
                        help="seconds without a request before the worker exits and gives its memory back")
    args = parser.parse_args(argv)
    return Worker().serve(sys.stdin.fileno(), args.idle_timeout)


if __name__ == "__main__":
    sys.exit(main())
