"""Threat: a run folder the job cannot write, or a checkpoint half written. Before, `train` with output_dir a
file or a read-only folder loaded everything and died with two tracebacks (exit 1); a save cut short (disk
full) left a checkpoint-N/ that --resume picked and failed on. Now: exit 2 with one line in setup, and
--resume goes on from the newest complete checkpoint, setting the incomplete one aside."""

import json
from pathlib import Path

import pytest
import yaml

from finetune.train import checkpoints
from finetune.train.job import main
from finetune.train.runfolder import RunFolder

FAST = {"max_steps": 2, "per_device_train_batch_size": 2, "gradient_accumulation_steps": 1, "logging_steps": 1}


def write_run(tmp_path, output_dir, **training) -> str:
    run = {"lora": {"r": 4, "lora_alpha": 8}, "data": {"path": "demo", "max_length": 64},
           "training": {"output_dir": str(output_dir), **FAST, **training}}
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(run))
    return str(path)


@pytest.mark.slow
@pytest.mark.parametrize("where, expected", [("file", "is a file, not a folder"),
                                             ("/sys/finetune-test/run", "cannot be written"),
                                             ("file/run", "is a file, not a folder")])
def test_an_unwritable_output_dir_is_one_line_and_exit_2(tmp_path, capsys, where, expected):
    (tmp_path / "file").write_text("not a folder")
    output_dir = where if where.startswith("/") else tmp_path / where
    assert main(write_run(tmp_path, output_dir)) == 2
    captured = capsys.readouterr()
    errors = [line for line in captured.err.splitlines() if line.strip()]
    assert len(errors) == 1 and errors[0].startswith("error: training.output_dir: ") and expected in errors[0]
    assert "Traceback" not in captured.err + captured.out
    assert (tmp_path / "file").read_text() == "not a folder"


def fake_checkpoint(folder, step, complete=True):
    path = folder / f"checkpoint-{step}"
    path.mkdir(parents=True)
    (path / "adapter_model.safetensors").write_bytes(b"weights")
    if complete:
        (path / "trainer_state.json").write_text(json.dumps({"global_step": step}))
    return path


def test_the_newest_complete_checkpoint_is_chosen(tmp_path):
    fake_checkpoint(tmp_path, 2)
    fake_checkpoint(tmp_path, 10)
    half = fake_checkpoint(tmp_path, 12, complete=False)
    truncated = fake_checkpoint(tmp_path, 14)
    (truncated / "trainer_state.json").write_text('{"global_step": 1')   # disk full mid-write
    found, skipped = checkpoints.last_complete(tmp_path)
    assert found == tmp_path / "checkpoint-10" and skipped == [truncated, half]
    assert [p.name for p in checkpoints.set_aside(skipped)] == ["incomplete-checkpoint-14",
                                                               "incomplete-checkpoint-12"]
    assert [p.name for p in checkpoints.checkpoints(tmp_path)] == ["checkpoint-2", "checkpoint-10"]


@pytest.mark.slow
def test_resume_skips_a_checkpoint_whose_save_did_not_finish(tmp_path, capsys):
    out = tmp_path / "out"
    path = write_run(tmp_path, out, save_steps=1, save_total_limit=3)
    assert main(path) == 0
    folder = RunFolder(out)
    assert {p.name for p in checkpoints.checkpoints(out)} == {"checkpoint-1", "checkpoint-2"}
    # The save of step 2 was cut short: its optimizer and trainer state never reached the disk.
    for name in ("trainer_state.json", "optimizer.pt"):
        (out / "checkpoint-2" / name).unlink(missing_ok=True)
    run = yaml.safe_load(Path(path).read_text())
    run["training"]["max_steps"] = 3
    Path(path).write_text(yaml.safe_dump(run))
    capsys.readouterr()
    assert main(path, resume=True) == 0, capsys.readouterr()
    log = capsys.readouterr().out
    assert "skipping an incomplete checkpoint" in log and "incomplete-checkpoint-2" in log
    status = folder.read_status()
    assert status["state"] == "completed" and status["resumed_from"].endswith("checkpoint-1")
    assert [r["step"] for r in folder.read_metrics()] == [1, 2, 3]


def test_resume_with_only_incomplete_checkpoints_is_one_line(tmp_path):
    from finetune.runfile import RunConfig
    from finetune.train.resume import folder_problems

    fake_checkpoint(tmp_path, 5, complete=False)
    run = RunConfig.from_dict({"training": {"output_dir": str(tmp_path)}})
    [problem] = folder_problems(run, resume=True)
    assert "no complete checkpoint" in problem and "checkpoint-5" in problem
