"""A sweep from the page (finetune/ui/sweep_view.py): Launch sweep queues one run per combination of the form's
run, the ranked table follows them and stops once they ended, and Load best fills the form with the best
completed run. Handlers called directly on a page built as the app builds it; ranked runs written by hand."""

import asyncio
import copy
from types import SimpleNamespace

import gradio as gr
import pytest
import yaml

from finetune.train.runfolder import RunFolder
from finetune.ui import sweep_view

REQUEST = SimpleNamespace(session_hash="sweep-test")


@pytest.fixture(scope="module")
def page(built_page):
    return built_page


def wired(page, component, trigger: str):
    found = [fn for fn in page.demo.fns.values() if fn.fn is not None and (component._id, trigger) in fn.targets]
    assert len(found) == 1
    return found[0]


def accepted(page, block_fn, answer) -> set:
    asyncio.run(page.demo.postprocess_data(block_fn, answer, None))   # raises on an output not wired
    return set() if answer == gr.skip() else set(answer)


def sweep_run(runs_dir, name: str, r: int, loss: float, state: str = "completed") -> str:
    folder = RunFolder(runs_dir / name)
    folder.path.mkdir(parents=True)
    folder.run_yaml.write_text(yaml.safe_dump({"model": {"name_or_path": "demo"}, "lora": {"r": r},
                                               "training": {"output_dir": str(folder.path), "max_steps": 2}}))
    folder.write_status(state=state, step=2, max_steps=2, sweep={"id": "s", "name": f"r{r}", "values": {"lora.r": r}})
    folder.append_metrics({"step": 2, "loss": loss})
    return name


def test_vary_lines_take_the_settings_that_have_values():
    assert sweep_view.vary_lines([("lora.r", " 4,8 "), ("training.learning_rate", ""), (None, "1")]) == ["lora.r=4,8"]


def test_the_table_ranks_follows_and_loads_the_best_into_the_form(page):
    ui, runs = page.ui, page.jobs.runs_dir
    ids = [sweep_run(runs, "sw-r3", 3, 2.5), sweep_run(runs, "sw-r7", 7, 1.5), sweep_run(runs, "sw-r5", 5, 9.0,
                                                                                            "running")]
    tick = wired(page, ui.sweep_timer, "tick")
    first = tick.fn(ids, None, None)
    assert accepted(page, tick, first) == {ui.sweep_table, ui.sweep_shown, ui.sweep_best}   # one still running
    table = first[ui.sweep_table]
    assert list(table["run"]) == ["sw-r7", "sw-r3", "sw-r5"] and table["values"].iloc[0] == "lora.r=7"
    assert first[ui.sweep_best].interactive and first[ui.sweep_shown][1] == "sw-r7"
    assert tick.fn(ids, first[ui.sweep_shown], None) == gr.skip()   # nothing changed: nothing sent
    RunFolder(runs / "sw-r5").write_status(state="completed")
    done = tick.fn(ids, first[ui.sweep_shown], None)
    assert done[ui.sweep_timer].active is False                      # every run ended: the timer stops

    best = wired(page, ui.sweep_best, "click")
    values, info = copy.deepcopy(ui.values.value), copy.deepcopy(ui.model_info.value)
    filled = best.fn(done[ui.sweep_shown], values, info, REQUEST)
    assert values["lora.r"] == 7 and ui.values in accepted(page, best, filled)
    with pytest.raises(gr.Error, match="no run of this sweep has completed"):
        best.fn(None, values, info, REQUEST)


def test_launch_sweep_queues_one_run_per_value_of_the_forms_run(page):
    ui, jobs = page.ui, page.jobs
    launch = wired(page, ui.sweep_launch, "click")
    values, info = copy.deepcopy(ui.values.value), copy.deepcopy(ui.model_info.value)
    values["training.max_steps"] = 1
    with pytest.raises(gr.Error, match="pick a setting"):
        launch.fn(values, {}, info, "lora.r", " ", None, None, REQUEST)
    with pytest.raises(gr.Error, match=r"lora\.r"):   # a value the run file refuses: nothing queued
        launch.fn(values, {}, info, "lora.r", "0,2", None, None, REQUEST)
    answer = launch.fn(values, {}, info, "lora.r", "2,3", None, None, REQUEST)
    run_ids = answer[ui.sweep_runs]
    try:
        assert len(run_ids) == 2 and ui.run_select in accepted(page, launch, answer)
        assert answer[ui.sweep_timer].active and answer[ui.run_select].value == run_ids[0]
        assert [jobs.status(r)["sweep"]["values"] for r in run_ids] == [{"lora.r": 2}, {"lora.r": 3}]
        assert yaml.safe_load((jobs.runs_dir / run_ids[0] / "run.yaml").read_text())["training"]["max_steps"] == 1
    finally:
        for run_id in run_ids:
            jobs.cancel(run_id)
        for run_id in run_ids:
            jobs.wait(run_id, timeout=120)
