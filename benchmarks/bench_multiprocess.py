"""Throughput of the demo run on 2 CPU processes (training.devices: 2, ddp over gloo) against 1.

    python benchmarks/bench_multiprocess.py [--steps 40] [--reps 2]

Each run is a whole `python -m finetune train RUN` (imports, data, model, training, adapter), alternating
1 and 2 processes so a busy machine slows both alike. Same per-device batch (8), so a step of the 2-process run
trains twice the examples. Reported per run: the Trainer's own training time and samples/s (its
train_runtime covers the training loop only), the tokens/s the run folder records (TRL gathers the token
count of every rank, so it is the group's total; the median over steps, the first 3 left out), and the
whole process's wall time. Three set-ups: 1 process with torch's default threads (one per core: what a
user gets), 1 process with 1 thread, and 2 processes with cores / 2 threads each (finetune.train.launch sets
OMP_NUM_THREADS so). "2 processes / 1 process, 1 thread" is the data-parallel scaling at the same threads
per process; against the default it also shows how the thread count copes with a busy machine.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

RUN = """\
model: {{name_or_path: demo}}
lora: {{r: 16, lora_alpha: 16, target_modules: all-linear}}
data: {{path: demo, max_length: 128}}
training: {{output_dir: {out}, max_steps: {steps}, per_device_train_batch_size: 8, gradient_accumulation_steps: 1,
  learning_rate: 1.0e-3, logging_steps: 1, save_steps: 1000, seed: 42, devices: {devices}}}
"""


SETUPS = {"1 process": (1, None), "1 process, 1 thread": (1, "1"), "2 processes": (2, None)}


def one(setup: str, steps: int, tmp: Path, tag: str) -> dict:
    devices, threads = SETUPS[setup]
    name = f"{tag}-{setup.replace(' ', '').replace(',', '-')}"
    out, path = tmp / name, tmp / f"{name}.yaml"
    path.write_text(RUN.format(out=out, steps=steps, devices=devices))
    env = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"}
    if threads:
        env["OMP_NUM_THREADS"] = threads
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "finetune", "train", str(path)], capture_output=True, text=True,
                          cwd=ROOT, env=env)
    wall = time.perf_counter() - start
    text = done.stdout + done.stderr
    if done.returncode != 0:
        raise SystemExit(f"devices {devices} failed:\n{text[-2000:]}")
    trained = re.search(r"trained: (\d+) steps in ([\d.]+) s", text)
    train_s = float(trained.group(2))
    metrics = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    speeds = [m["tokens_per_second"] for m in metrics if m.get("tokens_per_second")][3:]
    status = json.loads((out / "status.json").read_text())
    return {"devices": devices, "world_size": status.get("world_size"), "wall_s": wall, "train_s": train_s,
            "samples_per_s": steps * 8 * devices / train_s, "tokens_per_s": statistics.median(speeds)}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--reps", type=int, default=2)
    args = parser.parse_args()
    print(f"cores: {len(os.sched_getaffinity(0))}, load average before: {os.getloadavg()[0]:.2f}")
    results = {setup: [] for setup in SETUPS}
    with tempfile.TemporaryDirectory() as tmp:
        for rep in range(args.reps):
            for setup in SETUPS:
                r = one(setup, args.steps, Path(tmp), f"r{rep}")
                results[setup].append(r)
                print(f"{setup} (world_size {r['world_size']}): wall {r['wall_s']:.1f} s, training "
                      f"{r['train_s']:.1f} s for {args.steps} steps, {r['samples_per_s']:.1f} samples/s, "
                      f"{r['tokens_per_s']:,.0f} tokens/s (median)", flush=True)
    print(f"load average after: {os.getloadavg()[0]:.2f}")
    med = {d: {k: statistics.median(r[k] for r in rs) for k in ("wall_s", "train_s", "samples_per_s",
                                                                 "tokens_per_s")} for d, rs in results.items()}
    for d, m in med.items():
        print(f"median, {d}: wall {m['wall_s']:.1f} s, training {m['train_s']:.1f} s, "
              f"{m['samples_per_s']:.1f} samples/s, {m['tokens_per_s']:,.0f} tokens/s")
    two = med["2 processes"]
    for base in ("1 process", "1 process, 1 thread"):
        one_ = med[base]
        print(f"2 processes / {base}: samples/s x{two['samples_per_s'] / one_['samples_per_s']:.2f}, "
              f"tokens/s x{two['tokens_per_s'] / one_['tokens_per_s']:.2f}, wall x{two['wall_s'] / one_['wall_s']:.2f}")


if __name__ == "__main__":
    main()
