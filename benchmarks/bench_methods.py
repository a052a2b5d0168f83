"""Wall time of `python -m finetune train RUN` for each method beyond SFT against a plain TRL script doing the
same LoRA job with the method's trainer.

    python benchmarks/bench_methods.py --methods dpo grpo [--steps 30] [--reps 3] [--threads 1]

The structure and the timing are benchmarks/bench_train_vs_trl.py's (its `timed`: whole processes, wall and
CPU seconds, the time inside trainer.train()), run alternately so that a busy machine slows both alike. Same
model (the demo), the method's demo data (finetune.demo.DEMO_DATA), LoRA, steps, batch 8, learning rate, fused
AdamW, seed, max_length 128, fp32 on the CPU, no checkpointing, the method's TRL settings (presets/*.yaml:
DPO sigmoid beta 0.1; KTO beta 0.1; ORPO beta 0.1; GRPO 4 generations of up to 32 tokens, a `contains`
reward). Each figure is plain TRL's time over ours (the goal is >= 0.95x).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_train_vs_trl import timed  # the same whole-process timing as the SFT benchmark

SETTINGS = {"dpo": "beta: 0.1, loss_type: sigmoid", "kto": "beta: 0.1", "orpo": "beta: 0.1",
            "grpo": "num_generations: 4, max_completion_length: 32, rewards: [{type: contains, text: helper}]"}

RUN = """\
model: {{name_or_path: demo}}
method: {{name: {method}, {settings}}}
lora: {{r: 16, lora_alpha: 16, lora_dropout: 0.0, target_modules: all-linear}}
data: {{path: demo, max_length: 128}}
training: {{output_dir: {out}, max_steps: {steps}, per_device_train_batch_size: 8, gradient_accumulation_steps: 1,
  learning_rate: 1.0e-4, logging_steps: 1, save_steps: 1000, seed: 42, optim: adamw_torch_fused}}
"""

# What a user would write with TRL alone, set to the same job; {config} and {trainer} per method.
PLAIN = """\
import sys
from datasets import load_dataset
from peft import LoraConfig
from {module} import {config}, {trainer}

model, data, out, steps = sys.argv[1:5]

def helper(completions, **kwargs):
    return [1.0 if "helper" in (c if isinstance(c, str) else c[-1]["content"]) else 0.0 for c in completions]

args = {config}(output_dir=out, max_steps=int(steps), per_device_train_batch_size=8, gradient_accumulation_steps=1,
                learning_rate=1e-4, logging_steps=1, save_steps=1000, seed=42, optim="adamw_torch_fused",
                gradient_checkpointing=False, bf16=False, use_cpu=True, report_to="none", {args})
lora = LoraConfig(r=16, lora_alpha=16, lora_dropout=0.0, target_modules="all-linear", task_type="CAUSAL_LM")
trainer = {trainer}(model=model, args=args, train_dataset=load_dataset("json", data_files=data, split="train"),
                    peft_config=lora{extra})
result = trainer.train()
trainer.save_model(out + "/adapter")
print(f"trained: {{result.global_step}} steps in {{result.metrics['train_runtime']:.3f}} s")
"""
PLAIN_ARGS = {
    "dpo": dict(module="trl", config="DPOConfig", trainer="DPOTrainer", args="max_length=128, beta=0.1, "
                "loss_type='sigmoid'", extra=""),
    "kto": dict(module="trl", config="KTOConfig", trainer="KTOTrainer", args="max_length=128, beta=0.1", extra=""),
    "orpo": dict(module="trl.experimental.orpo", config="ORPOConfig", trainer="ORPOTrainer",
                 args="max_length=128, beta=0.1", extra=""),
    "grpo": dict(module="trl", config="GRPOConfig", trainer="GRPOTrainer", args="num_generations=4, "
                 "max_completion_length=32, beta=0.0", extra=", reward_funcs=[helper]"),
}


def bench(method: str, steps: int, reps: int, threads: int | None, extra: dict) -> None:
    from finetune.demo import DEMO_DATA, MODEL_DIR

    ours, plain = [], []
    with tempfile.TemporaryDirectory(prefix=f"bench-{method}-") as tmp:
        tmp = Path(tmp)
        script = tmp / "plain_trl.py"
        script.write_text(PLAIN.format(**PLAIN_ARGS[method]))
        for rep in range(reps):
            run = tmp / f"run{rep}.yaml"
            run.write_text(RUN.format(method=method, settings=SETTINGS[method], out=tmp / f"ours{rep}", steps=steps))
            pair = [("finetune", ours, [sys.executable, "-m", "finetune", "train", str(run)]),
                    ("plain TRL", plain, [sys.executable, str(script), str(MODEL_DIR), str(DEMO_DATA[method]),
                                          str(tmp / f"plain{rep}"), str(steps)])]
            for name, times, cmd in pair if rep % 2 == 0 else pair[::-1]:
                times.append(timed(cmd, tmp / f"{name.replace(' ', '_')}{rep}.log", threads, extra))
                wall, cpu, train = times[-1]
                print(f"{method} rep {rep + 1}: {name:10s} wall {wall:6.1f} s   cpu {cpu:6.1f} s   "
                      f"in train() {train:6.1f} s", flush=True)
    for i, what in enumerate(("wall time", "CPU time", "time in train()")):
        for label, pick in (("min", min), ("median", statistics.median)):
            a, b = pick(t[i] for t in ours), pick(t[i] for t in plain)
            print(f"{method}: {label:6s} {what} over {reps} runs of {steps} steps: finetune train {a:.1f} s, "
                  f"plain TRL {b:.1f} s: finetune at {b / a:.2f}x plain TRL's speed (goal >= 0.95x)", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--methods", nargs="+", default=["dpo", "kto", "orpo", "grpo"], choices=list(SETTINGS))
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None, help="OMP_NUM_THREADS for both")
    parser.add_argument("--env", action="append", default=[], metavar="KEY=VALUE", help="set for both")
    args = parser.parse_args()
    extra = dict(item.split("=", 1) for item in args.env)
    for method in args.methods:
        bench(method, args.steps, args.reps, args.threads, extra)


if __name__ == "__main__":
    main()
