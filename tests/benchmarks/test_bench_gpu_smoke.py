"""benchmarks/bench_gpu.py --smoke: the GPU benchmark's code paths on the CPU (tiny configs, 2 steps): every
side trains, and the CSV has its columns."""

import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "benchmarks"))


@pytest.mark.slow
def test_smoke_trains_both_sides_and_writes_the_csv(tmp_path):
    from bench_gpu import FIELDS

    out = tmp_path / "gpu.csv"
    # The speed and ragged pairs alone (about two minutes on two quiet cores); --budget-s only guards a busy
    # machine.
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "bench_gpu.py"), "--smoke", "--qlora-models",
                           "--grid-models", "--trl-defaults", "--budget-s", "360", "--cache", str(tmp_path),
                           "--out", str(out)], capture_output=True, text=True, timeout=460)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    with out.open() as f:
        reader = csv.DictReader(f)
        rows = list(reader)
    assert reader.fieldnames == FIELDS
    assert [r["kind"] for r in rows] == ["build", "speed", "speed", "speed", "ragged", "ragged"]
    speed = {r["side"]: r for r in rows if r["kind"] == "speed"}
    assert set(speed) == {"finetune", "plain_trl", "trl_defaults"}, done.stdout
    # --trl-defaults: plain TRL as a user who sets nothing runs it, with SFTConfig's gradient checkpointing on
    assert [speed[s]["gradient_checkpointing"] for s in ("finetune", "plain_trl", "trl_defaults")] == [
        "False", "False", "True"]
    logs = {s: next(tmp_path.glob(f"runs/*-speed-*-{s}.log")).read_text() for s in ("plain_trl", "trl_defaults")}
    assert "gradient_checkpointing: False" in logs["plain_trl"]
    assert "gradient_checkpointing: True" in logs["trl_defaults"]
    assert "speed-Meta-Llama-3-8B-none-0 vs TRL's defaults (checkpointing on):" in done.stdout
    for side, r in speed.items():
        assert r["status"] == "ok", (side, r, done.stdout)
        assert int(r["tokens"]) == 2 * 2 * 32 and float(r["train_s"]) > 0 and float(r["tokens_per_s"]) > 0
        assert float(r["wall_s"]) > float(r["train_s"])
        assert int(r["estimate_total"]) > 0     # `finetune count --json`'s memory total, for both rows
    # Same data, seed and LoRA: the first step's loss agrees.
    for baseline in ("plain_trl", "trl_defaults"):
        assert float(speed["finetune"]["first_loss"]) == pytest.approx(float(speed[baseline]["first_loss"]), abs=0.01)
    # Ragged text: both sides train the same real tokens, fewer than full rows would hold.
    ragged = {r["side"]: r for r in rows if r["kind"] == "ragged"}
    assert {r["status"] for r in ragged.values()} == {"ok"}, done.stdout
    assert ragged["finetune"]["tokens"] == ragged["plain_trl"]["tokens"]
    assert ragged["finetune"]["note"].startswith("batches: ") and " of 2 padding-free" in ragged["finetune"]["note"]
    assert 2 * 2 * 32 / 8 < int(ragged["finetune"]["tokens"]) < 2 * 2 * 32
    assert float(ragged["finetune"]["first_loss"]) == pytest.approx(float(ragged["plain_trl"]["first_loss"]), abs=0.01)
    assert "finetune train against plain TRL" in done.stdout
    assert "ragged-Meta-Llama-3-8B-none-0:" in done.stdout


def test_kernels_add_a_liger_row_to_each_speed_pair_only(tmp_path):
    """--kernels: each speed pair gains `finetune train` with use_liger_kernel, compared with the same plain
    TRL row; the QLoRA pair stays a pair."""
    from argparse import Namespace

    from bench_gpu import run_file
    from gpu_plan import plan

    args = Namespace(kernels=True, trl_defaults=False, reps=1, models=["Qwen2.5-0.5B"], ragged_models=[], qlora_models=["Meta-Llama-3-8B"],
                     grid_models=[], smoke=False, batch=4, length=1024, steps=25)
    rows = plan(args)
    speed = {r.side for r in rows if r.kind == "speed"}
    assert speed == {"finetune", "liger", "plain_trl"}
    assert {r.side for r in rows if r.kind == "qlora"} == {"finetune", "plain_trl"}
    assert len({r.pair for r in rows if r.kind == "speed"}) == 1
    liger = next(r for r in rows if r.side == "liger")
    raw = json.loads(run_file(liger, tmp_path / "model", tmp_path / "data.jsonl", tmp_path / "out").read_text())
    assert raw["training"]["use_liger_kernel"] is True
    plain = next(r for r in rows if r.side == "finetune" and r.kind == "speed")
    assert "use_liger_kernel" not in json.loads(run_file(plain, tmp_path, tmp_path, tmp_path / "o2").read_text())["training"]


def test_a_pair_is_planned_whole_or_not_at_all(capsys):
    """One side of a pair alone compares with nothing: where the budget ends inside a pair, both sides are
    marked past it."""
    from argparse import Namespace

    from bench_gpu import show_plan
    from gpu_plan import GPU, plan

    args = Namespace(kernels=False, trl_defaults=False, reps=1, models=["Meta-Llama-3-8B"], ragged_models=["Meta-Llama-3-8B"],
                     qlora_models=[], grid_models=[], smoke=False, batch=4, length=1024, steps=25, budget_s=250,
                     cache="/nonexistent")
    show_plan(plan(args), GPU, args)
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("  ")]
    past = ["past the budget" in line for line in lines]
    assert [line.split()[0] for line in lines] == ["speed", "speed", "ragged", "ragged"]
    assert past == [False, False, True, True]   # 163 s + 62 s would fit one ragged side, not both
