"""The job manager runs the real training job (`python -m finetune train`) on the built-in demo, a few steps
at a time: queueing, cancelling, a killed job, and a new manager taking over from an old one.

Each job spends most of its seconds importing torch, transformers, peft and trl, so the tests start as
few as they can and cancel or kill a job as soon as it has shown what they check.
"""

import os
import signal
import subprocess
import sys
import time

import pytest

from finetune.errors import RunFileError
from finetune.jobs import UnknownRun, report
from finetune.jobs.process import LOST
from finetune.train.runfolder import RunFolder

JOB_TIMEOUT = 240  # seconds for one job, start-up included, on a slow two-core machine


def demo_run(max_steps: int, seed: int = 42) -> str:
    return (f"model: {{name_or_path: demo}}\nlora: {{r: 4, lora_alpha: 8}}\ndata: {{path: demo, max_length: 64}}\n"
            f"training: {{max_steps: {max_steps}, per_device_train_batch_size: 2, gradient_accumulation_steps: 1, "
            f"logging_steps: 1, save_steps: 1000, seed: {seed}}}\n")


def wait_for(predicate, timeout=JOB_TIMEOUT, what="condition"):
    deadline = time.monotonic() + timeout
    while not (value := predicate()):
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)
    return value


def test_invalid_run_is_refused_before_anything_is_made(job_managers, tmp_path):
    manager = job_managers()
    with pytest.raises(RunFileError) as err:
        manager.submit("lora: {r: 0, lora_dropout: 2}")
    assert any(p.startswith("lora.r:") for p in err.value.problems)
    assert any(p.startswith("lora.lora_dropout:") for p in err.value.problems)
    with pytest.raises(RunFileError, match=r'lora.target_modules: "q_projj" matches no module'):
        manager.submit(demo_run(2).replace("lora: {", "lora: {target_modules: [q_projj], "))
    assert manager.list_runs() == []


def test_unknown_or_unsafe_run_ids_raise(job_managers):
    manager = job_managers()
    (manager.runs_dir / "notes").mkdir()  # a folder, but not a run
    for run_id in ("nope", "notes", "../runs", "/etc", ".jobs.lock", "", None):
        with pytest.raises(UnknownRun):
            manager.status(run_id)
    for cancel in ("nope", "notes"):
        with pytest.raises(KeyError):  # UnknownRun is a KeyError
            manager.cancel(cancel)
    assert manager.list_runs() == []


@pytest.mark.slow
def test_jobs_queue_run_in_order_and_report_losses(job_managers):
    manager = job_managers()
    bad_data = demo_run(2).replace("data: {path: demo", "data: {path: /nowhere/data.jsonl")  # found by the job's setup
    runs = [manager.submit(text) for text in (demo_run(3, seed=1), demo_run(2, seed=2), bad_data, demo_run(2))]
    first, second, bad, fourth = runs
    assert sorted(runs) == runs  # ids sort in submission order
    assert manager.status(first)["state"] == "running" and manager.status(first)["pid"]
    assert [manager.queue_position(r) for r in runs] == [None, 1, 2, 3]
    queued = manager.status(second)
    assert queued["state"] == "queued" and queued["queue_position"] == 1 and queued["losses"] == []

    assert manager.cancel(fourth)["state"] == "cancelled"  # a queued job is cancelled without ever starting
    assert manager.queue_position(bad) == 2

    done = manager.wait(first, timeout=JOB_TIMEOUT)
    assert done["state"] == "completed", manager.log_tail(first)
    assert [step for step, _ in done["losses"]] == [1, 2, 3] and done["tokens_per_second"] > 0
    assert all(loss > 0 for _, loss in done["losses"]) and done["elapsed_s"] > 0 and done["eta_s"] == 0
    assert (RunFolder(manager.runs_dir / first).adapter_dir / "adapter_config.json").is_file()
    assert "step 3/3" in manager.log_tail(first)

    done = manager.wait(second, timeout=JOB_TIMEOUT)  # started by the manager's thread when the first ended
    assert done["state"] == "completed" and len(done["losses"]) == 2, manager.log_tail(second)
    assert done["started_at"] >= manager.status(first)["updated_at"] - 1

    failed = manager.wait(bad, timeout=JOB_TIMEOUT)  # exit code 2: its `error:` lines become the error
    assert failed["state"] == "failed" and "/nowhere/data.jsonl" in failed["error"]

    fourth_folder = RunFolder(manager.runs_dir / fourth)
    assert fourth_folder.read_status()["state"] == "cancelled" and not fourth_folder.log_file.exists()
    assert [r["run_id"] for r in manager.list_runs()] == runs[::-1]


@pytest.mark.slow
def test_a_job_killed_with_sigkill_is_reported_failed(job_managers):
    manager = job_managers()
    run_id = manager.submit(demo_run(200))
    pid = manager.status(run_id)["pid"]
    os.killpg(pid, signal.SIGKILL)
    status = manager.wait(run_id, timeout=30)
    assert status["state"] == "failed" and "SIGKILL" in status["error"]


@pytest.mark.slow
def test_a_new_manager_marks_a_job_whose_process_is_gone_failed(job_managers, tmp_path):
    folder = RunFolder(tmp_path / "runs" / "20260101-000000-demo-r4")
    folder.run_yaml.parent.mkdir(parents=True)
    folder.run_yaml.write_text(demo_run(3))
    ended = subprocess.Popen([sys.executable, "-c", "pass"])
    ended.wait()  # a pid that no longer runs
    folder.write_status(state="running", pid=ended.pid, step=1, max_steps=3)
    status = job_managers().status(folder.path.name)
    assert status["state"] == "failed" and status["error"] == LOST


@pytest.mark.slow
def test_a_new_manager_reattaches_runs_the_queue_and_cancels(job_managers):
    old = job_managers()
    first, second = old.submit(demo_run(500)), old.submit(demo_run(500, seed=2))
    wait_for(lambda: old.status(first)["losses"], what="the first loss")  # training, not still importing
    old.shutdown()  # the app goes away; its job does not

    new = job_managers()
    assert [(r["run_id"], r["state"]) for r in new.list_runs()] == [(second, "queued"), (first, "running")]
    time.sleep(1)  # a few polls: the new manager must not take the live job for a dead one
    assert new.status(first)["state"] == "running" and new.queue_position(second) == 1

    os.killpg(new.status(first)["pid"], signal.SIGKILL)  # not the new manager's child: no exit code to read
    killed = new.wait(first, timeout=30)
    assert killed["state"] == "failed" and killed["error"] == LOST and killed["losses"]

    wait_for(lambda: new.status(second)["losses"], what="the queued job's first loss")
    started = time.monotonic()
    assert new.cancel(second)["state"] == "running"  # returns at once; the job stops at the end of its step
    stopped = new.wait(second, timeout=60)
    assert stopped["state"] == "cancelled" and not stopped["error"], new.log_tail(second)
    assert time.monotonic() - started < 30  # it stopped on SIGTERM, without waiting for SIGKILL
    assert (RunFolder(new.runs_dir / second).adapter_dir / "adapter_config.json").is_file()


@pytest.mark.slow
def test_a_job_that_ignores_sigterm_is_killed_only_when_forced(job_managers):
    # A stand-in for a job hung where no signal handler runs (the real job always stops on SIGTERM).
    # Killing throws away the save a cancel asks for, so it is never automatic (issue #7): after
    # cancel_timeout the status offers it, and cancel(force=True) does it.
    manager = job_managers(hung=True, cancel_timeout=1)
    run_id = manager.submit(demo_run(2))
    wait_for(lambda: manager.log_tail(run_id), timeout=30, what="the stand-in to start")
    started = time.monotonic()
    status = manager.cancel(run_id)
    assert status["state"] == "running" and status["stopping"] and time.monotonic() - started < 1
    wait_for(lambda: manager.status(run_id)["force_available"], timeout=10, what="force to be offered")
    assert manager.cancel(run_id)["state"] == "running"   # a second cancel is a no-op, not a kill
    stopped = manager.cancel(run_id, force=True)
    assert stopped["state"] == "cancelled" and stopped["forced"] and "without saving" in stopped["error"]


def test_time_left_follows_the_training_pace_not_the_loading_time():
    now = time.time()
    status = {"state": "running", "started_at": now - 60, "training_started_at": now - 10, "start_step": 0,
              "step": 10, "max_steps": 30}
    elapsed, eta = report.timing(status)
    assert elapsed == pytest.approx(60, abs=1) and eta == pytest.approx(20, abs=1)  # 1 s a step, 20 steps left
    resumed = {**status, "start_step": 5}  # a resumed run: only the steps trained in this process count
    assert report.timing(resumed)[1] == pytest.approx(40, abs=1)
    assert report.timing({**status, "state": "completed", "finished_at": now})[1] == 0.0
