"""Watching a run (issue 18): early stopping keeps the best checkpoint as the adapter and says so; the
trackers of training.report_to write inside the run folder, and one that cannot start is one line before
anything loads; the samples are answered at each evaluation into samples.jsonl and carried by /status."""

import json
import os
import subprocess
import sys

import pytest
import yaml

from finetune.errors import RunFileError
from finetune.jobs import report
from finetune.runfile import parse_run
from finetune.runfile.reporters import installed
from finetune.train.job import main
from finetune.train.runfolder import RunFolder
from finetune.train.watch import trainer_args
from finetune.ui.access import visitor_status

FAST = {"per_device_train_batch_size": 4, "gradient_accumulation_steps": 1, "logging_steps": 1}


def write_run(tmp_path, training, data=None, samples=None, name="run"):
    out = tmp_path / f"{name}-out"
    run = {"model": {"name_or_path": "demo"}, "lora": {"r": 8, "lora_alpha": 16},
           "data": {"path": "demo", "max_length": 96, **(data or {})},
           "training": {"output_dir": str(out), **FAST, **training}}
    if samples is not None:
        run["samples"] = samples
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(run), encoding="utf-8")
    return str(path), RunFolder(out)


def problems_of(text: str) -> list[str]:
    with pytest.raises(RunFileError) as info:
        parse_run(text)
    return info.value.problems


# ----- checks before anything loads -----

def test_early_stopping_without_an_evaluation_split_is_one_line_naming_the_field():
    [problem] = problems_of("training: {early_stopping_patience: 3}")
    assert problem.startswith("training.early_stopping_patience: needs an evaluation split") and "data.eval_size" \
        in problem
    [problem] = problems_of("data: {eval_size: 8}\ntraining: {early_stopping_patience: 3, eval_strategy: 'no'}")
    assert problem.startswith("training.early_stopping_patience: needs evaluations")
    [problem] = problems_of("data: {eval_size: 8}\ntraining: {early_stopping_threshold: 0.1}")
    assert problem.startswith("training.early_stopping_threshold: only means something with")
    [problem] = problems_of("data: {eval_size: 8}\ntraining: {early_stopping_patience: 2, "
                            "metric_for_best_model: bleu}")
    assert problem.startswith("training.metric_for_best_model: the evaluation reports")
    run = parse_run("data: {eval_size: 8}\ntraining: {early_stopping_patience: 2, metric_for_best_model: "
                    "eval_mean_token_accuracy}")
    assert run.training.early_stopping_patience == 2


def test_early_stopping_sets_what_it_needs_and_keeps_what_the_user_set():
    run = parse_run("data: {eval_size: 8}\ntraining: {early_stopping_patience: 2, eval_steps: 5, save_steps: 100}")
    kwargs = {"eval_strategy": "steps", "save_strategy": "steps", "eval_steps": 5, "save_steps": 100}
    notes = trainer_args(run, kwargs, has_eval=True)
    assert kwargs["load_best_model_at_end"] is True and kwargs["save_steps"] == 5
    assert kwargs["metric_for_best_model"] == "loss" and "checkpoint at every evaluation" in notes[0]
    run = parse_run("data: {eval_size: 8}\ntraining: {early_stopping_patience: 2, load_best_model_at_end: false}")
    kwargs = {"eval_strategy": "steps", "save_strategy": "steps", "eval_steps": 10, "save_steps": 100,
              **run.training_extra}
    trainer_args(run, kwargs, has_eval=True)
    assert kwargs["load_best_model_at_end"] is False and kwargs["save_steps"] == 100


def test_trackers_without_credentials_pass_and_ones_that_send_data_away_are_refused_on_a_space(monkeypatch):
    monkeypatch.delenv("SPACE_ID", raising=False)
    assert parse_run("training: {report_to: [tensorboard, trackio]}").training_extra["report_to"] == \
        ["tensorboard", "trackio"]
    monkeypatch.setenv("SPACE_ID", "owner/space")
    for name in ("wandb", "mlflow"):
        [problem] = problems_of(f"training: {{report_to: [tensorboard, {name}]}}")
        assert problem.startswith(f'training.report_to: "{name}" sends metrics with credentials found on this '
                                  "Space"), problem
    assert parse_run("training: {report_to: trackio}")


@pytest.mark.skipif(installed("wandb"), reason="wandb is installed here")
def test_a_tracker_whose_package_is_missing_is_one_line(monkeypatch):
    monkeypatch.delenv("SPACE_ID", raising=False)
    [problem] = problems_of("training: {report_to: wandb}")
    assert problem == 'training.report_to: "wandb" needs the wandb package, which is not installed here ' \
                      "(pip install wandb)"


def test_samples_are_bounded():
    assert problems_of("samples: {prompts: [" + ", ".join(["hi"] * 9) + "]}")[0].startswith(
        "samples.prompts: must be a list of at most 8 prompts")
    assert problems_of(f"samples: {{prompts: [{'x' * 2001}]}}")[0].startswith(
        "samples.prompts: prompt 1 has 2,001 characters")
    assert problems_of("samples: {max_new_tokens: 513}")[0].startswith("samples.max_new_tokens: must be")
    assert problems_of("samples: {prompts: ['  ']}")[0].startswith("samples.prompts: prompt 1 must be some text")


def test_status_reads_samples_and_stopped_early_as_untrusted(tmp_path):
    folder = RunFolder(tmp_path / "r")
    folder.write_status(state="completed", stopped_early={"step": 6, "best_step": "2", "best_metric": 1.5})
    folder.samples_file.write_text('{"step": 2, "prompt": "p", "answer": "a", "seconds": 0.1}\nnot json\n'
                                   '{"step": "3", "prompt": "p", "answer": "a"}\n[1]\n'
                                   + json.dumps({"step": 4, "prompt": "q" * 5000, "answer": "b"}) + "\n")
    status = report.status(folder)
    assert status["stopped_early"] == {"step": 6, "best_step": None, "best_metric": 1.5, "metric": None}
    assert [(s["step"], len(s["prompt"])) for s in status["samples"]] == [(2, 1), (4, report.SAMPLE_CHARS)]
    folder.write_status(stopped_early=[1])
    assert report.status(folder)["stopped_early"] is None
    hidden = visitor_status(status, None, {"SPACE_ID": "o/s"})
    assert hidden["samples"] == [] and visitor_status(status, None, {})["samples"] == status["samples"]


# ----- the job -----

def eval_losses(folder):
    return {r["step"]: r["eval_loss"] for r in folder.read_metrics() if "eval_loss" in r}


@pytest.mark.slow
def test_early_stopping_stops_and_keeps_the_best_checkpoint_as_the_adapter(tmp_path, capsys):
    # A learning rate far too high: the eval loss falls at the first evaluation, then jumps and stays up.
    path, folder = write_run(tmp_path, {"max_steps": 30, "learning_rate": 5e-2, "eval_steps": 2,
                                        "early_stopping_patience": 2}, data={"eval_size": 16}, samples={"prompts": []})
    assert main(path) == 0
    out = capsys.readouterr().out
    status, losses = folder.read_status(), eval_losses(folder)
    early = status["stopped_early"]
    assert status["state"] == "completed" and early["step"] == status["step"] < 30, status
    assert early["best_step"] == min(losses, key=losses.get) and early["best_metric"] == pytest.approx(
        min(losses.values())) and early["metric"] == "eval_loss"
    assert early["best_step"] < early["step"], losses   # the adapter is an earlier step's, not the last
    line = next(line for line in out.splitlines() if line.startswith("stopped early:"))
    assert f"stopped at step {early['step']} of 30; the adapter is step {early['best_step']}'s" in line
    from safetensors.torch import load_file

    kept = load_file(folder.adapter_dir / "adapter_model.safetensors")
    best = load_file(folder.path / f"checkpoint-{early['best_step']}" / "adapter_model.safetensors")
    last = load_file(folder.path / f"checkpoint-{early['step']}" / "adapter_model.safetensors")
    assert kept.keys() == best.keys() and all((kept[k] == best[k]).all() for k in kept)
    assert any((kept[k] != last[k]).any() for k in kept)
    assert report.status(folder)["stopped_early"] == early


@pytest.mark.slow
def test_tensorboard_events_hold_the_loss_and_samples_are_answered_at_each_evaluation(tmp_path, monkeypatch):
    monkeypatch.setenv("TENSORBOARD_LOGGING_DIR", "set by the job")   # restored after the in-process job
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    path, folder = write_run(tmp_path, {"max_steps": 6, "learning_rate": 3e-3, "eval_steps": 2,
                                        "report_to": ["tensorboard"]}, data={"eval_size": 8},
                             samples={"prompts": ["What do goats eat?", "Where does a frog live?"],
                                      "max_new_tokens": 8})
    assert main(path) == 0
    logs = folder.path / "tensorboard"
    events = EventAccumulator(str(logs))
    events.Reload()
    [tag] = [t for t in events.Tags()["scalars"] if t == "train/loss"]
    steps = [e.step for e in events.Scalars(tag)]
    assert steps == list(range(1, 7))
    assert [e.value for e in events.Scalars(tag)] == pytest.approx([r["loss"] for r in folder.read_metrics()
                                                                      if "loss" in r], rel=1e-5)
    assert "eval/loss" in events.Tags()["scalars"]
    samples = folder.read_samples()
    assert [(s["step"], s["prompt"]) for s in samples] == [
        (step, p) for step in (2, 4, 6) for p in ("What do goats eat?", "Where does a frog live?")]
    assert all(isinstance(s["answer"], str) and s["seconds"] >= 0 for s in samples)
    assert [s["step"] for s in report.status(folder)["samples"]] == [2, 2, 4, 4, 6, 6]


@pytest.mark.slow
def test_trackio_writes_its_database_inside_the_run_folder(tmp_path, monkeypatch):
    import sqlite3

    monkeypatch.setenv("TRACKIO_DIR", "set by the job")
    import trackio  # noqa: F401  # as in the app's warm process (TRL imports it): TRACKIO_DIR already read

    path, folder = write_run(tmp_path, {"max_steps": 3, "report_to": "trackio"})
    assert main(path) == 0
    with sqlite3.connect(folder.path / "trackio" / "run-out.db") as db:
        logged = [json.loads(m) for (m,) in db.execute("select metrics from metrics order by step")]
    assert [m["train/loss"] for m in logged if "train/loss" in m] == pytest.approx(
        [r["loss"] for r in folder.read_metrics() if "loss" in r], rel=1e-5)


HIDE = """
import importlib.abc, sys
class Hide(importlib.abc.MetaPathFinder):   # tensorboard as if it were not installed
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("tensorboard", "tensorboardX"):
            raise ModuleNotFoundError(name)
sys.meta_path.insert(0, Hide())
from finetune.cli import main
sys.exit(main(sys.argv[1:]))
"""


@pytest.mark.slow
def test_a_missing_tracker_is_refused_before_the_model_loads(tmp_path):
    path, folder = write_run(tmp_path, {"max_steps": 2, "report_to": ["tensorboard"]})
    env = {**os.environ, "PYTHONPATH": os.getcwd()}
    env.pop("SPACE_ID", None)
    done = subprocess.run([sys.executable, "-c", HIDE, "train", path], capture_output=True, text=True, env=env,
                          timeout=120)
    assert done.returncode == 2, done.stderr[-2000:]
    assert done.stderr.strip() == 'error: training.report_to: "tensorboard" needs the tensorboard package, which ' \
                                  "is not installed here (pip install tensorboard)"
    assert "Traceback" not in done.stdout + done.stderr and not folder.path.exists()
