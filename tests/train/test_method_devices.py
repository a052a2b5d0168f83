"""A DPO run on two devices (slow: two CPU processes with the gloo backend, launched by the job itself, as
tests/train/test_multiprocess.py does for SFT): it completes with every step logged once by rank 0, its margin and
accuracy among them, and an adapter that plain PEFT loads with the shapes of a one-process DPO run's."""

import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from method_runs import run_file

from finetune.train.runfolder import RunFolder

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
JOB_TIMEOUT = 420  # two ranks import torch, transformers and TRL at once on two shared cores
STEPS = 4


def train_cli(tmp_path: Path, name: str, **training) -> tuple[subprocess.CompletedProcess, RunFolder]:
    out = tmp_path / name
    path = tmp_path / f"{name}.yaml"
    # batch 4 per process: each rank takes its own 4 pairs of a step's 8
    run = run_file(out, {"name": "dpo"}, STEPS, per_device_train_batch_size=4, **training)
    path.write_text(yaml.safe_dump(run), encoding="utf-8")
    done = subprocess.run([sys.executable, "-m", "finetune", "train", str(path)], capture_output=True, text=True,
                          cwd=ROOT, timeout=JOB_TIMEOUT)
    assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]
    return done, RunFolder(out)


def adapter_shapes(folder: RunFolder) -> dict:
    from safetensors import safe_open

    with safe_open(str(folder.adapter_dir / "adapter_model.safetensors"), "pt") as f:
        return {key: tuple(f.get_slice(key).get_shape()) for key in f.keys()}  # noqa: SIM118 -- safe_open has no __iter__


def test_dpo_on_two_cpu_processes_completes_with_its_margin_logged_once_per_step(tmp_path):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    from finetune.demo import resolve_model

    done, folder = train_cli(tmp_path, "ddp", devices=2, strategy="ddp")
    output = done.stdout + done.stderr
    status = folder.read_status()
    assert status["state"] == "completed" and status["world_size"] == 2 and status["step"] == STEPS, status
    assert "launch: 2 processes (ddp, cpu, gloo)" in output and "[rank1] " in output
    assert "[rank0] method: dpo (DPOTrainer)" in output
    metrics = [m for m in folder.read_metrics() if "loss" in m]
    assert [m["step"] for m in metrics] == list(range(1, STEPS + 1))   # each step once: rank 0 alone writes
    assert all("rewards/margins" in m and "rewards/accuracies" in m for m in metrics), metrics[-1]

    base = AutoModelForCausalLM.from_pretrained(resolve_model("demo"))
    model = PeftModel.from_pretrained(base, str(folder.adapter_dir))   # plain PEFT loads it
    assert any("lora_B" in k and v.abs().sum() > 0 for k, v in model.state_dict().items())   # and it trained

    _, single = train_cli(tmp_path, "one")
    assert single.read_status().get("world_size") == 1
    assert adapter_shapes(folder) == adapter_shapes(single)
