"""benchmarks/bench_gpu.py --smoke: the GPU benchmark's code paths on the CPU (tiny configs, 2 steps): both
sides train, and the CSV has its columns."""

import csv
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
    # The speed pair alone (about a minute on two quiet cores); --budget-s only guards a busy machine.
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "bench_gpu.py"), "--smoke", "--qlora-models",
                           "--grid-models", "--budget-s", "170", "--cache", str(tmp_path), "--out", str(out)],
                          capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    with out.open() as f:
        reader = csv.DictReader(f)
        rows = list(reader)
    assert reader.fieldnames == FIELDS
    assert [r["kind"] for r in rows] == ["build", "speed", "speed"]
    speed = {r["side"]: r for r in rows if r["kind"] == "speed"}
    assert set(speed) == {"finetune", "plain_trl"}, done.stdout
    for side, r in speed.items():
        assert r["status"] == "ok", (side, r, done.stdout)
        assert int(r["tokens"]) == 2 * 2 * 32 and float(r["train_s"]) > 0 and float(r["tokens_per_s"]) > 0
        assert float(r["wall_s"]) > float(r["train_s"])
        assert int(r["estimate_total"]) > 0     # `finetune count --json`'s memory total, for both rows
    # Same data, seed and LoRA: the first step's loss agrees.
    assert float(speed["finetune"]["first_loss"]) == pytest.approx(float(speed["plain_trl"]["first_loss"]), abs=0.01)
    assert "finetune train against plain TRL" in done.stdout
