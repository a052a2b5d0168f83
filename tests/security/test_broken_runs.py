"""Threat: one run folder whose files are not what the job writes (a status.json of one byte 0xff, a JSON
list, `null`, wrong types, cut short, 10 GB, a folder, /dev/zero, a pipe; a run.yaml or metrics.jsonl that is
not readable). Before, the job manager could not even be built on such a runs folder, its poll raised a
traceback about every second, queued runs never started and the run list did not load; a status.json cut
short read as `queued`. Now the folder shows as `broken` with a one-line reason, and every other run goes on.

The jobs here are a stand-in command that writes `completed` at once: what is tested is the manager's queue
and its reading of folders, not training (tests/jobs/test_jobs.py runs the real job).
"""

import json
import logging
import os
import sys
import time

import pytest

from finetune.jobs import JobManager, history
from finetune.train.runfolder import RunFolder
from finetune.ui import render, runs

# The job: what the manager starts, given <folder>/run.yaml; it ends `completed`, as a real job would.
DONE_JOB = [sys.executable, "-c", "import sys, time; from pathlib import Path; "
            "from finetune.train.runfolder import RunFolder; "
            "RunFolder(Path(sys.argv[1]).parent).write_status(state='completed', step=1, max_steps=1, "
            "finished_at=time.time())"]
BROKEN = "broken"   # the state a folder whose status.json is not a status shows
RUN_YAML = "model: {name_or_path: demo}\nlora: {r: 4}\ndata: {path: demo}\n"


def write_bytes(data: bytes):
    return lambda path: path.write_bytes(data)


def sparse(path):   # 10 GB that take no disk: reading it whole would take minutes and all the memory
    with open(path, "wb") as f:
        f.truncate(10 * 1024 ** 3)


BROKEN_STATUS = {
    "not UTF-8": (write_bytes(b"\xff"), "not UTF-8"),
    "a list": (write_bytes(b"[1, 2]"), "a list"),
    "null": (write_bytes(b"null"), "null"),
    "wrong types": (write_bytes(b'{"state": 5, "step": "x"}'), "state"),
    "a wrong step": (write_bytes(b'{"state": "running", "step": "x"}'), '"step"'),
    "a wrong time": (write_bytes(b'{"state": "completed", "started_at": "yesterday"}'), '"started_at"'),
    "cut short": (write_bytes(b'{"state": "completed", "step": 4, "max_st'), "cut short"),
    "empty": (write_bytes(b""), "empty"),
    "no state": (write_bytes(b"{}"), "no state"),
    "10 GB": (sparse, "larger than"),
    "a folder": (lambda path: path.mkdir(), "a folder"),
    "/dev/zero": (lambda path: path.symlink_to("/dev/zero"), "not a regular file"),
    "a pipe": (lambda path: os.mkfifo(path), "not a regular file"),
}


def make_run(runs_dir, name, state=None, submitted_at=None):
    folder = RunFolder(runs_dir / name)
    folder.path.mkdir(parents=True)
    folder.run_yaml.write_text(RUN_YAML, encoding="utf-8")
    if state:
        folder.write_status(state=state, step=0, submitted_at=submitted_at or time.time())
    return folder


@pytest.fixture
def runs_dir(tmp_path):
    return tmp_path / "runs"


@pytest.fixture
def managers(runs_dir, tmp_path):
    made = []

    def make():
        manager = JobManager(runs_dir, slots=1, command=DONE_JOB, cwd=tmp_path, poll_interval=0.05)
        made.append(manager)
        return manager

    yield make
    for manager in made:
        manager.shutdown()


def wait_for(predicate, timeout=30.0, what="condition"):
    deadline = time.monotonic() + timeout
    while not (value := predicate()):
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)
    return value


def one_line(text):
    return isinstance(text, str) and text and "\n" not in text and len(text) < 300


@pytest.mark.parametrize("case", list(BROKEN_STATUS))
def test_a_broken_status_is_shown_as_broken_and_every_other_run_goes_on(runs_dir, managers, case, caplog):
    make_status, words = BROKEN_STATUS[case]
    broken = make_run(runs_dir, "20260101-000000-broken")
    make_status(broken.status_file)
    first = make_run(runs_dir, "20260101-000001-first", state="queued", submitted_at=1.0)
    second = make_run(runs_dir, "20260101-000002-second", state="queued", submitted_at=2.0)
    caplog.set_level(logging.INFO, logger="finetune.jobs")
    manager = managers()   # raised AttributeError on a list, UnicodeDecodeError on 0xff, before the fix
    for folder in (first, second):   # each queued run starts, and finishes, one after the other
        assert manager.wait(folder.path.name, timeout=30)["state"] == "completed"
    time.sleep(0.3)   # several polls with the broken folder in the runs folder

    status = manager.status(broken.path.name)
    assert status["state"] == BROKEN and one_line(status["error"]), status
    assert status["error"].startswith("status.json ") and words in status["error"], status["error"]
    assert status["queue_position"] is None
    listed = {r["run_id"]: r for r in manager.list_runs()}
    assert listed[broken.path.name]["state"] == BROKEN and listed[broken.path.name]["error"] == status["error"]
    assert {listed[f.path.name]["state"] for f in (first, second)} == {"completed"}
    rows = {r["run_id"]: r for r in history.summaries(runs_dir)}
    assert rows[broken.path.name]["state"] == BROKEN and rows[broken.path.name]["error"] == status["error"]
    table = runs.table(list(rows.values()))
    [cell] = table[table["run"] == broken.path.name]["state"]
    assert cell.startswith("broken: status.json ") and one_line(cell), cell
    line = render.run_progress(status)
    assert line.startswith("**broken**") and "step 0 /" not in line and status["error"].split(" ")[0] in line
    # said once in the log, never a traceback a poll
    assert not [r for r in caplog.records if r.exc_info], [r.getMessage() for r in caplog.records]
    assert sum(broken.path.name in r.getMessage() for r in caplog.records) <= 1


def test_a_completed_run_cut_short_is_never_read_as_queued(tmp_path):
    folder = RunFolder(tmp_path / "run")
    folder.write_status(state="completed", step=4, max_steps=4)
    text = folder.status_file.read_text()
    folder.status_file.write_text(text[: len(text) // 2])
    status = folder.read_status()
    assert status["state"] == BROKEN and "cut short" in status["error"]   # was {}: shown as "queued"
    assert history.summary(folder)["state"] == BROKEN


def test_a_launch_beside_a_broken_run_starts(runs_dir, managers):
    broken = make_run(runs_dir, "20260101-000000-broken")
    broken.status_file.write_bytes(b"[]")
    manager = managers()
    run_id = manager.submit(RUN_YAML + "training: {max_steps: 1}\n")   # was left at "queued" for ever
    assert manager.wait(run_id, timeout=30)["state"] == "completed"


def test_a_job_writing_over_a_broken_status_repairs_it(tmp_path):
    folder = RunFolder(tmp_path / "run")
    folder.path.mkdir()
    folder.status_file.write_bytes(b'{"state": 5, "step": "x", "submitted_at": 12.5, "origin": "api"}')
    assert folder.read_status()["state"] == BROKEN
    folder.write_status(state="running", max_steps=3)
    status = json.loads(folder.status_file.read_text())
    assert status["state"] == "running" and "step" not in status   # the wrong value is not kept
    assert status["submitted_at"] == 12.5 and status["origin"] == "api"   # the readable ones are
    assert folder.read_status()["state"] == "running"


METRICS = (b'{"step": 1, "loss": 2.5}\n'
           b'[1, 2]\n5\nnull\n"text"\n'                       # JSON, but not a record
           b'{"step": "x", "loss": 1.0}\n'                   # a record with a step that is not a number
           b'{"step": 2, "loss": "high", "learning_rate": 0.1}\n'
           b'\xff\xfe not UTF-8\n'
           b'{"step": 3, "loss": 1.5}\n'
           b'{"step": 4, "lo')                               # being written


def test_metrics_lines_that_are_not_records_are_skipped(runs_dir, managers):
    folder = make_run(runs_dir, "20260101-000000-run", state="completed")
    folder.metrics_file.write_bytes(METRICS)
    manager = managers()
    status = manager.status(folder.path.name)
    assert status["losses"] == [[1, 2.5], [3, 1.5]] and status["step"] == 3
    assert [r["step"] for r in folder.read_metrics()] == [1, 2, 3]
    assert history.summary(folder)["last_loss"] == 1.5
    assert [r["loss"] for r in manager.list_runs()] == [1.5]


@pytest.mark.parametrize("case", ["/dev/zero", "a folder", "10 GB"])
def test_a_metrics_file_that_is_not_a_file_reads_as_no_points(runs_dir, managers, case):
    folder = make_run(runs_dir, "20260101-000000-run", state="completed")
    BROKEN_STATUS[case][0](folder.metrics_file)
    manager = managers()
    started = time.monotonic()
    assert manager.status(folder.path.name)["losses"] == []
    assert history.summary(folder)["last_loss"] is None and manager.list_runs()[0]["loss"] is None
    assert time.monotonic() - started < 5


@pytest.mark.parametrize("content", [b"\xff\xfe", b"- a list\n", b"model: a string\nlora: 5\n", b"a: [1,\n",
                                     "a folder", "/dev/zero", "10 GB"])
def test_an_unreadable_run_yaml_is_a_run_without_settings(runs_dir, managers, content):
    folder = make_run(runs_dir, "20260101-000000-run", state="completed")
    folder.run_yaml.unlink()
    if isinstance(content, bytes):
        folder.run_yaml.write_bytes(content)
    else:
        BROKEN_STATUS[content][0](folder.run_yaml)
    manager = managers()
    started = time.monotonic()
    [listed] = manager.list_runs()   # raised AttributeError on a list or a string section before the fix
    assert listed["state"] == "completed" and listed["model"] is None and listed["r"] is None
    [row] = history.summaries(runs_dir)
    assert row["state"] == "completed" and row["model"] is None
    assert runs.table([row]).shape[0] == 1
    assert time.monotonic() - started < 5
