"""What counts as a checkpoint has one owner, finetune/train/checkpoints.py: a `checkpoint-N` folder (N
digits), complete once the Trainer's last file, trainer_state.json, is written beside its weights. The job's
--resume, the runs table (and through it the page's Resume button), and the Playground list checkpoints
through it. The page used to offer Resume for any `checkpoint-*` folder, and the job then refused a run whose
only checkpoint was a save cut short; a `checkpoint-abc` folder counted for one reader and not another."""

import json

from finetune.adapter import source
from finetune.jobs import history
from finetune.runfile import RunConfig
from finetune.train import checkpoints
from finetune.train.resume import folder_problems
from finetune.train.runfolder import RunFolder


def checkpoint(folder, name: str, complete: bool = True, adapter: bool = True):
    path = folder / name
    path.mkdir(parents=True)
    if adapter:
        (path / "adapter_config.json").write_text(json.dumps({"peft_type": "LORA", "r": 4}))
        (path / "adapter_model.safetensors").write_bytes(b"weights")
    if complete:
        (path / "trainer_state.json").write_text(json.dumps({"global_step": 1, "log_history": []}))
    return path


def job_resumes(folder) -> bool:
    run = RunConfig.from_dict({"model": {"name_or_path": "demo"}, "training": {"output_dir": str(folder)}})
    return not folder_problems(run, resume=True)


def test_one_listing_for_the_job_the_runs_table_and_the_playground(tmp_path):
    checkpoint(tmp_path, "checkpoint-2")
    checkpoint(tmp_path, "checkpoint-10")
    checkpoint(tmp_path, "checkpoint-14", complete=False)    # a save cut short, its adapter already written
    checkpoint(tmp_path, "checkpoint-abc")                   # not a Trainer's name, however complete
    checkpoint(tmp_path, "incomplete-checkpoint-12")         # one the job set aside
    (tmp_path / "checkpoint-20").write_text("a file")        # not a folder
    assert [p.name for p in checkpoints.checkpoints(tmp_path)] == ["checkpoint-2", "checkpoint-10", "checkpoint-14"]
    assert checkpoints.complete_steps(tmp_path) == history.checkpoints(RunFolder(tmp_path)) == [2, 10]
    assert [step for step, _ in source.checkpoints(tmp_path)] == [2, 10, 14]   # trying needs only the adapter
    assert checkpoints.resumable(tmp_path) and job_resumes(tmp_path)


def test_a_run_whose_saves_all_did_not_finish_is_resumable_for_nobody(tmp_path):
    checkpoint(tmp_path, "checkpoint-4", complete=False)
    checkpoint(tmp_path, "checkpoint-abc")
    assert not checkpoints.resumable(tmp_path) and not job_resumes(tmp_path)
    assert history.checkpoints(RunFolder(tmp_path)) == []   # the page offers no Resume


def test_a_checkpoint_without_its_adapter_is_not_offered_to_try(tmp_path):
    checkpoint(tmp_path, "checkpoint-3", complete=False, adapter=False)
    assert source.checkpoints(tmp_path) == [] and checkpoints.checkpoints(tmp_path) == [tmp_path / "checkpoint-3"]


def test_no_folder_has_no_checkpoints(tmp_path):
    assert checkpoints.checkpoints(tmp_path / "missing") == [] == history.checkpoints(RunFolder(tmp_path / "missing"))
    assert not checkpoints.resumable(tmp_path / "missing")


def test_a_state_file_is_judged_again_once_its_save_finishes(tmp_path):
    path = checkpoint(tmp_path, "checkpoint-6", complete=False)
    (path / "trainer_state.json").write_text('{"global_step": 6, "log_hi')   # being written
    assert not checkpoints.is_complete(path) and not checkpoints.resumable(tmp_path)
    (path / "trainer_state.json").write_text(json.dumps({"global_step": 6, "log_history": []}))
    assert checkpoints.is_complete(path) and checkpoints.resumable(tmp_path)
def test_the_manager_resumes_only_what_the_job_resumes(tmp_path):
    import pytest

    from finetune.errors import RunFileError
    from finetune.jobs import JobManager

    manager = JobManager(tmp_path / "runs", slots=1)
    try:
        for name, made in (("20260101-000000-cut", "checkpoint-4"), ("20260101-000001-odd", "checkpoint-abc")):
            folder = RunFolder(tmp_path / "runs" / name)
            folder.path.mkdir(parents=True)
            folder.run_yaml.write_text("model: {name_or_path: demo}\n")
            folder.write_status(state="cancelled", step=4)
            checkpoint(folder.path, made, complete=made == "checkpoint-abc")
            assert not job_resumes(folder.path)
            with pytest.raises(RunFileError, match="no checkpoint to go on from"):
                manager.resume(name)
    finally:
        manager.shutdown()
