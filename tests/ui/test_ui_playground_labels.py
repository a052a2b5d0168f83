"""The Playground's answer labels follow the run (finetune/ui/playground.py): "checkpoint-N (running)" while it
trains, "final adapter" once it completed, and the page's run list poll sends them again when the run's state
changes, not only when another run is picked. Run folders written by hand, as the job leaves them; no
generation, no browser."""

import asyncio
import json

import gradio as gr
import pytest
import yaml

from finetune.errors import RunFileError
from finetune.train.runfolder import RunFolder
from finetune.ui.playground import answer_labels


def make_run(runs_dir, name: str, state: str = "running", checkpoint: int | None = 100) -> RunFolder:
    folder = RunFolder(runs_dir / name)
    folder.path.mkdir(parents=True)
    folder.run_yaml.write_text(yaml.safe_dump({"model": {"name_or_path": "demo"},
                                               "training": {"output_dir": str(folder.path), "max_steps": 200}}))
    folder.write_status(state=state, step=checkpoint or 0, max_steps=200, started_at=100.0)
    if checkpoint is not None:
        save_adapter(folder.path / f"checkpoint-{checkpoint}")
    return folder


def save_adapter(path) -> None:
    """What find_adapter looks for (the weights themselves are only read by a generation)."""
    path.mkdir(parents=True)
    (path / "adapter_config.json").write_text(json.dumps({"peft_type": "LORA", "r": 8}))


def complete(folder: RunFolder) -> None:
    save_adapter(folder.adapter_dir)
    folder.write_status(state="completed", step=200, max_steps=200, started_at=100.0, finished_at=160.0)


def test_the_labels_follow_the_run_from_checkpoint_to_final_adapter(tmp_path):
    folder = make_run(tmp_path, "run-a")
    assert answer_labels(tmp_path, "run-a") == ("Base model (demo)", "Adapter (checkpoint-100 (running))")
    complete(folder)
    assert answer_labels(tmp_path, "run-a") == ("Base model (demo)", "Adapter (final adapter)")


def test_a_stopped_run_without_adapter_names_its_checkpoint_with_its_state(tmp_path):
    make_run(tmp_path, "run-b", state="failed", checkpoint=40)
    assert answer_labels(tmp_path, "run-b")[1] == "Adapter (checkpoint-40 (failed))"


def test_no_run_and_a_run_without_adapter(tmp_path):
    assert answer_labels(tmp_path, None) == ("Base model", "Adapter")
    make_run(tmp_path, "run-c", checkpoint=None)
    with pytest.raises(RunFileError, match="no adapter to try"):
        answer_labels(tmp_path, "run-c")


@pytest.fixture(scope="module")
def page(built_page):
    return built_page


def run_list_poll(page):
    p = page.ui.playground
    found = [fn for fn in page.demo.fns.values()
             if fn.fn is not None and (p.timer._id, "tick") in fn.targets and p.run in fn.outputs]
    assert len(found) == 1
    return found[0]


def test_the_run_list_poll_relabels_the_answers_when_the_run_completes(page):
    """The reported bug: the selection stays the same run (its change event does not fire), so the labels
    were those read when it was picked, "checkpoint-100 (running)", after the run had completed."""
    p, poll = page.ui.playground, run_list_poll(page)
    folder = make_run(page.jobs.runs_dir, "run-d")
    first = poll.fn("run-d", None)
    asyncio.run(page.demo.postprocess_data(poll, first, None))   # raises on an output not wired
    assert first[p.run].value == "run-d"
    assert first[p.answer_adapter].label == "Adapter (checkpoint-100 (running))"
    assert poll.fn("run-d", first[p.shown]) == gr.skip()         # nothing changed: nothing sent

    complete(folder)
    later = poll.fn("run-d", first[p.shown])
    sent = asyncio.run(page.demo.postprocess_data(poll, later, None))
    adapter, base = (sent[poll.outputs.index(box)] for box in (p.answer_adapter, p.answer_base))
    # Only the labels: an answer shown (or being streamed) in the boxes stays.
    assert adapter == {"label": "Adapter (final adapter)", "__type__": "update"}
    assert base == {"label": "Base model (demo)", "__type__": "update"}
