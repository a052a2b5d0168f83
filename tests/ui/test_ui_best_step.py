"""The best evaluation marked on the loss curve: which step is the best (finetune/ui/best_step.py, as the
Trainer judges it), the rule the chart gets for it (finetune/ui/plots.py) and the watch poll sending it for
a run folder (finetune/ui/live.py). The browser test that sees it drawn: tests/ui/test_ui_browser.py."""

import pytest
import yaml

from finetune.train.runfolder import RunFolder
from finetune.ui import plots
from finetune.ui.best_step import best_eval, metric_rule

TRAIN = [{"step": s, "loss": loss} for s, loss in ((1, 3.0), (2, 2.0), (3, 1.5), (4, 1.2), (5, 1.0), (6, 0.9))]
EVALS = [{"step": 2, "eval_loss": 2.4}, {"step": 4, "eval_loss": 1.8}, {"step": 6, "eval_loss": 1.9}]


def test_the_best_is_the_lowest_eval_loss_and_the_first_of_equals():
    assert best_eval(TRAIN + EVALS, None, {}) == (4, 1.8)
    tied = [*EVALS, {"step": 8, "eval_loss": 1.8}]
    assert best_eval(tied, None, {}) == (4, 1.8)   # the Trainer keeps a best until one is strictly better
    assert best_eval(TRAIN, None, {}) is None       # no evaluation: nothing to mark
    assert best_eval([{"step": 2, "eval_loss": float("nan")}, {"step": "x", "eval_loss": 1.0}], None, {}) is None


def test_another_metric_is_judged_by_its_direction():
    accuracy = [{**e, "eval_mean_token_accuracy": a} for e, a in zip(EVALS, (0.5, 0.6, 0.7), strict=True)]
    training = {"metric_for_best_model": "mean_token_accuracy"}
    assert metric_rule({"training": training}) == ("eval_mean_token_accuracy", True)   # greater, by default
    assert best_eval(accuracy, None, {"training": training}) == (6, 1.9)
    lower = {"training": {**training, "greater_is_better": False}}
    assert best_eval(accuracy, None, lower) == (2, 2.4)
    assert metric_rule({"training": {"metric_for_best_model": "eval_loss"}}) == ("eval_loss", False)
    # A metric the records do not carry: no mark until the Trainer names its best...
    assert best_eval(EVALS, None, {"training": training}) is None
    # ...which status.json's stopped_early does, whatever the records say.
    assert best_eval(EVALS, {"step": 8, "best_step": 6, "best_metric": 0.7}, {"training": training}) == (6, 1.9)
    assert best_eval(EVALS, {"step": 8, "best_step": 5, "best_metric": 0.7}, {}) == (5, None)   # not recorded
    assert best_eval(EVALS, {"step": 8, "best_step": None}, {}) == (4, 1.8)


def best_rows(frame) -> list[tuple]:
    rows = frame[frame["series"] == plots.BEST].dropna()
    return list(zip(rows["step"], rows["loss"], strict=True))


def test_the_loss_frame_draws_the_best_as_a_rule_across_the_curves():
    curves = {"train": [(r["step"], r["loss"]) for r in TRAIN], "eval": [(e["step"], e["eval_loss"]) for e in EVALS]}
    frame = plots.loss_frame({**curves, "best": (4, 1.8)})
    assert list(frame["series"][:3]) == [plots.BEST, "train", "eval"]   # the colour domain; the rule drawn first
    assert best_rows(frame) == [(4, 0.9), (4, 1.8), (4, 3.0)]           # lowest, the best, highest loss drawn
    assert best_rows(plots.loss_frame({**curves, "best": (5, None)})) == [(5, 0.9), (5, 3.0)]
    for no_best in ({**curves, "best": None}, curves, {"train": curves["train"], "eval": [], "best": None}, None):
        frame = plots.loss_frame(no_best)
        assert best_rows(frame) == [] and list(frame["series"]).count(plots.BEST) == 1   # its empty row only
    assert set(plots.COLORS) == set(plots.SERIES)   # a series without a colour would be drawn unstroked
    assert plots.loss_settings(12, 6, True)["colors_in_legend"] == ["train", "eval", plots.BEST]
    assert plots.loss_settings(12, 6, False)["colors_in_legend"] == ["train"]


@pytest.fixture(scope="module")
def page(built_page):
    return built_page


def make_run(runs_dir, name: str, records: list[dict], training: dict, **status) -> None:
    folder = RunFolder(runs_dir / name)
    folder.path.mkdir(parents=True)
    run = {"model": {"name_or_path": "demo"}, "data": {"path": "demo", "eval_size": 8},
           "training": {"output_dir": str(folder.path), "max_steps": 12, **training}}
    folder.run_yaml.write_text(yaml.safe_dump(run))
    folder.write_status(state="completed", step=6, max_steps=12, started_at=100.0, finished_at=160.0, **status)
    for record in records:
        folder.append_metrics(record)


def test_the_watch_poll_sends_the_best_of_the_selected_run(page):
    """A run stopped early, judged by accuracy: the rule is at the Trainer's best step, not the lowest eval
    loss; a run judged by its eval loss while no early stop happened: at the lowest."""
    ui, runs_dir = page.ui, page.jobs.runs_dir
    tick = next(fn for fn in page.demo.fns.values() if fn.fn is not None and (ui.timer._id, "tick") in fn.targets
                and ui.loss_plot in fn.outputs)
    make_run(runs_dir, "by-loss", TRAIN + EVALS, {})
    make_run(runs_dir, "by-accuracy", TRAIN + EVALS, {"metric_for_best_model": "mean_token_accuracy"},
             stopped_early={"step": 6, "best_step": 2, "best_metric": 0.7, "metric": "eval_mean_token_accuracy"})
    assert best_rows(tick.fn("by-loss", None)[ui.loss_plot]) == [(4, 0.9), (4, 1.8), (4, 3.0)]
    assert best_rows(tick.fn("by-accuracy", None)[ui.loss_plot]) == [(2, 0.9), (2, 2.4), (2, 3.0)]
