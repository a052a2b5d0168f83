"""The selected run's samples under its curve (finetune/ui/samples_view.py) and the early stop in its progress
line (finetune/ui/render.py): the HTML, and the watch poll sending the samples only when they change, hidden
from a visitor who may not launch on a Space. Run folders written by hand, as the job leaves them."""

import asyncio

import gradio as gr
import pytest
import yaml

from finetune.train.runfolder import RunFolder
from finetune.ui import render, samples_view


@pytest.fixture(scope="module")
def page(built_page):
    return built_page


def make_run(runs_dir, name: str, samples=(), **status) -> RunFolder:
    folder = RunFolder(runs_dir / name)
    folder.path.mkdir(parents=True)
    folder.run_yaml.write_text(yaml.safe_dump({"model": {"name_or_path": "demo"}, "data": {"eval_size": 0.2},
                                               "training": {"output_dir": str(folder.path), "max_steps": 4}}))
    folder.write_status(state="completed", step=4, max_steps=4, started_at=100.0, finished_at=160.0, **status)
    for step in (1, 2, 3, 4):
        folder.append_metrics({"step": step, "loss": 3.0 - step / 2})
    for record in samples:
        folder.append_sample(record)
    return folder


ANSWERS = [{"step": 2, "prompt": "What is <b>2+2</b>?", "answer": "five", "seconds": 0.1},
           {"step": 2, "prompt": "Name a colour", "answer": "blue", "seconds": 0.1},
           {"step": 4, "prompt": "What is <b>2+2</b>?", "answer": "4 & <script>x</script>", "seconds": 0.1},
           {"step": 4, "prompt": "Name a colour", "answer": "blue", "seconds": 0.1}]


def test_samples_read_prompt_by_prompt_oldest_first_escaped():
    text = samples_view.samples_html(ANSWERS)
    assert text.count("class='sample'") == 2                       # one block per prompt
    assert "<script>" not in text and "<b>" not in text            # the data's and the model's text, escaped
    assert "What is &lt;b&gt;2+2&lt;/b&gt;?" in text and "4 &amp; &lt;script&gt;" in text
    first = text.split("class='sample'")[1]
    assert first.index("step 2") < first.index("five") < first.index("step 4") < first.index("4 &amp;")
    assert "(unchanged)" in text.split("class='sample'")[2]         # blue at step 4 again: said, not repeated
    assert samples_view.key([]) == "" and samples_view.key(ANSWERS) != samples_view.key(ANSWERS[:2])


def test_an_early_stop_is_in_the_progress_line():
    stop = {"step": 30, "best_step": 20, "best_metric": 1.23456, "metric": "eval_loss"}
    line = render.run_progress({"state": "completed", "step": 30, "max_steps": 100, "stopped_early": stop})
    assert "**stopped early** at step 30, best eval_loss at step 20 (1.2346)" in line
    assert render.stopped_early({"step": 7, "best_step": None, "best_metric": None, "metric": None}) == \
        "**stopped early** at step 7"


def watch_tick(page):
    ui = page.ui
    found = [fn for fn in page.demo.fns.values()
             if fn.fn is not None and (ui.timer._id, "tick") in fn.targets and ui.loss_plot in fn.outputs]
    assert len(found) == 1
    return found[0]


def poll(page, tick, run_id, seen, rounds: int = 1) -> tuple[list, dict]:
    """`rounds` polls; the answers as Gradio accepts them, and the seen state after them."""
    answers = []
    for _ in range(rounds):
        answer = tick.fn(run_id, seen, None)
        asyncio.run(page.demo.postprocess_data(tick, answer, None))   # raises on an output not wired
        answers.append(answer)
        if answer != gr.skip():
            seen = answer[page.ui.seen]
    return answers, seen


def test_the_watch_poll_sends_samples_when_they_change_and_hides_them_from_visitors(page, monkeypatch):
    ui, tick = page.ui, watch_tick(page)
    folder = make_run(page.jobs.runs_dir, "with-samples", ANSWERS[:2],
                      stopped_early={"step": 4, "best_step": 2, "best_metric": 1.5, "metric": "eval_loss"})
    answers, seen = poll(page, tick, "with-samples", None, rounds=6)
    sent = [a[ui.samples] for a in answers if a != gr.skip() and ui.samples in a]
    assert len(sent) == 1 and sent[0].visible and "five" in sent[0].value
    assert "stopped early" in answers[0][ui.progress]
    folder.append_sample(ANSWERS[2])   # the next evaluation's answer: the next poll sends the box again
    (later,), seen = poll(page, tick, "with-samples", seen)
    assert "4 &amp;" in later[ui.samples].value
    (settled,), _ = poll(page, tick, "with-samples", seen)
    assert settled == gr.skip()

    make_run(page.jobs.runs_dir, "no-samples")   # another run: the box is hidden
    (other,), _ = poll(page, tick, "no-samples", seen)
    assert other[ui.samples].visible is False

    monkeypatch.setenv("SPACE_ID", "alice/launchpad")   # a visitor who may not launch: no prompts, no answers
    (visitor,), _ = poll(page, tick, "with-samples", None)
    assert visitor[ui.samples].visible is False
    assert "five" not in str(visitor)
