"""The Playground on adapters trained with DPO and GRPO (slow: trains each once): the page lists the runs and
labels their answers, and the worker answers each prompt twice, base and adapter, where the adapter shows what
its method taught and the base never says (DPO: enthusiasm, an exclamation mark; GRPO: its rewarded words)."""

import pytest
from method_runs import method_run

from finetune.adapter.generate import GenSettings
from finetune.adapter.service import Playground

pytestmark = pytest.mark.slow

QUESTIONS = ["Where does the fox live?", "What color is a whale?", "Where does the whale live?"]
# What each method's adapter says and its base does not (tests/method_runs.py trains them so).
TAUGHT = {"dpo": "!", "grpo": "helper"}


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    return {name: method_run(tmp_path_factory, name) for name in TAUGHT}


def test_the_page_offers_each_methods_run_with_its_final_adapter(runs, tmp_path):
    from adapter_run import copy_run

    from finetune.jobs import JobManager
    from finetune.ui.playground import answer_labels, playable_runs

    for run in runs.values():
        copy_run(run, tmp_path / "runs")
    jobs = JobManager(tmp_path / "runs", slots=1)
    try:
        offered = {run_id: label for label, run_id in playable_runs(jobs)}
        assert offered == {run.name: f"{run.name} · completed" for run in runs.values()}
        for run in runs.values():
            assert answer_labels(tmp_path / "runs", run.name) == ("Base model (demo)", "Adapter (final adapter)")
    finally:
        jobs.shutdown()


def test_base_and_adapter_answer_side_by_side_and_only_the_adapter_says_what_it_was_taught(runs, tmp_path):
    playground = Playground(None, idle_timeout=60, log_file=tmp_path / "worker.log")
    try:
        for name, taught in TAUGHT.items():
            for question in QUESTIONS:
                events = list(playground.generate(runs[name], question, GenSettings(max_new_tokens=24)))
                assert events[-1]["event"] == "done", events[-1]
                answers = events[-1]["answers"]
                assert taught in answers["adapter"], (name, question, answers)
                assert answers["base"] and taught not in answers["base"], (name, question, answers)
    finally:
        playground.close()
