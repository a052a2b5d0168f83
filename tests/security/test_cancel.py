"""Threat: a second Cancel (a double click, an impatient user, a retrying script) threw away the graceful
save the first one asked for: "SIGTERM again: stopping now, without saving", no adapter, nothing in the
status. Cancel is now idempotent; only an explicit force kills without saving, and the status says so."""

import os
import signal
import sys
import time

import gradio as gr
import pytest

from finetune.jobs.cancel import FORCED
from finetune.jobs.process import is_job_process
from finetune.train.runfolder import RunFolder
from finetune.train.stopping import Stopper


def test_a_second_signal_during_a_graceful_stop_changes_nothing(capsys):
    stopper = Stopper().install()
    try:
        stopper.training()   # training has begun: a signal asks for a stop after the step
        os.kill(os.getpid(), signal.SIGTERM)
        os.kill(os.getpid(), signal.SIGTERM)   # raised Cancelled (stop without saving) before the fix
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(0.05)
    finally:
        stopper.uninstall()
    assert stopper.requested and stopper.signal_name == "SIGTERM"
    out = capsys.readouterr().out
    assert out.count("already stopping") == 2 and "without saving" not in out.split("\n")[0]


def demo_run(max_steps: int) -> str:
    return ("lora: {r: 4, lora_alpha: 8}\ndata: {path: demo, max_length: 64}\n"
            f"training: {{max_steps: {max_steps}, per_device_train_batch_size: 2, gradient_accumulation_steps: 1,"
            " logging_steps: 1, save_steps: 1000}\n")


def wait_for(predicate, timeout, what):
    deadline = time.monotonic() + timeout
    while not (value := predicate()):
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)
    return value


@pytest.mark.slow
def test_cancelling_twice_still_saves_the_adapter(job_managers):
    jobs = job_managers()
    run_id = jobs.submit(demo_run(2000))
    wait_for(lambda: jobs.status(run_id)["step"] >= 2, 240, "training to start")
    first, second = jobs.cancel(run_id), jobs.cancel(run_id)
    assert first["stopping"] and second["stopping"] and second["state"] == "running"
    jobs.cancel(run_id)
    stopped = jobs.wait(run_id, timeout=120)
    folder = RunFolder(jobs.runs_dir / run_id)
    assert stopped["state"] == "cancelled" and not stopped["error"], jobs.log_tail(run_id)
    assert (folder.adapter_dir / "adapter_config.json").is_file(), jobs.log_tail(run_id)
    assert jobs.log_tail(run_id).count("SIGTERM") == 1   # one request reached the job, not three


@pytest.mark.slow
def test_force_kills_at_once_and_the_status_says_nothing_was_saved(job_managers):
    jobs = job_managers(hung=True, cancel_timeout=0.5)   # a stand-in that ignores SIGTERM (tests/conftest.py)
    run_id = jobs.submit(demo_run(2))
    wait_for(lambda: jobs.log_tail(run_id), 60, "the stand-in to start")
    assert not jobs.status(run_id)["force_available"]
    jobs.cancel(run_id)
    time.sleep(2)   # the old manager killed it by itself after cancel_timeout; now only force does
    assert jobs.status(run_id)["state"] == "running" and jobs.status(run_id)["force_available"]
    started = time.monotonic()
    stopped = jobs.cancel(run_id, force=True)
    assert time.monotonic() - started < 5
    assert stopped["state"] == "cancelled" and stopped["error"] == FORCED and stopped["forced"] is True
    assert not is_job_process(stopped["pid"], RunFolder(jobs.runs_dir / run_id))


@pytest.mark.slow
def test_the_page_offers_force_stop_only_once_the_graceful_stop_is_overdue(tmp_path, monkeypatch):
    """The real handlers behind #force-cancel, on a job that ignores SIGTERM (a stand-in for a hung one)."""
    from finetune.ui import build_app

    monkeypatch.chdir(tmp_path)
    demo, jobs = build_app(tmp_path / "runs")
    try:
        button = next(b for b in demo.blocks.values() if getattr(b, "elem_id", None) == "force-cancel")
        assert not button.visible
        fns = {f.fn.__name__: f.fn for f in demo.fns.values() if hasattr(f.fn, "__name__")}
        jobs.command = [sys.executable, "-c", "import signal, time; signal.signal(signal.SIGTERM, "
                        "signal.SIG_IGN); print('hung', flush=True); time.sleep(120)"]
        jobs.cancel_timeout = 0.5
        run_id = jobs.submit(demo_run(2))
        wait_for(lambda: jobs.log_tail(run_id), 60, "the stand-in to start")
        assert fns["offer"](run_id, False) == gr.skip()   # running, no cancel asked yet: the button stays hidden
        jobs.cancel(run_id)
        time.sleep(1)
        assert fns["offer"](run_id, False)[button].visible is True
        answer = fns["force"](run_id, None)
        assert answer[button].visible is False and jobs.status(run_id)["forced"] is True
    finally:
        jobs.shutdown()


def test_a_run_resumed_right_after_its_cancel_is_not_stopping(job_managers, tmp_path):
    """The cancel that ended the last job left its mark; a job resumed within a second of it read as
    'stopping' (the mark's one-second slack), and the page disabled its Cancel button."""
    # The job: a process that waits, standing in for the resumed training (the manager runs what it is told).
    jobs = job_managers(command=[sys.executable, "-c", "import time, sys; time.sleep(60)"])
    folder = RunFolder(tmp_path / "runs" / "r1")
    (folder.path / "checkpoint-2").mkdir(parents=True)
    (folder.path / "checkpoint-2" / "trainer_state.json").write_text('{"global_step": 2, "log_history": []}')
    (folder.path / "checkpoint-2" / "adapter_model.safetensors").write_bytes(b"weights")   # a complete checkpoint
    folder.run_yaml.write_text(demo_run(4))
    folder.write_status(state="cancelled", step=2, max_steps=4, submitted_at=time.time())
    (folder.path / ".cancel-requested").touch()   # the cancel that just ended it
    jobs.resume("r1")
    status = wait_for(lambda: (s := jobs.status("r1"))["state"] == "running" and s, 30, "the resumed job to start")
    assert not status["stopping"], status
    assert jobs.cancel("r1")["stopping"]   # and Cancel still works on it
