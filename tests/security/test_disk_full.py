"""Threat: the disk fills up during a checkpoint. Before (measured on a 160 KB tmpfs): exit 1 with three
tracebacks (98 lines), status.json left at `running` (writing `failed` needed space too), a partial
checkpoint-N and an empty `.status.<pid>.tmp`. Now: one line, `disk full while saving checkpoint-N (No space
left on device): free space on the disk of ... and resume`, in train.log and status.json (state failed);
the partial checkpoint is removed (its space is what the status needs), the earlier ones stay, and --resume
goes on from the last of them; no temporary file is left, and where even the status cannot be written the
job manager reads the job's `error:` line from train.log.

A full disk is simulated without filling one: a file-size limit (RLIMIT_FSIZE, `ulimit -f`: EFBIG, which
counts as no space) in a child process, and torch.save failing with ENOSPC halfway through a checkpoint of
a real training run.
"""

import errno
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml

from finetune.jobs.process import exit_reason
from finetune.train import checkpoints
from finetune.train.runfolder import RunFolder

ROOT = str(Path(__file__).resolve().parents[2])


def limited(code: str, folder: Path, limit_bytes: int = 200) -> subprocess.CompletedProcess:
    """Run `code` in a child whose files cannot grow past `limit_bytes` (a write beyond fails with EFBIG)."""
    prelude = textwrap.dedent(f"""
        import resource, signal, sys
        from pathlib import Path
        from finetune.train.runfolder import RunFolder
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)   # an error from write(), not a killed process
        resource.setrlimit(resource.RLIMIT_FSIZE, ({limit_bytes}, resource.getrlimit(resource.RLIMIT_FSIZE)[1]))
        folder = RunFolder({str(folder)!r})
    """)
    return subprocess.run([sys.executable, "-c", prelude + textwrap.dedent(code)], capture_output=True,
                          text=True, env=dict(os.environ, PYTHONPATH=ROOT), timeout=60)


def test_a_status_write_on_a_full_disk_leaves_the_old_status_and_no_temporary_file(tmp_path):
    folder = RunFolder(tmp_path / "run")
    folder.write_status(state="running", step=3)
    before = folder.status_file.read_text()
    proc = limited("""
        try:
            folder.write_status(step=4, error="x" * 1000)
        except OSError as exc:
            print(exc.errno)
    """, folder.path)
    assert proc.stdout.strip() == str(errno.EFBIG), proc.stderr
    assert folder.status_file.read_text() == before
    assert sorted(p.name for p in folder.path.iterdir()) == [".status.lock", "status.json"]   # no .status.*.tmp


def test_when_not_even_the_failed_status_fits_the_manager_reads_the_jobs_line(tmp_path):
    folder = RunFolder(tmp_path / "run")
    folder.write_status(state="running", step=3, error=None)
    proc = limited("""
        import errno, os
        from finetune.train import outcome
        print("run: run.yaml; checking the settings, the model and the data", flush=True)
        try:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        except OSError as exc:
            sys.exit(outcome.failed(folder, exc, main_rank=True))
    """, folder.path, limit_bytes=150)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr
    folder.log_file.write_text(proc.stdout + proc.stderr)
    assert folder.read_status()["state"] == "running"   # the job could not write it ...
    reason = exit_reason(folder, None)                # ... so the manager says what the job said
    assert reason.startswith("disk full while writing the run folder (No space left on device): free space")
    assert not list(folder.path.glob(".status.*.tmp"))


@pytest.mark.parametrize("exc, words", [
    (OSError(errno.ENOSPC, "No space left on device"), "No space left on device"),
    (OSError(errno.EFBIG, "File too large"), "File too large"),
    (Exception("No space left on device (os error 28)"), "No space left on device"),   # tokenizers
    (RuntimeError("Error while serializing: I/O error: No space left on device (os error 28)"),
     "No space left on device"),                                                      # safetensors
    (RuntimeError("Disk quota exceeded"), "Disk quota exceeded"),
    (ValueError("loss is nan"), None),
    (RuntimeError("failed (os error 2)"), None),
])
def test_no_space_in_each_librarys_words(tmp_path, exc, words):
    from finetune.train import diskfull

    assert diskfull.why(exc, tmp_path) == words


def test_no_space_deep_in_an_exceptions_chain(tmp_path):
    from finetune.train import diskfull

    try:
        try:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        except OSError as inner:
            raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 576 vs 534") from inner
    except RuntimeError as exc:   # torch.save's own words say nothing of space
        assert diskfull.why(exc, tmp_path) == os.strerror(errno.ENOSPC)


@pytest.mark.slow
def test_a_full_disk_during_a_checkpoint_is_one_line_and_resume_goes_on(tmp_path, capsys, monkeypatch):
    import torch

    from finetune.train.job import main

    out = tmp_path / "out"
    run = {"lora": {"r": 4, "lora_alpha": 8}, "data": {"path": "demo", "max_length": 64},
           "training": {"output_dir": str(out), "max_steps": 3, "per_device_train_batch_size": 2,
                        "gradient_accumulation_steps": 1, "logging_steps": 1, "save_steps": 1}}
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(run))
    real_save = torch.save

    def save(obj, f, *args, **kwargs):
        """The disk fills up halfway through checkpoint-2: a file is begun, then there is no more room."""
        if "checkpoint-2" in str(f):
            Path(f).write_bytes(b"\0" * 100)
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(f))
        return real_save(obj, f, *args, **kwargs)

    monkeypatch.setattr(torch, "save", save)
    assert main(str(path)) == 1
    said = capsys.readouterr()
    folder = RunFolder(out)
    status = folder.read_status()
    assert status["state"] == "failed", status
    assert status["error"].startswith("disk full while saving checkpoint-2 (No space left on device): free "
                                      f"space on the disk of {out} (")
    assert status["error"].endswith("and resume (it goes on from checkpoint-1)"), status["error"]
    errors = [line for line in said.err.splitlines() if line.startswith("error: ")]
    assert errors == [f"error: {status['error']}"] and "Traceback" not in said.err + said.out, said.err
    assert [p.name for p in checkpoints.checkpoints(out)] == ["checkpoint-1"]   # the partial one is gone
    assert checkpoints.is_complete(out / "checkpoint-1")
    assert not list(out.glob(".status.*.tmp")) and not list(out.glob("*.tmp"))

    monkeypatch.setattr(torch, "save", real_save)   # space was freed
    assert main(str(path), resume=True) == 0
    status = folder.read_status()
    assert status["state"] == "completed" and status["resumed_from"].endswith("checkpoint-1"), status
    assert [r["step"] for r in folder.read_metrics() if "loss" in r] == [1, 2, 3]
    assert json.loads((out / "adapter" / "adapter_config.json").read_text())["r"] == 4
