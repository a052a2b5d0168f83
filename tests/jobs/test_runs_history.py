"""Runs read back from their folders (finetune.jobs.history), the chart data built from them
(finetune.ui.plots), whom a page follows, presets resetting what they do not set, and Resume: a cancelled
run queued again as `train RUN --resume` in its own folder, its curve going on with no step twice."""

import json
import time

import pytest
import yaml

from finetune.errors import RunFileError
from finetune.jobs import JobManager, history
from finetune.train.runfolder import RunFolder


def make_run(runs_dir, name, state="completed", r=8, records=(), **status):
    """A run folder as the job leaves it (run.yaml, status.json, metrics.jsonl), written by hand."""
    folder = RunFolder(runs_dir / name)
    folder.path.mkdir(parents=True)
    run = {"model": {"name_or_path": "demo"}, "lora": {"r": r, "lora_alpha": 16, "target_modules": "all-linear"},
           "training": {"output_dir": str(folder.path), "max_steps": 10}}
    folder.run_yaml.write_text(yaml.safe_dump(run))
    folder.write_status(state=state, step=10, max_steps=10, started_at=100.0, finished_at=160.0, **status)
    for record in records:
        folder.append_metrics(record)
    return folder


def test_curves_keep_one_point_per_step_in_order():
    records = [{"step": 2, "loss": 3.0, "learning_rate": 1e-3}, {"step": 1, "loss": 4.0},
               {"step": 2, "loss": 2.5}, {"step": 2, "eval_loss": 2.9}, {"step": 3, "loss": float("nan")},
               {"step": 4, "loss": None}, {"loss": 1.0}]
    curves = history.curves(records)
    assert curves["train"] == [(1, 4.0), (2, 2.5)]   # the last record of a step wins; no NaN, no step-less
    assert curves["eval"] == [(2, 2.9)]
    assert curves["learning_rate"] == [(2, 1e-3)]


def test_summaries_newest_first_with_losses_speed_and_count(tmp_path):
    records = [{"step": s, "loss": loss, "tokens_per_second": t}
               for s, loss, t in ((1, 4.0, 10), (2, 2.0, 500), (3, 3.0, 600))]
    make_run(tmp_path, "a-run", records=records, submitted_at=1.0)
    make_run(tmp_path, "b-run", state="failed", r=4, submitted_at=2.0, error="boom")
    (tmp_path / ".uploads").mkdir()   # not a run
    rows = history.summaries(tmp_path)
    assert [r["run_id"] for r in rows] == ["b-run", "a-run"]
    a = rows[1]
    assert (a["last_loss"], a["best_loss"], a["tokens_per_second"], a["duration_s"]) == (3.0, 2.0, 500, 60.0)
    assert a["trainable"] == 36_992 and a["r"] == 8 and a["targets"] == "all-linear"   # the demo at r=8
    assert rows[0]["trainable"] < a["trainable"] and rows[0]["last_loss"] is None
    RunFolder(tmp_path / "a-run").append_metrics({"step": 4, "loss": 1.0})   # the cache sees the change
    assert history.summaries(tmp_path)[1]["best_loss"] == 1.0


def test_config_diff_lists_only_differing_keys():
    runs = {"x": {"lora": {"r": 8, "lora_alpha": 16}, "training": {"output_dir": "runs/x", "seed": 1}},
            "y": {"lora": {"r": 16, "lora_alpha": 16, "use_dora": True}, "training": {"output_dir": "runs/y",
                                                                                      "seed": 1}}}
    assert history.config_diff(runs) == [("lora.r", [8, 16]), ("lora.use_dora", [None, True])]


def test_the_runs_table_and_the_diff_text(tmp_path):
    from finetune.ui.runs import compare_data, table

    make_run(tmp_path, "x", r=8, records=[{"step": 1, "loss": 2.0}])
    make_run(tmp_path, "y", r=16, records=[{"step": 1, "loss": 1.5}])
    frame = table(history.summaries(tmp_path))
    assert list(frame.columns[:2]) == ["run", "state"] and frame.loc[0, "r / alpha"] in ("8 / 16", "16 / 16")
    chart, diff = compare_data(tmp_path, ["x", "y", "../etc"])   # not a run: ignored
    assert "- `lora.r`: 8 | 16" in diff and "output_dir" not in diff
    assert sorted(chart["run"]) == ["x", "y"]


def test_loss_frames_always_name_every_series():
    from finetune.ui import plots

    empty = plots.loss_frame(None)
    assert sorted(empty["series"]) == ["best eval", "eval", "train"] and empty["step"].isna().all()
    frame = plots.loss_frame({"train": [(1, 3.0)], "eval": []})
    assert sorted(frame["series"][:3]) == ["best eval", "eval", "train"] and len(frame) == 4
    assert plots.x_lim(20) == [0, plots.MIN_SPAN] and plots.x_lim(500) == [0, 500]
    assert plots.x_lim(None, 90) == [0, 160]   # unknown length: the span doubles


def test_a_page_follows_its_own_runs_and_api_runs_when_idle():
    from finetune.ui.live import follow

    runs = [{"run_id": "new", "state": "queued", "origin": None}, {"run_id": "old", "state": "completed"}]
    assert follow(runs, {"old"}, set(), "old") is None            # another page launched it
    assert follow(runs, {"old"}, {"new"}, "old") == "new"         # this page did
    api = [{**runs[0], "origin": "api"}, runs[1]]
    assert follow(api, {"old"}, set(), "old") == "new"            # through the API, while idle
    busy = [api[0], {"run_id": "old", "state": "running"}]
    assert follow(busy, {"old"}, set(), "old") is None            # not while watching an active run


def test_a_preset_resets_what_it_does_not_set():
    from finetune.runfile.presets import load_preset
    from finetune.ui.events import preset_run

    current = {"model": {"name_or_path": "/models/mine", "quantization": "none"}, "data": {"path": "mine.jsonl"},
               "training": {"max_steps": 7}}
    qlora = preset_run(current, load_preset("qlora"))
    unsloth = preset_run(qlora, load_preset("unsloth"))
    assert qlora["model"]["quantization"] == "4bit"
    assert "quantization" not in unsloth["model"] and "optim" not in unsloth["training"]
    assert "max_grad_norm" not in unsloth["training"] and unsloth["training"]["max_steps"] == 200   # the default
    assert unsloth["model"]["name_or_path"] == "/models/mine" and unsloth["data"]["path"] == "mine.jsonl"


def test_resume_refuses_what_cannot_be_resumed(tmp_path):
    make_run(tmp_path, "done", state="completed")
    make_run(tmp_path, "no-checkpoint", state="cancelled")
    manager = JobManager(tmp_path, slots=1, poll_interval=0.2)
    try:
        with pytest.raises(RunFileError, match="only a cancelled or failed"):
            manager.resume("done")
        with pytest.raises(RunFileError, match="no checkpoint"):
            manager.resume("no-checkpoint")
    finally:
        manager.shutdown()


@pytest.mark.slow
def test_a_cancelled_run_resumes_in_its_folder_without_duplicate_steps(tmp_path):
    run = ("model: {name_or_path: demo}\nlora: {r: 4}\ndata: {path: demo, max_length: 64}\n"
           "training: {max_steps: 16, per_device_train_batch_size: 2, logging_steps: 1, save_steps: 4}\n")
    manager = JobManager(tmp_path / "runs", slots=1, poll_interval=0.2)
    try:
        run_id = manager.submit(run)
        deadline = time.monotonic() + 240
        while (manager.status(run_id).get("step") or 0) < 6:
            assert time.monotonic() < deadline, manager.log_tail(run_id)
            time.sleep(0.2)
        manager.cancel(run_id)
        assert manager.wait(run_id, timeout=120)["state"] == "cancelled"
        before = [m["step"] for m in manager.metrics(run_id) if "loss" in m]
        assert history.checkpoints(RunFolder(tmp_path / "runs" / run_id))
        assert manager.resume(run_id)["state"] in ("queued", "running")
        status = manager.wait(run_id, timeout=240)
        assert status["state"] == "completed", manager.log_tail(run_id)
        steps = [m["step"] for m in manager.metrics(run_id) if "loss" in m]
        assert steps == sorted(set(steps)) and steps[-1] == 16 and steps[0] == before[0]
        assert json.loads((tmp_path / "runs" / run_id / "status.json").read_text())["resumed_from"]
        assert "resuming from its last checkpoint" in manager.log_tail(run_id, 100_000)
    finally:
        manager.shutdown(cancel_jobs=True)
