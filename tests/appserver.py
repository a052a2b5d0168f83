"""The app as a separate process on a free local port: what the browser tests, the API tests and the UI
benchmark drive. No Gradio import here; the child process does that."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]   # the repository, where app.py is


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def answers(url: str) -> bool:
    """Whether the app at `url` answers its API's info route (it has started)."""
    try:
        with urllib.request.urlopen(f"{url}/gradio_api/info", timeout=2) as r:
            return r.status == 200
    except OSError:
        return False


@contextlib.contextmanager
def serve_app(runs_dir, env: dict | None = None, timeout: float = 180.0, cwd=ROOT):
    """Run `python app.py` on 127.0.0.1 with runs under `runs_dir` (relative to `cwd`, the app's working
    directory); yields its URL. At the end, runs still active are cancelled (they are separate processes that
    would outlive the app) and the app is stopped."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    runs_path = Path(cwd) / runs_dir   # runs_dir itself when it is absolute
    child_env = dict(os.environ, GRADIO_SERVER_NAME="127.0.0.1", GRADIO_SERVER_PORT=str(port),
                     FINETUNE_RUNS_DIR=str(runs_dir), HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1",
                     TRANSFORMERS_OFFLINE="1", GRADIO_ANALYTICS_ENABLED="False", **(env or {}))
    if "SPACE_ID" not in (env or {}):
        child_env.pop("SPACE_ID", None)   # a test machine that is itself a Space still serves openly
    # the log's handle closes whatever happens, also when the app cannot even be started
    with open(runs_path.parent / f"app-{port}.log", "wb") as log:
        proc = subprocess.Popen([sys.executable, str(ROOT / "app.py")], cwd=cwd, env=child_env, stdout=log,
                                stderr=subprocess.STDOUT, start_new_session=True)
        try:
            deadline = time.monotonic() + timeout
            while not answers(url):
                if proc.poll() is not None:
                    raise RuntimeError(f"the app exited with code {proc.returncode}; see {log.name}")
                if time.monotonic() > deadline:
                    raise TimeoutError(f"the app did not answer within {timeout:g} s; see {log.name}")
                time.sleep(0.5)
            yield url
        finally:
            stop_runs(runs_path)
            interrupt(proc)


def interrupt(proc: subprocess.Popen, timeout: float = 20) -> None:
    """Stop the app as Ctrl-C would (Gradio closes its server), killing it only if it hangs."""
    proc.send_signal(signal.SIGINT)
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def stop_runs(runs_dir, timeout: float = 60.0) -> None:
    """Cancel (SIGTERM) the jobs still running under `runs_dir` and wait for them to end."""
    from finetune.jobs import JobManager

    jobs = JobManager(runs_dir)
    try:
        active = [r["run_id"] for r in jobs.list_runs() if r["state"] in ("running", "queued")]
        for run_id in active:
            jobs.cancel(run_id)
        for run_id in active:
            with contextlib.suppress(TimeoutError):
                jobs.wait(run_id, timeout=timeout)
    finally:
        jobs.shutdown()
