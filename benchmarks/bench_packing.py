"""Training speed with `data.packing` (TRL's best-fit packing, padding-free: examples share a row, each seeing
only itself through its restarted position ids) against padded batches, on ragged data.

    python benchmarks/bench_packing.py [--epochs 2] [--reps 2]

The same job twice per repetition (order alternating): the demo model, batch 8, max_length 128, the same
number of epochs (so the same tokens), on (a) the demo's chat data and (b) plain text whose examples run from
6 to 100 words. Figure: the time in trainer.train() without packing over the time with it (the speed of
packing), and each run's last loss (packing takes fewer, larger steps per epoch). tests/train/test_packing.py checks
that packing is exact (every packed example gets the logits it gets alone).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
WORDS = ["the", "fox", "lives", "in", "a", "den", "near", "the", "river", "and", "hunts", "mice", "at", "night", "while", "owls", "watch", "from", "old", "oak", "trees"]


def ragged_text(path: Path, n: int = 400, seed: int = 0) -> Path:
    rng = random.Random(seed)
    with path.open("w") as f:
        for _ in range(n):
            f.write(json.dumps({"text": " ".join(rng.choice(WORDS) for _ in range(rng.randint(6, 100)))}) + "\n")
    return path


def run_once(tmp: Path, name: str, data: str, packing: bool, epochs: float) -> tuple[float, float]:
    """(seconds in trainer.train(), mean loss of the last 5 logged steps) for `epochs` passes over `data`."""
    out = tmp / name
    run = {"model": {"name_or_path": "demo"}, "lora": {"r": 16, "lora_alpha": 16, "target_modules": "all-linear"},
           "data": {"path": data, "max_length": 128, "packing": packing},
           "training": {"output_dir": str(out), "num_train_epochs": epochs, "per_device_train_batch_size": 8,
                        "gradient_accumulation_steps": 1, "learning_rate": 1e-3, "logging_steps": 1,
                        "save_steps": 100_000}}
    path = tmp / f"{name}.yaml"
    path.write_text(yaml.safe_dump(run))
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", PYTHONPATH=str(ROOT))
    log = subprocess.run([sys.executable, "-m", "finetune", "train", str(path)], cwd=ROOT, env=env, check=True,
                         capture_output=True, text=True).stdout
    seconds = float(re.findall(r"trained: \d+ steps in ([\d.]+) s", log)[-1])
    losses = [json.loads(line)["loss"] for line in (out / "metrics.jsonl").read_text().splitlines()
              if '"loss"' in line]
    return seconds, sum(losses[-5:]) / len(losses[-5:])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=float, default=2)
    parser.add_argument("--reps", type=int, default=2)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-packing-") as tmp:
        tmp = Path(tmp)
        for label, data in (("demo chat", "demo"), ("ragged text", str(ragged_text(tmp / "ragged.jsonl")))):
            ratios = []
            for rep in range(args.reps):
                order = (True, False) if rep % 2 == 0 else (False, True)
                got = {p: run_once(tmp, f"{label[:4]}-{p}-{rep}", data, p, args.epochs) for p in order}
                ratios.append(got[False][0] / got[True][0])
                print(f"{label}, rep {rep + 1}: packed {got[True][0]:.1f} s (last loss {got[True][1]:.3f}), "
                      f"padded {got[False][0]:.1f} s (last loss {got[False][1]:.3f}): packing at "
                      f"{ratios[-1]:.2f}x the speed", flush=True)
            print(f"{label}: packing at {statistics.median(ratios):.2f}x the speed of padded batches "
                  f"({args.epochs:g} epochs each)")


if __name__ == "__main__":
    main()
