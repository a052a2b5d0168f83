"""The playground's generation worker, for real: answers stream from a process of its own, the model stays
loaded between prompts and is given back after the idle timeout, a generation waits for a job-manager slot
and says so, and a stopped or abandoned generation does not leak into the next one."""

import itertools
import threading
import time

import psutil
import pytest
from adapter_run import PHRASE, QUESTIONS, copy_run, fixed_phrase_run

from finetune.adapter.generate import GenSettings
from finetune.adapter.service import Playground
from finetune.errors import RunFileError

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    return fixed_phrase_run(tmp_path_factory)


def collect(events):
    events = list(events)
    assert events[-1]["event"] == "done"
    return events


def test_answers_stream_from_a_worker_that_keeps_its_model_then_gives_it_back(run, tmp_path):
    playground = Playground(None, idle_timeout=8, log_file=tmp_path / "worker.log")
    try:
        events = collect(playground.generate(run, QUESTIONS[0], GenSettings(max_new_tokens=40)))
        kinds = [e["event"] for e in events]
        assert kinds[0] == "loading" and "text" in kinds
        done = events[-1]
        assert done["answers"]["adapter"] == PHRASE and PHRASE not in done["answers"]["base"]
        # The answers grow: each text event holds the answers so far, ending in the final ones.
        texts = [e["answers"]["base"] for e in events if e["event"] == "text"]
        assert all(b.startswith(a) for a, b in itertools.pairwise(texts))
        pid = playground.worker_pid
        assert pid and pid != psutil.Process().pid   # never in this process

        started = time.perf_counter()
        events = collect(playground.generate(run, QUESTIONS[1], GenSettings(max_new_tokens=16), compare=False))
        assert "loading" not in [e["event"] for e in events]   # the model stayed loaded
        assert events[-1]["answers"] == {"adapter": PHRASE}
        assert playground.worker_pid == pid
        print(f"second prompt, model loaded: {time.perf_counter() - started:.2f} s")

        deadline = time.monotonic() + 30   # idle timeout: the worker exits, its memory goes back
        while psutil.pid_exists(pid) and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
            assert time.monotonic() < deadline, "the idle worker did not exit"
            time.sleep(0.5)
        events = collect(playground.generate(run, QUESTIONS[0], GenSettings(max_new_tokens=8), compare=False))
        assert events[0]["event"] == "loading" and playground.worker_pid != pid   # a fresh one
    finally:
        playground.close()


def test_bad_requests_are_one_line_and_the_worker_survives(run, tmp_path):
    playground = Playground(None, idle_timeout=30, log_file=tmp_path / "worker.log")
    try:
        with pytest.raises(RunFileError, match="no such folder"):
            list(playground.generate(tmp_path / "nowhere", "hi"))
        with pytest.raises(RunFileError, match="prompt: must be some text"):
            list(playground.generate(run, "   "))
        assert collect(playground.generate(run, QUESTIONS[0], GenSettings(max_new_tokens=8)))
    finally:
        playground.close()


def test_a_generation_waits_for_a_job_manager_slot_and_holds_it(run, tmp_path):
    from finetune.jobs import JobManager

    jobs = JobManager(tmp_path / "runs", slots=1)
    folder = copy_run(run, tmp_path / "runs")
    playground = Playground(jobs, idle_timeout=30, use_slots=True)
    try:
        assert jobs.lease_slot("a training job, say") is not None
        threading.Timer(2.0, jobs.release_slot, ["a training job, say"]).start()
        events = collect(playground.generate(folder, QUESTIONS[0], GenSettings(max_new_tokens=8)))
        waiting = [e for e in events if e["event"] == "waiting"]
        assert waiting and "waiting for a free GPU slot" in waiting[0]["message"]
        assert jobs.lease_slot("another") is None        # the worker holds the only slot while it lives
    finally:
        playground.close()
    assert jobs.lease_slot("another") is not None        # closed: the slot is back
    jobs.shutdown()


def test_an_abandoned_generation_does_not_leak_into_the_next(run, tmp_path):
    playground = Playground(None, idle_timeout=30, log_file=tmp_path / "worker.log")
    try:
        stream = playground.generate(run, "Tell me a story.", GenSettings(max_new_tokens=400, temperature=1.0))
        for event in stream:
            if event["event"] == "text":
                break
        stream.close()   # the page went away mid-answer
        events = collect(playground.generate(run, QUESTIONS[0], GenSettings(max_new_tokens=16)))
        assert events[-1]["answers"]["adapter"] == PHRASE
    finally:
        playground.close()
