"""`python -m finetune train RUN` for a run with `runner: {hf_jobs: ...}`: start the job on Hugging Face's
machines (finetune/jobs/hf_jobs.py), or re-attach to the one its folder names, and follow it until it ends,
keeping the local run folder a copy of the remote one (finetune/jobs/mirror.py).

This process stands for the remote job on this machine: the job manager starts, adopts after a restart and
signals it as it does a local job. SIGTERM (Cancel) cancels the remote job; once the job's machine has stopped,
the adapter it saved (completed, or the last save of a cancelled run) is copied into the folder, so the
Playground, downloads and merge work as for a local run. What it needs to find the job again (its id,
namespace, bucket folder, the log lines already copied) is in status.json's `hf_job`.

Whose token: on a Space, the signed-in launcher's, which the job manager keeps in memory and hands this
process in its environment (TOKEN_ENV), never on disk, never the Space's own HF_TOKEN; elsewhere that, or the
local login (`hf auth login`, HF_TOKEN). So on a Space, after the app and this process have both gone (a
restart of the Space), the run cannot be followed again: its status says where the job and its files are.
"""

from __future__ import annotations

import os
import re
import secrets
import signal
import time

from finetune.errors import RunFileError
from finetune.jobs import hf_jobs
from finetune.jobs.mirror import Mirror
from finetune.jobs.process import started_at
from finetune.runfile import RunConfig
from finetune.space import on_space
from finetune.train.runfolder import RunFolder

RUNNER = "hf_jobs"   # status.json's `runner` of a run whose job is on Hugging Face
TOKEN_ENV = "FINETUNE_HF_TOKEN"
REATTACH_TRIES = 3   # a follower that keeps dying is not restarted for ever
TERMINAL = ("COMPLETED", "CANCELED", "ERROR", "DELETED")
SAVE_EVERY = 2.0   # seconds between records of how many log lines are copied (what a re-attach skips)


def reattach(status: dict) -> int | None:
    """For a follower that ended without a final state: the number of its next re-attach, or None when there
    is nothing to re-attach to (no job yet, the job ended) or it has been tried REATTACH_TRIES times."""
    job = status.get("hf_job")
    if status.get("runner") != RUNNER or not isinstance(job, dict) or not job.get("id") or \
            job.get("stage") in TERMINAL:
        return None
    tries = status.get("reattached")
    tries = tries if isinstance(tries, int) else 0
    return tries + 1 if tries < REATTACH_TRIES else None


def read_token() -> str:
    if os.environ.get(TOKEN_ENV):
        return os.environ[TOKEN_ENV]
    if on_space():
        raise RunFileError("runner: hf_jobs: a job on Hugging Face's machines runs with the launching user's own "
                           "token, and this app no longer holds it (it is kept in memory only); sign in and "
                           "launch (or resume) the run again")
    from huggingface_hub import get_token

    token = get_token()
    if not token:
        raise RunFileError("runner: hf_jobs: no Hugging Face token here; run `hf auth login` (or set HF_TOKEN) "
                           "with a token that may run Jobs")
    return token


class Follower:
    def __init__(self, run: RunConfig, api, *, poll: float = 5.0):
        self.run, self.api, self.poll = run, api, poll
        self.folder = RunFolder(run.training.output_dir)
        self.token = ""
        self.job: dict = {}
        self.cancel_requested = False

    def main(self, resume: bool) -> int:
        previous = {sig: signal.signal(sig, self._on_cancel) for sig in (signal.SIGTERM, signal.SIGINT)}
        try:
            return self._main(resume)
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    def _main(self, resume: bool) -> int:
        status = self.folder.read_status()
        known = status.get("hf_job")
        try:
            self.token = read_token()
        except RunFileError as exc:
            if not (isinstance(known, dict) and known.get("id")):
                raise
            where = known.get("url") or known["id"]   # a job to re-attach to, and no token to do it with
            self.folder.write_status(state="failed", finished_at=time.time(), error=(
                f"{exc.problems[0]}. The job itself may still run: {where}; its checkpoints and adapter are in the "
                f"bucket folder {hf_jobs.run_folder_name(known.get('volume', ''))} of your {hf_jobs.BUCKET} bucket"))
            return 1
        self.folder.write_status(state="running", pid=os.getpid(), pid_started=started_at(os.getpid()),
                                 runner=RUNNER, error=None)
        if isinstance(known, dict) and known.get("id") and not resume and known.get("stage") not in TERMINAL:
            self.job = known
            print(f"hf_jobs: re-attaching to job {known.get('url') or known['id']}", flush=True)
        else:
            volume = known.get("volume") if isinstance(known, dict) and resume else None
            try:
                if not self._submit(volume or volume_id(self.folder.path), resume):
                    return self._end("cancelled", None, "CANCELED")
            except Exception as exc:   # refused (no Jobs permission, no credit, a bad flavour) or unreachable
                return self._end("failed", f"Hugging Face did not start the job: {_said(exc)}", "")
        stage, message = self._follow(skip=int(self.job.get("lines") or 0))
        return self._end(*self._outcome(stage, message), stage)

    def _submit(self, volume: str, resume: bool) -> bool:
        hf = self.run.runner
        print(f"hf_jobs: uploading this project's code and starting a {hf.flavor} job (timeout {hf.timeout})"
              f"{', resuming from the last checkpoint' if resume else ''}", flush=True)
        if self.cancel_requested:
            return False
        info = hf_jobs.submit(self.api, self.run, volume, self.token, resume=resume)
        namespace = info.owner.name if info.owner else (hf.namespace or "")
        self.job = {"id": info.id, "namespace": namespace, "volume": volume, "flavor": hf.flavor, "lines": 0,
                    "url": getattr(info, "url", None) or f"https://huggingface.co/jobs/{namespace}/{info.id}"}
        self.folder.write_status(hf_job=self.job)
        print(f"hf_jobs: job {self.job['url']}", flush=True)
        if self.cancel_requested:   # asked while it was being created
            self._cancel_remote()
        return True

    def _follow(self, skip: int) -> tuple[str, str | None]:
        """Copy the job's log until its machine has stopped: its final stage and message."""
        mirror, seen, saved = Mirror(self.folder), skip, time.monotonic()
        self.mirror = mirror
        while True:
            count = 0
            try:
                for line in self.api.fetch_job_logs(job_id=self.job["id"], namespace=self.job["namespace"],
                                                    follow=True, token=self.token):
                    count += 1
                    if count <= seen:
                        continue   # a reconnect or a re-attach replays the log from its start
                    seen = count
                    if (text := mirror.line(line)) is not None:
                        print(text, flush=True)
                    if time.monotonic() - saved > SAVE_EVERY:
                        self._save_lines(seen)
                        saved = time.monotonic()
            except Exception as exc:   # the stream broke (network, a restart of the Hub's side): ask, go on
                print(f"hf_jobs: the log stream broke ({type(exc).__name__}); reconnecting", flush=True)
            self._save_lines(seen)
            try:
                info = self.api.inspect_job(job_id=self.job["id"], namespace=self.job["namespace"], token=self.token)
            except Exception as exc:
                print(f"hf_jobs: could not read the job's state ({type(exc).__name__}: {exc}); trying again",
                      flush=True)
                time.sleep(self.poll)
                continue
            stage = str(getattr(info.status.stage, "value", info.status.stage))
            if stage in TERMINAL:
                return stage, info.status.message
            time.sleep(self.poll)

    def _save_lines(self, seen: int) -> None:
        self.job["lines"] = seen
        self.folder.write_status(hf_job=self.job)

    def _outcome(self, stage: str, message: str | None) -> tuple[str, str | None]:
        said = self.mirror.final
        if stage == "CANCELED" or self.cancel_requested:
            return "cancelled", None
        if stage == "COMPLETED" and said.get("state") in ("completed", "cancelled"):
            return said["state"], None
        if stage == "DELETED":
            return "failed", "the job was deleted on Hugging Face before it finished"
        if message and re.search(r"time ?out|timed out", message, re.I):
            return "failed", (f"the job ran past runner.hf_jobs.timeout ({self.run.runner.timeout}) and Hugging Face "
                              "stopped it; resume the run with a longer timeout")
        error = said.get("error") or message or "the job ended without a final status (see its log)"
        return "failed", f"on Hugging Face's machine: {error}"

    def _end(self, state: str, error: str | None, stage: str) -> int:
        if self.job.get("id"):
            self.job["stage"] = stage
            try:
                copied = hf_jobs.fetch_adapter(self.api, self.job["namespace"], self.job["volume"], self.folder.path,
                                               self.token)
                print(f"hf_jobs: {copied} adapter files copied from the job's bucket folder" if copied else
                      "hf_jobs: the job saved no adapter", flush=True)
            except Exception as exc:
                print(f"hf_jobs: could not copy the adapter ({type(exc).__name__}: {exc}); it stays in the bucket "
                      f"folder {hf_jobs.run_folder_name(self.job['volume'])} of {self.job['namespace']}/"
                      f"{hf_jobs.BUCKET}", flush=True)
        self.folder.write_status(state=state, error=error, finished_at=time.time(), hf_job=self.job or None)
        print(f"{state}: {error}" if error else f"{state}: the Hugging Face job ended ({stage})", flush=True)
        return 0 if state in ("completed", "cancelled") else 1

    def _on_cancel(self, signum, frame) -> None:
        if self.cancel_requested:
            return
        self.cancel_requested = True
        print("hf_jobs: cancel requested; cancelling the Hugging Face job", flush=True)
        if self.job.get("id"):
            self._cancel_remote()

    def _cancel_remote(self) -> None:
        try:
            self.api.cancel_job(job_id=self.job["id"], namespace=self.job["namespace"], token=self.token)
        except Exception as exc:
            print(f"hf_jobs: cancelling failed ({type(exc).__name__}: {exc}); cancel it at {self.job.get('url')}",
                  flush=True)


def _said(exc: Exception) -> str:
    """An error from the Hub in one line: its own message (the server's reason), not a traceback."""
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text[:300]}"


def volume_id(output_dir) -> str:
    """The run's folder in the bucket: its local name, made safe, and a random tail (two machines' `runs/run`
    are different runs)."""
    from pathlib import Path

    name = re.sub(r"[^A-Za-z0-9._-]+", "-", Path(output_dir).resolve().name).strip("-.")[:60] or "run"
    return f"{name}-{secrets.token_hex(4)}"


def main(run: RunConfig, resume: bool = False, api=None, poll: float = 5.0) -> int:
    if api is None:
        from huggingface_hub import HfApi

        api = HfApi()
    return Follower(run, api, poll=poll).main(resume)
