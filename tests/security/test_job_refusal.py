"""Threat: a job that refuses its settings at start (a text .jsonl given as `format: chat`, a run.yaml its
validation refuses) showed in `/status` as "the job's process ended without a final status (killed?)": the
job printed its reason to train.log and exited 2, but a job forked from the warm process is not the
manager's child, so the manager had no exit code and ignored the log. Now the job writes state `failed` with
its own one-line reason before it exits 2, and where it could not, the manager reads the `error:` lines the
job printed (its own: not an earlier attempt's in the same train.log).
"""

import json
import time

import pytest

from finetune.jobs.process import LOST, exit_reason
from finetune.train.runfolder import RunFolder

CHAT_ERROR = 'data.format: "chat" needs the column(s) messages'


def text_data(tmp_path):
    path = tmp_path / "plain.jsonl"
    path.write_text("".join(json.dumps({"text": f"line {i}"}) + "\n" for i in range(8)), encoding="utf-8")
    return path


def manager_folder(tmp_path, run_yaml: str) -> RunFolder:
    """A run folder as the job manager leaves it when it starts the job: run.yaml, state running, no pid yet."""
    folder = RunFolder(tmp_path / "runs" / "20260101-000000-demo-r4")
    folder.path.mkdir(parents=True)
    folder.run_yaml.write_text(run_yaml + f"training: {{output_dir: {folder.path}, max_steps: 2}}\n")
    folder.write_status(state="running", step=0, submitted_at=time.time(), started_at=time.time())
    return folder


def test_the_manager_reads_the_jobs_own_error_lines_when_it_has_no_exit_code(tmp_path):
    folder = RunFolder(tmp_path / "run")
    folder.path.mkdir()
    folder.log_file.write_text("run: run.yaml; checking the settings, the model and the data\n"
                               "error: lora.r: must be a whole number >= 1, got 0\n"   # an earlier attempt's
                               "run: run.yaml, resuming from its last checkpoint; checking the settings\n"
                               f"error: {CHAT_ERROR}; \"plain.jsonl\" has text\n"
                               "error: data.max_length: must be a whole number >= 1, got 0\n")
    # a warm job (or one re-attached after a restart) is not the manager's child: no exit code
    reason = exit_reason(folder, None)
    assert reason == f'{CHAT_ERROR}; "plain.jsonl" has text; data.max_length: must be a whole number >= 1, got 0'
    assert exit_reason(folder, 2) == reason
    folder.log_file.write_text("run: run.yaml; checking the settings\nstep 1/2  loss 2.0\n")
    assert exit_reason(folder, None) == LOST   # nothing said: killed, as far as anyone can tell


@pytest.mark.slow
def test_a_job_refusing_its_data_says_why_in_its_status(tmp_path, capsys):
    from finetune.train.job import main

    folder = manager_folder(tmp_path, f"model: {{name_or_path: demo}}\n"
                                      f"data: {{path: {text_data(tmp_path)}, format: chat}}\n")
    assert main(str(folder.run_yaml)) == 2
    assert CHAT_ERROR in capsys.readouterr().err
    status = folder.read_status()
    assert status["state"] == "failed" and status["error"].startswith(CHAT_ERROR), status   # was "running"
    assert "\n" not in status["error"] and status["finished_at"]


@pytest.mark.slow
def test_a_run_yaml_its_validation_refuses_says_why_in_its_status(tmp_path):
    from finetune.train.job import main

    folder = manager_folder(tmp_path, "model: {name_or_path: demo}\nlora: {r: 0}\ndata: {path: demo}\n")
    assert main(str(folder.run_yaml)) == 2
    status = folder.read_status()
    assert status["state"] == "failed" and status["error"].startswith("lora.r: "), status


@pytest.mark.slow
def test_a_refusal_leaves_a_finished_runs_status_as_it_was(tmp_path):
    """`train RUN` again on a folder holding a completed run is refused: that run's record stands."""
    from finetune.train.job import main

    folder = manager_folder(tmp_path, "model: {name_or_path: demo}\ndata: {path: demo}\n")
    folder.write_status(state="completed", step=2, max_steps=2, pid=123456)
    (folder.path / "adapter").mkdir()
    assert main(str(folder.run_yaml)) == 2
    assert folder.read_status()["state"] == "completed" and folder.read_status().get("error") is None


@pytest.mark.slow
def test_a_warm_job_refusing_its_settings_is_failed_with_its_reason(tmp_path, monkeypatch):
    from finetune.jobs import JobManager

    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)   # set by an earlier test's launch: the job keeps it
    manager = JobManager(tmp_path / "runs", slots=1, cwd=tmp_path, poll_interval=0.2)
    try:
        assert manager.warm_up()
        deadline = time.monotonic() + 180
        while not manager._warm._is_ready() and manager._warm.ready is not False:
            assert time.monotonic() < deadline, "the warm process never got ready"
            time.sleep(0.2)
        assert manager._warm.ready, manager._warm.why
        run_id = manager.submit(f"model: {{name_or_path: demo}}\ndata: {{path: {text_data(tmp_path)}, "
                                "format: chat}\ntraining: {max_steps: 2}\n")
        status = manager.wait(run_id, timeout=120)
        assert json.loads((manager.runs_dir / run_id / "status.json").read_text())["warm"] is True
        assert status["state"] == "failed" and status["error"].startswith(CHAT_ERROR), status   # was LOST
    finally:
        manager.shutdown()
