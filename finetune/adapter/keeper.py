"""Push-when-done for runs launched from the app on a Space, with the launcher's own token.

On a Space a training job holds only the Space's HF_TOKEN, which must never push for someone else
(finetune.adapter.hub), so the app keeps the signed-in launcher's OAuth token in memory (never on disk, in
a log or in a run file) and pushes when the run completes. An app restart forgets the tokens: such a run's
push.json says it is still waiting, and its adapter can be pushed from the Playground.

Off a Space this has nothing to do: the job pushes by itself with the machine's own login.
"""

from __future__ import annotations

import logging
import threading
from typing import TYPE_CHECKING

from finetune.adapter.hub import push_recorded, read_push, write_push
from finetune.errors import RunFileError
from finetune.space import on_space

if TYPE_CHECKING:
    from finetune.runfile.schema import HubSection

log = logging.getLogger(__name__)


def launch_problem(run, token: str | None, env=None) -> str | None:
    """Why this launch cannot push when done, or None: on a Space it needs the launcher's own sign-in. A run on
    Hugging Face Jobs needs it in any case: the job runs in the launcher's account (and pushes by itself)."""
    if run.runner.remote and on_space(env) and not token:
        return ("runner: hf_jobs: a job on Hugging Face's machines runs (and bills) in your own account, with your "
                "own sign-in; sign in with Hugging Face on this Space first")
    if run.hub.repo_id and on_space(env) and not token:
        return (f"hub.repo_id: pushing {run.hub.repo_id} when the run is done needs your own Hugging Face sign-in "
                "on this Space; sign in, or leave hub.repo_id empty and push from the Playground later")
    return None


class Keeper:
    def __init__(self, jobs, poll_interval: float = 3.0, api_factory=None, env=None):
        """api_factory(token) -> an HfApi-like object (tests pass a fake); default huggingface_hub.HfApi."""
        self.jobs, self.poll_interval, self.api_factory, self.env = jobs, poll_interval, api_factory, env
        self._pending: dict[str, tuple[str, HubSection]] = {}   # run id -> (token, the run's hub section)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._forget_stale()
        self._thread = threading.Thread(target=self._loop, name="hub-keeper", daemon=True)
        self._thread.start()

    def _forget_stale(self) -> None:
        """Runs an earlier app was to push: their tokens died with it, so say so instead of "waiting"."""
        runs_dir = getattr(self.jobs, "runs_dir", None)
        for folder in runs_dir.iterdir() if runs_dir is not None and runs_dir.is_dir() else ():
            if folder.is_dir() and read_push(folder).get("state") == "waiting":
                write_push(folder, state="failed", error="the app restarted, and the launcher's sign-in (kept in "
                           "memory only) went with it: push this run from the Playground")

    def check(self, run, token: str | None) -> None:
        problem = launch_problem(run, token, self.env)
        if problem:
            raise RunFileError(problem)

    def remember(self, run_id: str, run, token: str | None) -> None:
        """After a launch: keep the launcher's token until the run ends (on a Space, when it asks to push)."""
        if run.runner.remote or not (run.hub.repo_id and on_space(self.env) and token):
            return   # a job on Hugging Face pushes by itself, with the token it was sent
        with self._lock:
            self._pending[run_id] = (token, run.hub)
        write_push(self.jobs.runs_dir / run_id, repo_id=run.hub.repo_id, state="waiting", url=None, error=None)

    def pending(self) -> list[str]:
        with self._lock:
            return list(self._pending)

    def poll(self) -> None:
        for run_id in self.pending():
            try:
                state = self.jobs.status(run_id)["state"]
            except Exception:  # a run folder deleted meanwhile
                state = "gone"
            if state in ("queued", "running"):
                continue
            with self._lock:
                token, hub = self._pending.pop(run_id)
            folder = self.jobs.runs_dir / run_id
            if state != "completed":
                if state != "gone" and read_push(folder).get("state") == "waiting":
                    write_push(folder, state="failed", error=f"not pushed: the run ended {state}")
                continue
            api = self.api_factory(token) if self.api_factory else None
            assert hub.repo_id, "remember() keeps only runs that name a hub.repo_id"
            try:
                record = push_recorded(folder, hub.repo_id, token=token, private=hub.private, merged=hub.merged,
                                       api=api)
            except RunFileError as exc:   # its adapter is gone, say
                record = write_push(folder, state="failed", error=exc.problems[0])
            log.info("push of %s to %s: %s", run_id, hub.repo_id, record.get("state"))

    def _loop(self) -> None:
        while not self._stop.wait(self.poll_interval):
            try:
                self.poll()
            except Exception:  # keep watching the other runs
                log.exception("push-when-done failed")

    def shutdown(self) -> None:
        self._stop.set()
