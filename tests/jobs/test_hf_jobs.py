"""Runs on Hugging Face Jobs (issue 21), up to the network boundary: the run file's `runner`, the request
`--dry-run` prints, and the follower against a fake Jobs service (tests/fake_hf_jobs.py) that answers as the
documented endpoints do: scheduling -> running with streamed log lines -> completed, an error, a timeout, a
cancel, a follower that dies in the middle and one that re-attaches."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from fake_hf_jobs import TOKEN, FakeApi, FakeJobs

from finetune.errors import RunFileError
from finetune.jobs import remote
from finetune.jobs.manager import JobManager
from finetune.runfile import parse_run
from finetune.train.runfolder import RunFolder

ROOT = Path(__file__).resolve().parents[2]
HF = "runner: {hf_jobs: {flavor: cpu-basic, timeout: 10m}}\n"


def echo(kind: str, record: dict) -> str:
    return f"@finetune {kind} {json.dumps(record)}"


SCRIPT = ["installing the requirements", echo("status", {"state": "running", "step": 0, "max_steps": 2, "pid": 1}),
          echo("metrics", {"step": 1, "loss": 2.5}), echo("metrics", {"step": 2, "loss": 2.0}),
          echo("sample", {"step": 2, "prompt": "p", "answer": "a"}),
          echo("status", {"state": "completed", "step": 2}), "completed: adapter saved to /data/adapter"]


@pytest.fixture(autouse=True)
def online(monkeypatch):
    """The tests run offline (conftest.py); the fake service on 127.0.0.1 is the one place these may reach."""
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):   # either one: the followers the job manager starts
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def service(tmp_path):
    server = FakeJobs(tmp_path / "hub", {"kind": "script", "lines": SCRIPT}, scheduling_s=0.05)
    yield server
    server.close()


def remote_run(out: Path, extra: str = ""):
    return parse_run(f"training: {{output_dir: {out}, max_steps: 2}}\n{extra}{HF}")


@pytest.fixture(autouse=True)
def launcher_token(monkeypatch):
    monkeypatch.setenv(remote.TOKEN_ENV, TOKEN)   # as the job manager hands it to a follower


def follow(service, out: Path, resume: bool = False, extra: str = "") -> int:
    return remote.main(remote_run(out, extra), resume=resume, api=FakeApi(service.url, service.root), poll=0.05)


def cli(*args, env=None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "finetune", *args], cwd=ROOT, capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, timeout=120)


# ----- the run file -----

def test_runner_is_local_unless_the_run_file_says_otherwise():
    run = parse_run("model: {name_or_path: demo}\n")
    assert not run.runner.remote and "runner" not in run.to_dict()
    run = parse_run("runner: {hf_jobs: {flavor: l40sx1, timeout: 90m}}\n")
    assert run.to_dict()["runner"]["hf_jobs"]["flavor"] == "l40sx1"
    assert parse_run(run.to_yaml()).runner == run.runner


@pytest.mark.parametrize("text, problem", [
    ("runner: gpu", "runner: must be `local` or a mapping {hf_jobs:"),
    ("runner: {hf_jobs: {flavor: a10g}}", 'runner.hf_jobs.flavor: must be one of "cpu-basic"'),
    ("runner: {hf_jobs: {timeout: 1m}}", "runner.hf_jobs.timeout: must be a duration from 5m to 7d"),
    ("runner: {hf_jobs: {timeout: 9d}}", "runner.hf_jobs.timeout: must be a duration from 5m to 7d"),
    ("runner: {hf_jobs: {namespace: 'a b'}}", "runner.hf_jobs.namespace: must be a Hugging Face user"),
    ("runner: {hf_jobs: {colour: red}}", "runner.hf_jobs.colour: unknown key"),
    ("data: {path: ./mine.jsonl}\nrunner: hf_jobs", 'data.path: "./mine.jsonl" is a file on this machine'),
])
def test_runner_problems_are_one_line_each(text, problem):
    with pytest.raises(RunFileError) as err:
        parse_run(text)
    assert len(err.value.problems) == 1 and err.value.problems[0].startswith(problem), err.value.problems


# ----- the request -----

def test_dry_run_prints_the_request_with_secret_names_only(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text("model: {name_or_path: demo}\ntraining: {max_steps: 3}\n"
                    "runner: {hf_jobs: {flavor: l4x1, timeout: 90m}}\n")
    done = cli("train", str(path), "--dry-run", env={"HF_TOKEN": "hf_must_not_be_printed"})
    assert done.returncode == 0, done.stderr
    assert "hf_must_not_be_printed" not in done.stdout + done.stderr
    request = json.loads(done.stdout)
    assert (request["flavor"], request["timeout"], request["secrets"]) == ("l4x1", 5400, ["HF_TOKEN"])
    assert request["command"][:2] == ["bash", "-c"] and "python -m finetune train /tmp/run.yaml" in request["command"][2]
    assert [(v["mountPath"], v["readOnly"]) for v in request["volumes"]] == [("/launchpad", True), ("/data", False)]
    sent = parse_run(request["env"]["FINETUNE_RUN"])   # the job trains it where it is, into the bucket folder
    assert not sent.runner.remote and sent.training.output_dir == "/data" and sent.training.max_steps == 3


def test_runner_flag_overrides_the_file_and_dry_run_needs_a_remote_run(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text("model: {name_or_path: demo}\n")
    done = cli("train", str(path), "--runner", "hf-jobs", "--dry-run")
    assert done.returncode == 0 and json.loads(done.stdout)["flavor"] == "a10g-small"
    done = cli("train", str(path), "--dry-run")
    assert done.returncode == 2 and done.stderr.strip().splitlines()[-1].startswith("error: --dry-run:")
    path.write_text("data: {path: ./mine.jsonl}\n")
    done = cli("train", str(path), "--runner", "hf-jobs", "--dry-run")
    assert done.returncode == 2 and "is a file on this machine" in done.stderr and "Traceback" not in done.stderr


# ----- following a job -----

def test_the_job_log_becomes_the_local_run_folder(service, tmp_path, capsys):
    out = tmp_path / "run"
    assert follow(service, out) == 0
    folder = RunFolder(out)
    status = folder.read_status()
    assert (status["state"], status["step"], status["error"]) == ("completed", 2, None)
    assert status["pid"] == os.getpid(), "the job's own pid is never taken: this machine signals its follower"
    assert status["hf_job"]["stage"] == "COMPLETED" and status["hf_job"]["lines"] == len(SCRIPT)
    assert [(m["step"], m["loss"]) for m in folder.read_metrics()] == [(1, 2.5), (2, 2.0)]
    assert [s["answer"] for s in folder.read_samples()] == ["a"]
    printed = capsys.readouterr().out   # the follower's output is train.log under the job manager
    assert "installing the requirements" in printed and "@finetune" not in printed
    posted = [path for method, path in service.requests if method == "POST"]
    assert posted == ["/api/jobs/alice"]


def test_a_failed_job_says_why(service, tmp_path):
    service.plan = {"kind": "script", "lines": [echo("status", {"state": "running", "step": 0}),
                                                echo("status", {"state": "failed", "error": "CUDA out of memory"})],
                    "stage": "ERROR", "message": "exit code 1"}
    assert follow(service, tmp_path / "run") == 1
    status = RunFolder(tmp_path / "run").read_status()
    assert status["state"] == "failed" and status["error"] == "on Hugging Face's machine: CUDA out of memory"


def test_a_job_past_its_timeout_says_what_to_change(service, tmp_path):
    service.plan = {"kind": "script", "lines": ["step 1/100"], "stage": "ERROR", "message": "Job timed out"}
    assert follow(service, tmp_path / "run") == 1
    error = RunFolder(tmp_path / "run").read_status()["error"]
    assert "runner.hf_jobs.timeout (10m)" in error and "longer timeout" in error


def test_hostile_log_lines_cannot_set_local_keys_or_break_the_folder(service, tmp_path):
    service.plan = {"kind": "script", "lines": [
        echo("status", {"state": "running", "step": 0, "pid": 1, "slots": [0, 1], "hf_job": {"id": "x"}}),
        "@finetune metrics [1, 2]", "@finetune metrics {not json", echo("metrics", {"step": "one", "loss": 1}),
        echo("status", {"step": "many"}), "@finetune " + "x" * 200_000, echo("metrics", {"step": 1, "loss": 1.0}),
        echo("status", {"state": "completed"})]}
    assert follow(service, tmp_path / "run") == 0
    folder = RunFolder(tmp_path / "run")
    status = folder.read_status()
    assert status["pid"] == os.getpid() and "slots" not in status and status["hf_job"]["id"] != "x"
    assert status["step"] == 0 and [m["step"] for m in folder.read_metrics()] == [1]


def test_cancel_cancels_the_remote_job(service, tmp_path):
    service.plan = {"kind": "script", "lines": [f"step {i}" for i in range(400)], "pause": 0.02}
    threading.Timer(1.0, os.kill, (os.getpid(), signal.SIGTERM)).start()
    previous = signal.getsignal(signal.SIGTERM)
    assert follow(service, tmp_path / "run") == 0
    assert signal.getsignal(signal.SIGTERM) is previous, "the follower gives the signal handlers back"
    status = RunFolder(tmp_path / "run").read_status()
    assert status["state"] == "cancelled" and status["hf_job"]["stage"] == "CANCELED"
    assert service.cancels == [status["hf_job"]["id"]]


def test_a_new_follower_re_attaches_without_copying_anything_twice(service, tmp_path):
    out = tmp_path / "run"
    assert follow(service, out) == 0
    folder = RunFolder(out)
    job = folder.read_status()["hf_job"]
    # As a follower that died after 4 lines leaves the folder: the job still running, 4 lines copied.
    folder.write_status(state="running", hf_job={**job, "stage": None, "lines": 4})
    service.jobs[job["id"]].lines.append({"data": "one more line", "timestamp": "2026-12-04T21:00:00Z"})
    before = len(service.requests)
    assert follow(service, out) == 0
    assert [m["step"] for m in folder.read_metrics()] == [1, 2]
    assert all(method == "GET" for method, _ in service.requests[before:]), "no second job was started"


def test_resume_starts_a_new_job_on_the_same_bucket_folder(service, tmp_path):
    out = tmp_path / "run"
    assert follow(service, out) == 0
    first = RunFolder(out).read_status()["hf_job"]
    assert follow(service, out, resume=True) == 0
    second = RunFolder(out).read_status()["hf_job"]
    assert second["id"] != first["id"] and second["volume"] == first["volume"]
    assert service.jobs[second["id"]].spec["command"][-1].endswith("--resume")


def test_on_a_space_a_run_needs_the_launchers_token(service, tmp_path, monkeypatch):
    monkeypatch.setenv("SPACE_ID", "someone/launchpad")
    monkeypatch.setenv("HF_TOKEN", TOKEN)   # the Space's own token: never used for someone's job
    monkeypatch.delenv(remote.TOKEN_ENV)
    with pytest.raises(RunFileError, match="the launching user's own token"):
        follow(service, tmp_path / "run")
    assert service.requests == []


def test_a_run_that_cannot_be_followed_again_says_where_its_job_is(service, tmp_path, monkeypatch):
    out = tmp_path / "run"
    assert follow(service, out) == 0
    folder = RunFolder(out)
    job = folder.read_status()["hf_job"]
    folder.write_status(state="running", hf_job={**job, "stage": None})   # the Space restarted mid-run
    monkeypatch.setenv("SPACE_ID", "someone/launchpad")
    monkeypatch.delenv(remote.TOKEN_ENV)
    assert follow(service, out) == 1
    status = folder.read_status()
    assert status["state"] == "failed" and job["url"] in status["error"] and job["volume"] in status["error"]


# ----- under the job manager -----

@pytest.fixture
def manager(service, tmp_path, monkeypatch):
    monkeypatch.setenv("FAKE_HF_JOBS_URL", service.url)
    monkeypatch.setenv("FAKE_HF_JOBS_ROOT", str(service.root))
    jobs = JobManager(tmp_path / "runs", slots=1, command=[sys.executable, str(ROOT / "tests" / "hf_follower.py")],
                      cwd=ROOT, poll_interval=0.1)
    yield jobs
    jobs.shutdown(cancel_jobs=True)


def test_the_manager_runs_a_remote_run_at_once_with_the_launchers_token(manager, service):
    assert manager.lease_slot("busy") is not None   # the one local slot is taken: a remote run needs none
    run_id = manager.submit(remote_run(Path("ignored")).to_yaml(), token=TOKEN)
    status = manager.wait(run_id, timeout=60)
    assert status["state"] == "completed" and status["losses"] == [[1, 2.5], [2, 2.0]]
    on_disk = [p for p in manager.runs_dir.rglob("*") if p.is_file() and TOKEN.encode() in p.read_bytes()]
    assert on_disk == [], "the launcher's token is kept in memory only"


def test_the_manager_re_attaches_when_the_follower_dies(manager, service):
    service.plan = {"kind": "script", "lines": [echo("metrics", {"step": i, "loss": 1.0}) for i in range(1, 61)]
                    + [echo("status", {"state": "completed"})], "pause": 0.05}
    run_id = manager.submit(remote_run(Path("ignored")).to_yaml(), token=TOKEN)
    deadline = time.monotonic() + 30
    while not (status := manager.status(run_id)).get("losses") and time.monotonic() < deadline:
        time.sleep(0.05)
    os.kill(status["pid"], signal.SIGKILL)   # the machine restarted under the follower
    status = manager.wait(run_id, timeout=60)
    assert status["state"] == "completed" and status["reattached"] == 1
    assert [s for s, _ in status["losses"]] == list(range(1, 61)), "every step once"
    assert [m for m, _ in service.requests].count("POST") == 1, "the same job, not a second one"


@pytest.mark.slow
def test_a_demo_run_trains_through_the_jobs_service_and_its_adapter_comes_back(tmp_path):
    server = FakeJobs(tmp_path / "hub", {"kind": "train"})
    try:
        out = tmp_path / "run"
        run = parse_run(f"training: {{output_dir: {out}, max_steps: 2, save_steps: 1}}\n{HF}")
        assert remote.main(run, api=FakeApi(server.url, server.root), poll=0.1) == 0
        folder = RunFolder(out)
        assert folder.read_status()["state"] == "completed" and [m["step"] for m in folder.read_metrics()] == [1, 2]
        assert (out / "adapter" / "adapter_model.safetensors").is_file()
        assert json.loads((out / "adapter" / "adapter_config.json").read_text())["peft_type"] == "LORA"
    finally:
        server.close()


def test_a_refused_submission_is_one_line_not_a_traceback(service, tmp_path, capsys, monkeypatch):
    out = tmp_path / "run"
    monkeypatch.setenv(remote.TOKEN_ENV, "hf_not_a_valid_token")
    assert remote.main(remote_run(out), api=FakeApi(service.url, service.root), poll=0.05) == 1
    error = RunFolder(out).read_status()["error"]
    assert error.startswith("Hugging Face did not start the job: ") and "\n" not in error
    assert "Traceback" not in capsys.readouterr().out


def test_train_on_a_run_file_that_says_hf_jobs_follows_a_job_and_never_trains_here(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text(f"training: {{output_dir: {tmp_path / 'out'}, max_steps: 2}}\n{HF}")
    done = cli("train", str(path), env={remote.TOKEN_ENV: TOKEN, "HF_HUB_OFFLINE": "1"})
    assert done.returncode == 1 and "training:" not in done.stdout, done.stdout   # no local training started
    status = RunFolder(tmp_path / "out").read_status()
    assert status["runner"] == "hf_jobs" and status["error"].startswith("Hugging Face did not start the job")


def test_prices_come_from_the_hub_when_it_answers(service):
    from finetune.jobs.hf_jobs import live_prices

    service.hardware = [
        {"name": "a10g-small", "prettyName": "Nvidia A10G - small", "cpu": "4 vCPU", "ram": "15 GB",
         "accelerator": {"type": "gpu", "model": "A10G", "quantity": "1", "vram": "24 GB", "manufacturer": "Nvidia"},
         "unitCostMicroUSD": 18334, "unitCostUSD": 0.018334, "unitLabel": "minute"},
        {"name": "cpu-basic", "prettyName": "CPU Basic", "cpu": "2 vCPU", "ram": "16 GB", "accelerator": None,
         "unitCostMicroUSD": 167, "unitCostUSD": 0.000167, "unitLabel": "minute"}]
    assert live_prices(FakeApi(service.url, service.root)) == {"a10g-small": 1.1, "cpu-basic": 0.01}
    service.hardware = {"error": "not a list"}
    assert live_prices(FakeApi(service.url, service.root)) == {}   # a price list is never a reason to fail


def test_cancel_from_the_manager_cancels_the_job_on_hugging_face(manager, service):
    service.plan = {"kind": "script", "lines": [echo("metrics", {"step": i, "loss": 1.0}) for i in range(1, 400)],
                    "pause": 0.05}
    run_id = manager.submit(remote_run(Path("ignored")).to_yaml(), token=TOKEN)
    deadline = time.monotonic() + 30
    while not manager.status(run_id).get("losses") and time.monotonic() < deadline:
        time.sleep(0.05)
    manager.cancel(run_id)
    status = manager.wait(run_id, timeout=60)
    assert status["state"] == "cancelled" and service.cancels == [status["hf_job"]["id"]]
    assert status["hf_job"]["stage"] == "CANCELED" and len(status["losses"]) < 399
