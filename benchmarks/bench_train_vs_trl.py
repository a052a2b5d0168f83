"""Wall time of `python -m finetune train RUN` against a plain TRL SFTTrainer script doing the same LoRA job.

    python benchmarks/bench_train_vs_trl.py [--steps 40] [--reps 3]

Both are whole processes (imports, data, model, training, saving the adapter), run alternately so that a
busy machine slows both alike. Same model (the demo), data, LoRA, steps, batch, learning rate, optimizer
(fused AdamW, TrainingArguments' default), seed and loss (assistant replies only), fp32 on the CPU, no
gradient checkpointing, a checkpoint at the end. Each figure is plain TRL's time over ours (finetune's speed
as a fraction of plain TRL's): the goal is >= 0.95x, with the time inside trainer.train() and the time
around it (imports, data, model, saving) shown apart.
"""

from __future__ import annotations

import argparse
import os
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run as a script from anywhere: the finetune package lives at the root

RUN = """\
model: {{name_or_path: demo}}
lora: {{r: 16, lora_alpha: 16, lora_dropout: 0.0, target_modules: all-linear}}
data: {{path: demo, max_length: 128}}
training: {{output_dir: {out}, max_steps: {steps}, per_device_train_batch_size: 8, gradient_accumulation_steps: 1,
  learning_rate: 1.0e-3, logging_steps: 1, save_steps: 1000, seed: 42, optim: adamw_torch_fused}}
"""

# What a user would write with TRL alone, set to the same job.
PLAIN = """\
import sys
from datasets import load_dataset
from peft import LoraConfig
from trl import SFTConfig, SFTTrainer

model, data, out, steps = sys.argv[1:5]
args = SFTConfig(output_dir=out, max_steps=int(steps), per_device_train_batch_size=8, gradient_accumulation_steps=1,
                 learning_rate=1e-3, logging_steps=1, save_steps=1000, seed=42, max_length=128,
                 optim="adamw_torch_fused", assistant_only_loss=True, gradient_checkpointing=False, bf16=False,
                 use_cpu=True, report_to="none")
lora = LoraConfig(r=16, lora_alpha=16, lora_dropout=0.0, target_modules="all-linear", task_type="CAUSAL_LM")
trainer = SFTTrainer(model=model, args=args, train_dataset=load_dataset("json", data_files=data, split="train"),
                     peft_config=lora)
result = trainer.train()
trainer.save_model(out + "/adapter")
print(f"trained: {result.global_step} steps in {result.metrics['train_runtime']:.3f} s")
"""


def timed(cmd: list[str], log: Path, threads: int | None = None, extra: dict | None = None) -> tuple[float, float, float]:
    """(wall seconds, CPU seconds, seconds in trainer.train()) of one whole process. CPU time is the steadier
    of the first two on a shared machine: other processes stretch the wall clock, not the work done. The
    third, subtracted from the first, is the set-up (imports, data, model) and the saving at the end."""
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", PYTHONPATH=str(ROOT))
    if threads:
        env["OMP_NUM_THREADS"] = str(threads)
    env.update(extra or {})
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    with log.open("w") as f:
        code = subprocess.run(cmd, cwd=ROOT, env=env, stdout=f, stderr=subprocess.STDOUT).returncode
    elapsed = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if code != 0:
        sys.exit(f"{' '.join(cmd)} exited {code}; see {log}")
    trained = re.findall(r"trained: \d+ steps in ([\d.]+) s", log.read_text())
    return (elapsed, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime),
            float(trained[-1]) if trained else float("nan"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None, help="OMP_NUM_THREADS for both (on a machine "
                        "shared with other work, 1 keeps idle threads from spinning and skewing CPU time)")
    parser.add_argument("--env", action="append", default=[], metavar="KEY=VALUE", help="set for both, e.g. "
                        "OMP_WAIT_POLICY=PASSIVE (what finetune train sets for itself) to compare on equal terms")
    parser.add_argument("--ours", action="append", default=[], metavar="KEY: VALUE", help="a further training key "
                        "for finetune's run file, e.g. 'padding_free: false' to time it with padded batches, as "
                        "plain TRL trains")
    args = parser.parse_args()
    extra = dict(item.split("=", 1) for item in args.env)
    from finetune.demo import DATA_FILE, MODEL_DIR

    ours, plain = [], []
    with tempfile.TemporaryDirectory(prefix="bench-train-") as tmp:
        tmp = Path(tmp)
        script = tmp / "plain_trl.py"
        script.write_text(PLAIN)
        for rep in range(args.reps):
            run = tmp / f"run{rep}.yaml"
            run.write_text(RUN.format(out=tmp / f"ours{rep}", steps=args.steps).replace(
                "optim: adamw_torch_fused}", ", ".join(["optim: adamw_torch_fused", *args.ours]) + "}"))
            pair = [("finetune", ours, [sys.executable, "-m", "finetune", "train", str(run)]),
                    ("plain TRL", plain, [sys.executable, str(script), str(MODEL_DIR), str(DATA_FILE),
                                          str(tmp / f"plain{rep}"), str(args.steps)])]
            for name, times, cmd in pair if rep % 2 == 0 else pair[::-1]:
                times.append(timed(cmd, tmp / f"{name.replace(' ', '_')}{rep}.log", args.threads, extra))
                wall, cpu, train = times[-1]
                print(f"rep {rep + 1}: {name:10s} wall {wall:6.1f} s   cpu {cpu:6.1f} s   in train() {train:6.1f} s   "
                      f"the rest {wall - train:6.1f} s", flush=True)
    # The minimum is the run least disturbed by the rest of the machine; the median shows the spread's middle.
    ours, plain = ([(*t, t[0] - t[2]) for t in times] for times in (ours, plain))   # + the time around train()
    for i, what in enumerate(("wall time", "CPU time", "time in train()", "time outside train()")):
        for name, pick in (("min", min), ("median", statistics.median)):
            a, b = pick(t[i] for t in ours), pick(t[i] for t in plain)
            print(f"{name:6s} {what} over {args.reps} runs of {args.steps} steps: finetune train {a:.1f} s, "
                  f"plain TRL {b:.1f} s: finetune at {b / a:.2f}x plain TRL's speed (goal >= 0.95x)")


if __name__ == "__main__":
    main()
