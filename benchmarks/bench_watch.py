"""What watching a run costs its training speed: the same demo job with and without an evaluation split, samples
answered at every evaluation and a TensorBoard log (issue 18).

    python benchmarks/bench_watch.py [--steps 60] [--reps 3]

Each run is a whole `python -m finetune train` process; the two settings alternate so a busy machine slows
both alike. Reported per setting: the median of the tokens/s the job logs per step (metrics.jsonl), which the
job measures from after each evaluation and save (finetune/train/callbacks.py pauses its clock), so it should
not move; the time inside trainer.train() (the evaluations and the samples are in it); and the seconds the
samples took (samples.jsonl's own `seconds`).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "benchmarks")]

from bench_train_vs_trl import timed  # noqa: E402  (after the path: benchmarks/ is not a package)

BASE = """\
model: {{name_or_path: demo}}
lora: {{r: 16, lora_alpha: 16, target_modules: all-linear}}
data: {{path: demo, max_length: 128{eval}}}
training: {{output_dir: {out}, max_steps: {steps}, per_device_train_batch_size: 8, learning_rate: 1.0e-3,
  logging_steps: 1, save_steps: 1000, seed: 42{watch}}}
{samples}"""
SETTINGS = {
    "plain": {"eval": "", "watch": "", "samples": ""},
    "watched": {"eval": ", eval_size: 16", "watch": ", eval_steps: 10, report_to: [tensorboard]",
                "samples": "samples: {max_new_tokens: 16}\n"},
}


def read(folder: Path) -> tuple[float, float]:
    """(median logged tokens/s, seconds spent answering samples) of one run folder."""
    rates = [m["tokens_per_second"] for m in map(json.loads, (folder / "metrics.jsonl").read_text().splitlines())
             if m.get("tokens_per_second")]
    samples = folder / "samples.jsonl"
    spent = sum(json.loads(line).get("seconds") or 0 for line in samples.read_text().splitlines()) \
        if samples.exists() else 0.0
    return statistics.median(rates), spent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--reps", type=int, default=3)
    args = parser.parse_args()
    results: dict[str, list[tuple[float, float, float]]] = {name: [] for name in SETTINGS}
    with tempfile.TemporaryDirectory(prefix="bench-watch-") as tmp:
        tmp_path = Path(tmp)
        for rep in range(args.reps):
            order = list(SETTINGS) if rep % 2 == 0 else list(SETTINGS)[::-1]
            for name in order:
                out = tmp_path / f"{name}{rep}"
                run = tmp_path / f"{name}{rep}.yaml"
                run.write_text(BASE.format(out=out, steps=args.steps, **SETTINGS[name]))
                _, _, in_train = timed([sys.executable, "-m", "finetune", "train", str(run)],
                                       tmp_path / f"{name}{rep}.log")
                rate, spent = read(out)
                results[name].append((rate, in_train, spent))
                print(f"rep {rep + 1}: {name:8s} {rate:8,.0f} tokens/s (median of steps)   in train() {in_train:5.1f} s"
                      f"   samples {spent:4.1f} s", flush=True)
    plain, watched = ([statistics.median(r[i] for r in results[n]) for i in range(3)] for n in SETTINGS)
    print(f"median over {args.reps} runs of {args.steps} steps: logged tokens/s watched / plain = "
          f"{watched[0] / plain[0]:.2f}x (goal: about 1.00x, the cost stays out of tokens/s); time in train() "
          f"{plain[1]:.1f} s plain, {watched[1]:.1f} s watched, of which samples {watched[2]:.1f} s")


if __name__ == "__main__":
    main()
