"""The job's small promises: the built-in demo run file can be run again (a fresh numbered folder), and
resuming a finished run says it was already complete instead of reporting "0 steps in 0.0 s"."""

import pytest
import yaml

from finetune.demo import RUN_FILE
from finetune.runfile import load_run
from finetune.train.job import main
from finetune.train.resume import fresh_demo_folder
from finetune.train.runfolder import RunFolder


def test_the_demo_run_file_trains_into_a_fresh_folder_when_its_own_is_taken(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    run = load_run(RUN_FILE)
    assert fresh_demo_folder(run, str(RUN_FILE), resume=False) is None   # nothing there yet: its own folder
    (tmp_path / "runs" / "demo" / "adapter").mkdir(parents=True)
    note = fresh_demo_folder(run, str(RUN_FILE), resume=False)
    assert run.training.output_dir == "runs/demo-2" and '"runs/demo-2"' in note
    (tmp_path / "runs" / "demo-2").mkdir()
    run = load_run(RUN_FILE)
    fresh_demo_folder(run, str(RUN_FILE), resume=False)
    assert run.training.output_dir == "runs/demo-3"
    run = load_run(RUN_FILE)
    assert fresh_demo_folder(run, str(RUN_FILE), resume=True) is None and run.training.output_dir == "runs/demo"
    other = tmp_path / "mine.yaml"   # any other run file keeps the refusal: it protects a user's work
    other.write_text(RUN_FILE.read_text())
    assert fresh_demo_folder(load_run(other), str(other), resume=False) is None


@pytest.mark.slow
def test_resuming_a_finished_run_says_it_was_complete(tmp_path, capsys):
    out = tmp_path / "out"
    run = {"model": {"name_or_path": "demo"}, "lora": {"r": 4}, "data": {"path": "demo", "max_length": 64},
           "training": {"output_dir": str(out), "max_steps": 2, "per_device_train_batch_size": 2,
                        "gradient_accumulation_steps": 1, "save_steps": 2}}
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(run))
    assert main(str(path)) == 0
    capsys.readouterr()
    assert main(str(path), resume=True) == 0
    text = capsys.readouterr().out
    assert f"run: {path}, resuming from its last checkpoint; checking the settings" in text
    assert "trained: nothing left to train: the run was already complete at step 2 (checkpoint-2)" in text
    assert "mean loss 0.0000" not in text and RunFolder(out).read_status()["state"] == "completed"
