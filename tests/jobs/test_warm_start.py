"""Jobs forked from the warm process (finetune/jobs/warm.py): they train as a fresh process would, are
watched, cancelled and re-attached by their pid, and a job whose environment differs from the warm
process's starts cold."""

import json
import os
import time
from pathlib import Path

import psutil
import pytest

from finetune.jobs import JobManager
from finetune.jobs.process import is_job_process
from finetune.jobs.warm import WarmStarter
from finetune.train.runfolder import RunFolder

pytestmark = pytest.mark.slow   # each trains, or starts the warm process

SHORT = "model: {name_or_path: demo}\nlora: {r: 4}\ndata: {path: demo}\ntraining: {max_steps: 6, logging_steps: 1}\n"
LONG = ("model: {name_or_path: demo}\nlora: {r: 4}\ndata: {path: demo}\n"
        "training: {max_steps: 5000, logging_steps: 1, save_steps: 100000, per_device_train_batch_size: 1}\n")


def wait_for(check, timeout: float = 120, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, what
        time.sleep(0.1)


@pytest.fixture(scope="module")
def manager(tmp_path_factory):
    with pytest.MonkeyPatch.context() as env:
        env.delenv("OMP_NUM_THREADS", raising=False)   # set by an earlier test's launch: the job would keep it
        jobs = JobManager(tmp_path_factory.mktemp("warm") / "runs", poll_interval=0.2, cancel_timeout=60)
        assert jobs.warm_up()
        wait_for(lambda: jobs._warm._is_ready() or jobs._warm.ready is False, 180, "the warm process never got ready")
        assert jobs._warm.ready, jobs._warm.why
        yield jobs
        jobs.shutdown(cancel_jobs=True)


def status_file(manager, run_id) -> dict:
    return json.loads((manager.runs_dir / run_id / "status.json").read_text())


def test_a_warm_job_trains_to_completion_with_its_log(manager):
    run_id = manager.submit(SHORT)
    status = manager.wait(run_id, timeout=120)
    assert status["state"] == "completed", manager.log_tail(run_id)
    assert status_file(manager, run_id)["warm"] is True
    steps = [m["step"] for m in manager.metrics(run_id) if "loss" in m]
    assert steps == list(range(1, 7))
    log = manager.log_tail(run_id, 100_000)
    assert "checking the settings" in log and "completed: adapter saved" in log
    assert "one core left to the app" in log   # FINETUNE_SERVING reached the child's environment
    assert (manager.runs_dir / run_id / "adapter" / "adapter_config.json").is_file()


def test_a_warm_job_is_watched_cancelled_and_reattached_by_its_pid(manager, tmp_path):
    run_id = manager.submit(LONG)
    folder = RunFolder(manager.runs_dir / run_id)
    wait_for(lambda: (manager.status(run_id).get("step") or 0) >= 2, 120, manager.log_tail(run_id))
    pid = status_file(manager, run_id)["pid"]
    job = psutil.Process(pid)
    assert job.ppid() == manager._warm.proc.pid        # forked, not started fresh
    assert os.getpgid(pid) == pid                      # its own group: a cancel signals it alone
    assert is_job_process(pid, folder)                 # named by its pid and start time...
    assert not is_job_process(os.getpid(), folder)     # ...which another process does not match

    other = JobManager(manager.runs_dir, poll_interval=0.2)   # a second manager, not the runner, reads it
    try:
        assert other.status(run_id)["state"] == "running"
        other.cancel(run_id)
        status = manager.wait(run_id, timeout=120)
    finally:
        other.shutdown()
    assert status["state"] == "cancelled", manager.log_tail(run_id)
    assert list(folder.path.glob("checkpoint-*")), "a graceful cancel saves a checkpoint"
    wait_for(lambda: not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE, 30)


def test_a_job_whose_environment_differs_starts_cold(manager, monkeypatch):
    monkeypatch.setenv("HF_HUB_DISABLE_PROGRESS_BARS", "1")   # read by huggingface_hub at import
    run_id = manager.submit(SHORT)
    assert manager.wait(run_id, timeout=240)["state"] == "completed", manager.log_tail(run_id)
    assert status_file(manager, run_id)["warm"] is False
    assert "HF_HUB_DISABLE_PROGRESS_BARS" in status_file(manager, run_id)["cold_start"]


def test_a_failing_warm_job_says_why(manager, tmp_path):
    data = tmp_path / "broken.jsonl"
    data.write_text('{"text": "fine"}\nnot json at all\n')
    run_id = manager.submit(f"model: {{name_or_path: demo}}\ndata: {{path: {data}}}\ntraining: {{max_steps: 2}}\n")
    status = manager.wait(run_id, timeout=120)
    assert status["state"] == "failed"
    assert status_file(manager, run_id)["warm"] is True
    assert status["error"] and "broken.jsonl" in status["error"] + manager.log_tail(run_id, 100_000)


def test_only_module_commands_in_the_same_environment_are_forked(tmp_path):
    starter = WarmStarter.__new__(WarmStarter)   # the rules alone, without a process
    starter.env = {"HF_HOME": "/a", "CUDA_VISIBLE_DEVICES": "0", "FINETUNE_X": "1"}
    assert starter._changed({"HF_HOME": "/a", "CUDA_VISIBLE_DEVICES": "3"}) == []   # read by CUDA in the child
    assert starter._changed({"HF_HOME": "/a", "FINETUNE_X": "2"}) == []   # the child gets it, nothing read it yet
    assert starter._changed({"HF_HOME": "/b"}) == ["HF_HOME"]
    assert starter._changed({"HF_HOME": "/a", "OMP_NUM_THREADS": "1"}) == ["OMP_NUM_THREADS"]
    assert starter.spawn(["python", "script.py", "run.yaml"], tmp_path / "log", tmp_path, {}) is None


def test_the_switch_turns_it_off(tmp_path, monkeypatch):
    monkeypatch.setenv("FINETUNE_WARM_JOBS", "0")
    jobs = JobManager(tmp_path / "runs")
    try:
        assert not jobs.warm_up() and jobs._warm is None
    finally:
        jobs.shutdown()


# Counts, in a fresh interpreter, the calls of torch's CUDA queries made while the warm process's imports run.
# On this CPU machine no call initialises anything; on a GPU machine any of them would initialise the CUDA
# driver (or torch's lazy CUDA state) in the process the jobs are forked from, which the children cannot use.
CUDA_QUERIES = """
import json, sys, traceback
import torch, torch.cuda as cuda
calls = []
for name in ("is_available", "device_count", "_lazy_init", "init", "get_device_capability",
             "get_device_properties", "current_device", "is_bf16_supported", "mem_get_info", "set_device"):
    real = getattr(cuda, name)
    def spy(*a, _real=real, _name=name, **k):
        calls.append([_name, traceback.format_stack(limit=4)[0].strip()])
        return _real(*a, **k)
    setattr(cuda, name, spy)
from finetune.jobs.warm import warm_imports
warm_imports(gpu=sys.argv[1] == "gpu")
print(json.dumps(calls))
"""


@pytest.mark.parametrize("machine", ["gpu", "cpu"])
def test_the_warm_imports_on_a_gpu_machine_never_query_cuda(machine):
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-c", CUDA_QUERIES, machine], capture_output=True, text=True,
                         timeout=300, env=dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[2])))
    assert out.returncode == 0, out.stderr[-2000:]
    calls = json.loads(out.stdout.strip().splitlines()[-1])
    if machine == "gpu":
        assert calls == [], calls
    else:   # the CPU set imports peft, whose bitsandbytes queries CUDA at import: the spy sees it
        assert any(name in ("is_available", "device_count") for name, _ in calls), calls
