"""A stand-in for Hugging Face Jobs on 127.0.0.1, answering as the documented endpoints do, so the real
`huggingface_hub.HfApi` code runs against it (HTTP, JSON, the log's server-sent events, its reconnects):

    GET  /api/whoami-v2                        the token's user
    GET  /api/jobs/hardware                    the flavours and their prices (`hardware`, set by a test)
    POST /api/jobs/{namespace}                 create a job: stage SCHEDULING, then RUNNING
    GET  /api/jobs/{namespace}/{id}            the job (JobInfo's JSON)
    GET  /api/jobs/{namespace}/{id}/logs       its log as SSE `data: {"data": line, "timestamp": ...}` events,
                                               streamed while it runs, closed when it ends
    POST /api/jobs/{namespace}/{id}/cancel     stage CANCELED

What a job does is the test's choice: `script` (lines, then a final stage and message) or `train` (the real
`python -m finetune train` on the run file the job was sent, as the container would run it, with /data being
a local folder: what the run's bucket folder holds). Buckets are files under `root/<namespace>/jobs-artifacts`:
`FakeApi` (an HfApi) keeps `sync_job_volume`, `list_bucket_tree` and `download_bucket_files` there, the one
part not spoken over HTTP here (the Hub uploads bucket files through its Xet storage protocol).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from huggingface_hub import HfApi
from huggingface_hub._buckets import BucketFile
from huggingface_hub._space_api import Volume

ROOT = Path(__file__).resolve().parents[1]
USER = "alice"
TOKEN = "hf_fake_token_of_alice"


def _now() -> str:
    return datetime.now(UTC).isoformat().replace("+00:00", "Z")


class Job:
    def __init__(self, server: FakeJobs, namespace: str, spec: dict):
        self.server, self.namespace, self.spec = server, namespace, spec
        self.id = f"{len(server.jobs) + 1:024x}"
        self.stage, self.message = "SCHEDULING", None
        self.lines: list[dict] = []
        self.changed = threading.Condition()
        self.proc: subprocess.Popen | None = None

    def info(self) -> dict:
        return {"id": self.id, "createdAt": _now(), "dockerImage": self.spec.get("dockerImage"),
                "command": self.spec.get("command"), "arguments": [], "environment": self.spec.get("environment"),
                "secrets": dict.fromkeys(self.spec.get("secrets") or {}, "***"), "flavor": self.spec.get("flavor"),
                "labels": self.spec.get("labels"), "volumes": self.spec.get("volumes"),
                "status": {"stage": self.stage, "message": self.message},
                "owner": {"id": "1", "name": self.namespace, "type": "user"}}

    def say(self, line: str) -> None:
        with self.changed:
            self.lines.append({"data": line, "timestamp": _now()})
            self.changed.notify_all()

    def end(self, stage: str, message: str | None = None) -> None:
        with self.changed:
            if self.stage not in ("COMPLETED", "CANCELED", "ERROR", "DELETED"):
                self.stage, self.message = stage, message
            self.changed.notify_all()

    def run(self, plan) -> None:
        time.sleep(self.server.scheduling_s)
        with self.changed:
            if self.stage == "CANCELED":
                return
            self.stage = "RUNNING"
        self.say("===== Job started at " + _now() + " =====")
        if plan["kind"] == "script":
            for line in plan["lines"]:
                if self.stage != "RUNNING":
                    return
                self.say(line)
                time.sleep(plan.get("pause", 0.01))
            self.end(plan.get("stage", "COMPLETED"), plan.get("message"))
        else:
            self._train()

    def _train(self) -> None:
        """The container's command, here: the run file from FINETUNE_RUN, /data a folder of the fake bucket."""
        env = self.spec["environment"]
        data = self.server.bucket_folder(self.namespace, self.spec["volumes"][1]["path"])
        run = Path(data).parent / f"{self.id}.yaml"
        run.write_text(env["FINETUNE_RUN"].replace("output_dir: /data", f"output_dir: {data}"), encoding="utf-8")
        resume = ["--resume"] if self.spec["command"][-1].endswith("--resume") else []
        child_env = {k: v for k, v in os.environ.items() if k not in ("FINETUNE_SERVING",)}
        child_env.update({k: v for k, v in env.items() if k != "FINETUNE_RUN"})
        child_env.update(PYTHONPATH=str(ROOT), HF_HUB_OFFLINE="1")   # the container's network is not the test's
        self.proc = subprocess.Popen([sys.executable, "-m", "finetune", "train", str(run), *resume], cwd=ROOT,
                                     env=child_env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        for line in self.proc.stdout:
            self.say(line.rstrip("\n"))
        code = self.proc.wait()
        if self.stage == "RUNNING":
            self.end("COMPLETED" if code == 0 else "ERROR", None if code == 0 else f"exit code {code}")


class FakeJobs:
    """The server. `plan` says what the next job created does: {"kind": "script", "lines": [...], "stage",
    "message", "pause"} or {"kind": "train"}."""

    def __init__(self, root: Path, plan: dict | None = None, scheduling_s: float = 0.2):
        self.root, self.plan, self.scheduling_s = Path(root), plan or {"kind": "train"}, scheduling_s
        self.jobs: dict[str, Job] = {}
        self.cancels: list[str] = []
        self.requests: list[tuple[str, str]] = []
        self.hardware: list[dict] = []   # what GET /api/jobs/hardware lists
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def bucket_folder(self, namespace: str, path: str) -> Path:
        folder = self.root / namespace / "jobs-artifacts" / path
        folder.mkdir(parents=True, exist_ok=True)
        return folder

    def close(self) -> None:
        for job in self.jobs.values():
            job.end("CANCELED")
            if job.proc and job.proc.poll() is None:
                job.proc.kill()
        self.httpd.shutdown()
        self.httpd.server_close()


def _handler(server: FakeJobs):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.0"   # a streamed body ends when the connection closes

        def log_message(self, *args):
            pass

        def _json(self, body, code: int = 200) -> None:
            data = json.dumps(body).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _authorised(self) -> bool:
            if self.headers.get("authorization") != f"Bearer {TOKEN}":
                self._json({"error": "Invalid credentials in Authorization header"}, 401)
                return False
            return True

        def do_GET(self):
            server.requests.append(("GET", self.path))
            if not self._authorised():
                return None
            path = self.path.split("?")[0]
            if path == "/api/whoami-v2":
                return self._json({"name": USER, "type": "user", "auth": {"accessToken": {"role": "write"}}})
            if path == "/api/jobs/hardware":
                return self._json(server.hardware)
            m = re.fullmatch(r"/api/jobs/([^/]+)/([^/]+)(/logs)?", path)
            job = server.jobs.get(m.group(2)) if m else None
            if job is None:
                return self._json({"error": "Job not found"}, 404)
            if not m.group(3):
                return self._json(job.info())
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.end_headers()
            sent = 0
            while True:
                with job.changed:
                    while sent == len(job.lines) and job.stage in ("SCHEDULING", "RUNNING"):
                        job.changed.wait(0.5)
                    lines, done = job.lines[sent:], job.stage not in ("SCHEDULING", "RUNNING")
                for event in lines:
                    self.wfile.write(f"data: {json.dumps(event)}\n\n".encode())
                sent += len(lines)
                self.wfile.flush()
                if done:
                    return None

        def do_POST(self):
            server.requests.append(("POST", self.path))
            if not self._authorised():
                return None
            body = self.rfile.read(int(self.headers.get("content-length") or 0))
            m = re.fullmatch(r"/api/jobs/([^/]+)(?:/([^/]+)/cancel)?", self.path)
            if not m:
                return self._json({"error": "not found"}, 404)
            if m.group(2):
                job = server.jobs.get(m.group(2))
                if job is None:
                    return self._json({"error": "Job not found"}, 404)
                server.cancels.append(job.id)
                job.end("CANCELED")
                if job.proc and job.proc.poll() is None:
                    job.proc.terminate()   # the container is stopped: SIGTERM first
                return self._json({})
            job = Job(server, m.group(1), json.loads(body))
            server.jobs[job.id] = job
            threading.Thread(target=job.run, args=(server.plan,), daemon=True).start()
            return self._json(job.info())

    return Handler


class FakeApi(HfApi):
    """HfApi against the fake server at `url`, with the bucket methods kept in folders under `root` (the
    server's: FakeApi(server.url, server.root), also from another process)."""

    def __init__(self, url: str, root: str | Path):
        super().__init__(endpoint=url, token=TOKEN)
        self.root = Path(root)
        self.synced: list[tuple[str, str]] = []

    def sync_job_volume(self, source, mount_path, *, remote_name=None, read_only=True, namespace=None, token=None):
        assert token == TOKEN, "the job's files are uploaded with the launcher's token"
        target = self.root / namespace / "jobs-artifacts" / remote_name
        target.mkdir(parents=True, exist_ok=True)
        shutil.copytree(source, target, dirs_exist_ok=True)
        self.synced.append((namespace, remote_name))
        return Volume(type="bucket", source=f"{namespace}/jobs-artifacts", mount_path=mount_path, path=remote_name,
                      read_only=read_only)

    def list_bucket_tree(self, bucket_id, prefix=None, *, recursive=None, token=None):
        base = self.root / bucket_id
        for path in sorted((base / (prefix or "")).rglob("*")):
            if path.is_file():
                yield BucketFile(type="file", path=str(path.relative_to(base)), size=path.stat().st_size, xetHash="0")

    def download_bucket_files(self, bucket_id, files, *, raise_on_missing_files=False, token=None):
        base = self.root / bucket_id
        for remote, local in files:
            Path(local).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(base / (remote.path if isinstance(remote, BucketFile) else remote), local)
