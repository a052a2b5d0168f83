"""finetune.train.threads: a CPU job the app started leaves one core to the page; nothing else changes."""

import pytest

from finetune.model.dtypes import this_device
from finetune.train import threads

pytestmark = pytest.mark.skipif(this_device().cuda, reason="GPU jobs keep torch's default")


@pytest.fixture
def env(monkeypatch):
    for name in ("OMP_NUM_THREADS", "WORLD_SIZE", threads.SERVING):
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


@pytest.mark.parametrize(("cores", "expected"), [({0, 1, 2, 3}, 3), ({0, 1}, 1), ({5}, 1)])
def test_a_job_the_app_started_leaves_one_core(env, cores, expected):
    """On 4 cores the job takes 3; on 2 it takes 1; on 1 it keeps the one (never 0 threads)."""
    import os

    import torch

    set_to = []
    env.setattr(os, "sched_getaffinity", lambda pid: cores, raising=False)
    env.setattr(torch, "set_num_threads", set_to.append)   # torch is imported here, as in a warm-forked job
    env.setenv(threads.SERVING, "1")
    assert threads.leave_a_core_to_the_page(1) == expected
    assert os.environ["OMP_NUM_THREADS"] == str(expected) and set_to == [expected]


@pytest.mark.parametrize("case", ["cli", "user-set", "two-devices", "a-rank"])
def test_everything_else_keeps_its_threads(env, case):
    import os

    if case != "cli":
        env.setenv(threads.SERVING, "1")
    if case == "user-set":
        env.setenv("OMP_NUM_THREADS", "7")
    if case == "a-rank":
        env.setenv("WORLD_SIZE", "2")
    assert threads.leave_a_core_to_the_page(2 if case == "two-devices" else 1) is None
    assert os.environ.get("OMP_NUM_THREADS") == ("7" if case == "user-set" else None)


def test_jobs_started_by_the_manager_are_marked(tmp_path):
    import sys

    from finetune.jobs.process import job_env, spawn

    log = tmp_path / "log"
    spawn([sys.executable, "-c", f"import os; print(os.environ.get({threads.SERVING!r}))"], log, tmp_path,
          job_env(None)).wait(timeout=60)
    assert log.read_text().strip() == "1"


@pytest.mark.parametrize(("serving", "user", "expected"), [
    ("1", None, "PASSIVE"),      # the app's job: waiting threads sleep, leaving the cores to the page
    (None, None, None),          # a CLI run: OpenMP's default (spin briefly, then sleep)
    ("1", "ACTIVE", "ACTIVE"),   # a user's own setting wins
    (None, "PASSIVE", "PASSIVE"),
])
def test_only_the_apps_jobs_make_waiting_threads_sleep(env, serving, user, expected):
    import os

    env.delenv("OMP_WAIT_POLICY", raising=False)
    if serving:
        env.setenv(threads.SERVING, serving)
    if user:
        env.setenv("OMP_WAIT_POLICY", user)
    threads.wait_policy()
    assert os.environ.get("OMP_WAIT_POLICY") == expected
