"""The page's "Train on" choice (issue 21): this machine or a Hugging Face Jobs flavour, with its price, the
memory verdict for that flavour's GPU, what the run may cost, and the launch that hands the job the launcher's
own token."""

from __future__ import annotations

import pytest

from finetune.runfile import parse_run
from finetune.runfile.flavors import FLAVORS, cost_usd
from finetune.ui import panel, runner_view
from finetune.ui.api import public_status
from finetune.ui.form import extra_of


@pytest.fixture(scope="module")
def start():
    return panel.initial()


def test_every_flavour_is_offered_with_its_gpu_memory_and_price():
    offered = {value: label for label, value in runner_view.choices()}
    assert offered.pop("local") == "This machine" and set(offered) == set(FLAVORS)
    assert offered["a10g-small"] == "HF Jobs: a10g-small (Nvidia A10G 24 GB (small), $1.00/h)"
    assert offered["l4x4"] == "HF Jobs: l4x4 (4x Nvidia L4 24 GB each, $3.80/h)"
    assert offered["h200"].endswith("price: see the Hub)")   # not in the price table: never a made-up price


def test_the_choice_writes_the_runner_and_a_loaded_file_sets_the_choice(start):
    values = {**start["values"], "runner.flavor": "l40sx1", "runner.timeout": "90m"}
    raw, run, problems = panel.form_run(values, {}, start["info"])
    assert problems == [] and raw["runner"] == {"hf_jobs": {"flavor": "l40sx1", "timeout": "90m"}}
    assert run.runner.remote and run.runner.flavor == "l40sx1"
    loaded = parse_run("runner: {hf_jobs: {flavor: t4-small, timeout: 30m, namespace: my-org}}").to_dict()
    form = panel.form_values(loaded, start["info"])
    assert (form["runner.flavor"], form["runner.timeout"]) == ("t4-small", "30m")
    extra = extra_of(loaded)   # what the form has no widget for rides along
    assert extra["runner"] == {"hf_jobs": {"namespace": "my-org", "image": "python:3.11-slim-bookworm"}}
    raw, run, _ = panel.form_run({**form, "runner.flavor": "a10g-large"}, extra, start["info"])
    assert (run.runner.flavor, run.runner.namespace) == ("a10g-large", "my-org")
    raw, run, _ = panel.form_run({**form, "runner.flavor": "local"}, extra, start["info"])
    assert "runner" not in raw and not run.runner.remote
    assert panel.form_values(parse_run("").to_dict(), start["info"])["runner.flavor"] == "local"


def test_the_memory_verdict_is_for_the_flavours_gpu(start):
    big = {**start["values"], "data.max_length": 65536, "training.per_device_train_batch_size": 8}
    on_t4 = panel.understand({**big, "runner.flavor": "t4-small"}, {}, start["info"])["memory"]
    on_h200 = panel.understand({**big, "runner.flavor": "h200"}, {}, start["info"])["memory"]
    assert "Nvidia T4 16 GB (small) on Hugging Face Jobs" in on_t4 and "data-verdict='no'" in on_t4
    assert "Nvidia H200 141 GB on Hugging Face Jobs" in on_h200 and "data-verdict='fits'" in on_h200
    here = panel.understand({**big, "runner.flavor": "local"}, {}, start["info"])["memory"]
    assert "Hugging Face Jobs" not in here   # this machine: the picker's GPU


def test_the_note_says_what_the_run_may_cost(start):
    note = panel.understand({**start["values"], "runner.flavor": "a10g-small", "runner.timeout": "90m"}, {},
                            start["info"])["runner_note"]
    assert "**a10g-small**" in note and "$1.00/h" in note and "At most $1.50 before its 1 h 30 min timeout" in note
    assert panel.understand({**start["values"], "runner.flavor": "local"}, {}, start["info"])["runner_note"] == ""


def test_a_run_on_jobs_shows_its_cost_so_far_and_at_its_eta():
    status = {"state": "running", "elapsed_s": 600, "eta_s": 1200,
              "hf_job": {"flavor": "l40sx1", "url": "https://huggingface.co/jobs/alice/abc"}}
    line = runner_view.cost_line(status)
    assert line == ("on Hugging Face Jobs l40sx1 · about $0.30 so far · $0.90 at its ETA · "
                    "[the job](https://huggingface.co/jobs/alice/abc)")
    assert runner_view.cost_line({"state": "running"}) is None
    assert cost_usd(FLAVORS["a10g-small"], 61) == pytest.approx(2 / 60)   # billed by the started minute


def test_the_api_status_carries_the_job_but_not_its_bookkeeping():
    status = {"state": "running", "hf_job": {"id": "abc", "flavor": "h200", "stage": "RUNNING", "url": "u",
                                             "namespace": "alice", "volume": "run-1", "lines": 40}}
    assert public_status(status)["hf_job"] == {"id": "abc", "flavor": "h200", "stage": "RUNNING", "url": "u"}
    assert public_status({"state": "running"})["hf_job"] is None


def test_the_timeout_shows_for_a_jobs_flavour_only(start):
    from types import SimpleNamespace

    ui = SimpleNamespace(runner_note="note", form={"runner.timeout": "timeout"})
    assert runner_view.updates(ui, {"runner.flavor": "local"}, "")["timeout"].visible is False
    assert runner_view.updates(ui, {"runner.flavor": "l4x1"}, "x")["timeout"].visible is True
