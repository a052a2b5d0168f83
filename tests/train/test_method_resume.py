"""Cancel and resume for DPO and GRPO, as tests/train/test_train.py checks them for SFT (slow: real jobs): SIGTERM
ends a running job `cancelled` with a checkpoint and the adapter kept, and `--resume` from that checkpoint
trains to max_steps with every step logged once, the method's own curve (DPO's margin, GRPO's reward) going
on from where it stopped."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from method_runs import run_file

from finetune.train.job import main
from finetune.train.runfolder import RunFolder

pytestmark = pytest.mark.slow

# Small batches (GRPO's a multiple of its num_generations): each step is short, so the job is cancelled
# while it trains, long before its 400 steps.
METHODS = {
    "dpo": ({"name": "dpo"}, "rewards/margins", {"per_device_train_batch_size": 2}),
    "grpo": ({"name": "grpo", "num_generations": 2, "max_completion_length": 8,
              "rewards": [{"type": "contains", "text": "helper"}]}, "reward", {"per_device_train_batch_size": 2}),
}


def start_job(path: Path, log_path: Path) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).parents[2]))
    with open(log_path, "w") as log:
        return subprocess.Popen([sys.executable, "-m", "finetune", "train", str(path)], stdout=log,
                                stderr=subprocess.STDOUT, env=env, start_new_session=True)


@pytest.mark.parametrize("name", sorted(METHODS))
def test_sigterm_cancels_with_a_checkpoint_and_resume_continues_the_methods_curve(tmp_path, name):
    method, curve, training = METHODS[name]
    folder = RunFolder(tmp_path / "out")
    path = tmp_path / "run.yaml"
    run = run_file(folder.path, method, 400, **training)
    path.write_text(yaml.safe_dump(run), encoding="utf-8")
    log = tmp_path / "train.log"
    proc = start_job(path, log)
    deadline = time.time() + 240
    while folder.read_status().get("step", 0) < 3:
        assert proc.poll() is None and time.time() < deadline, log.read_text()[-3000:]
        time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=60) == 0, log.read_text()[-3000:]
    status = folder.read_status()
    step = status["step"]
    assert status["state"] == "cancelled" and 3 <= step < 400, status
    assert (folder.path / f"checkpoint-{step}").is_dir() and (folder.adapter_dir / "adapter_config.json").is_file()
    assert [r["step"] for r in folder.read_metrics() if curve in r] == list(range(1, step + 1))

    folder.append_metrics({"step": step + 1, "loss": 9.9, curve: 99.0})   # after the checkpoint: trained again
    run["training"]["max_steps"] = step + 3
    path.write_text(yaml.safe_dump(run), encoding="utf-8")
    assert main(str(path), resume=True) == 0
    status = folder.read_status()
    assert status["state"] == "completed" and status["step"] == step + 3 and status["start_step"] == step, status
    assert status["resumed_from"].endswith(f"checkpoint-{step}")
    metrics = folder.read_metrics()
    assert [r["step"] for r in metrics if "loss" in r] == list(range(1, step + 4))
    points = [r[curve] for r in metrics if curve in r]
    assert len(points) == step + 3 and 99.0 not in points, points
