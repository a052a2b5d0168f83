"""Smaller holes: a 10 KB run id raised a generic OSError; a status.json naming the PID of someone else's
`finetune train` process got that process adopted and cancelled; SPACE_ID set outside a Space crashed the
app at start (and would have opened it on 0.0.0.0)."""

import json
import signal
import subprocess
import sys
import time

import pytest

from finetune.jobs import JobManager, UnknownRun
from finetune.jobs.process import LOST, is_job_process
from finetune.train.runfolder import RunFolder
from finetune.ui import access


@pytest.fixture
def jobs(tmp_path):
    manager = JobManager(tmp_path / "runs", slots=1, poll_interval=0.2)
    yield manager
    manager.shutdown()


@pytest.mark.parametrize("run_id", ["a" * 10_000, "../etc", "", "x/y", "run\n", None, 5])
def test_a_bad_run_id_is_one_clear_line(jobs, run_id):
    for call in (jobs.status, jobs.cancel, jobs.log_tail):
        with pytest.raises(UnknownRun) as info:
            call(run_id)
        message = str(info.value)
        assert message.startswith("run id: must be a run folder's name") and len(message) < 200, message


def test_an_unknown_but_valid_run_id_says_no_run(jobs):
    with pytest.raises(UnknownRun, match=r"^no run 'x'$"):
        jobs.status("x")


def impostor(tmp_path, run_file):
    """A process whose command line reads `... finetune train RUN_FILE`, as a user's own job would."""
    return subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)", "-m", "finetune", "train",
                             str(run_file)], cwd=tmp_path, start_new_session=True)


def test_only_a_process_running_this_folder_is_its_job(tmp_path):
    folder = RunFolder(tmp_path / "runs" / "mine")
    folder.path.mkdir(parents=True)
    other = tmp_path / "other.yaml"
    other.write_text("training: {output_dir: elsewhere}\n")
    same = tmp_path / "same.yaml"
    same.write_text(f"training: {{output_dir: {folder.path}}}\n")
    procs = [impostor(tmp_path, other), impostor(tmp_path, same), impostor(tmp_path, folder.run_yaml)]
    try:
        time.sleep(0.5)
        # any `finetune train` counted before the fix
        assert [is_job_process(p.pid, folder) for p in procs] == [False, True, True]
    finally:
        for p in procs:
            p.kill()
            p.wait()


def test_a_status_naming_someone_elses_job_is_not_adopted_nor_cancelled(tmp_path):
    other = tmp_path / "other.yaml"
    other.write_text("training: {output_dir: elsewhere}\n")
    victim = impostor(tmp_path, other)
    try:
        folder = RunFolder(tmp_path / "runs" / "20260101-000000-demo-r8")
        folder.path.mkdir(parents=True)
        folder.run_yaml.write_text("training: {output_dir: x}\n")
        folder.write_status(state="running", pid=victim.pid, step=3, started_at=time.time() - 60)
        manager = JobManager(tmp_path / "runs", slots=1, poll_interval=0.2)
        try:
            status = manager.status(folder.path.name)
            assert status["state"] == "failed" and status["error"] == LOST   # settled, not adopted
            manager.cancel(folder.path.name)
        finally:
            manager.shutdown()
        time.sleep(0.3)
        assert victim.poll() is None, "the unrelated process was signalled"
    finally:
        victim.send_signal(signal.SIGKILL)
        victim.wait()


def test_space_id_set_by_hand_is_not_a_space_and_fails_closed():
    by_hand = {"SPACE_ID": "alice/x"}
    assert not access.on_a_space(by_hand) and not access.sign_in_possible(by_hand)
    assert access.login_required(by_hand)   # the rule still applies: nobody can sign in, so nobody launches
    allowed, why = access.may_use("alice", "launch or cancel runs", by_hand)
    assert not allowed and "sign-in with Hugging Face is unavailable" in why
    assert access.on_a_space({"SPACE_ID": "alice/x", "SYSTEM": "spaces"})


def test_status_json_is_never_written_by_the_manager_while_the_job_runs(tmp_path):
    """The cancel request is a mark file (its mtime), so a manager cannot clobber the job's own status."""
    from finetune.jobs import cancel

    folder = RunFolder(tmp_path / "run")
    folder.write_status(state="running", started_at=time.time() - 5)
    before = json.loads(folder.status_file.read_text())
    cancel.request(folder)
    assert json.loads(folder.status_file.read_text()) == before
    assert cancel.stopping_view(folder, before, timeout_s=30) == {"stopping": True, "force_available": False}
    # a mark left by an earlier job in the same folder (a resumed run) does not count
    assert cancel.requested_at(folder, {"state": "running", "started_at": time.time() + 10}) is None
