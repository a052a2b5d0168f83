"""Padding-free batches on ragged data: `finetune train` as it chooses (train/batches.py), the same with
`training.padding_free: false` (every batch padded), and plain TRL (benchmarks/gpu/plain_trl.py, padded), as
whole processes run alternately; the figure that matters is the time inside trainer.train().

    python benchmarks/bench_batches.py [--steps 60] [--reps 3] [--batch 8] [--lengths 32 512] [--even]
    python benchmarks/bench_batches.py --model Meta-Llama-3-8B --batch 4 --lengths 128 1024   # on a GPU

The model has random weights: on the CPU a Llama of hidden size 256 and 4 layers (about 4M weights, so that
a step is compute, not overhead, as on a GPU); with --model, that FULL config of tests/tiny_configs.py, made
on the GPU in bfloat16. The data is plain text whose examples have token counts spread evenly over --lengths
(with --even, all at the top: nothing to save, so the choice should stay padded and cost nothing). Same LoRA
(r=16 on the seven projections), optimizer, seed and steps on every side.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))   # tiny_configs
sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_train_vs_trl import timed  # noqa: E402  (whole-process timing: wall, CPU, time in train())

CPU_MODEL = dict(model_type="llama", hidden_size=256, intermediate_size=688, num_hidden_layers=4,
                 num_attention_heads=8, num_key_value_heads=4, max_position_embeddings=2048)
ALL7 = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def build_model(folder: Path, name: str | None) -> None:
    import torch
    from tiny_configs import FULL
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    from finetune.demo import MODEL_DIR

    tokenizer = AutoTokenizer.from_pretrained(MODEL_DIR)
    config = dict(FULL[name][0]) if name else dict(CPU_MODEL, vocab_size=len(tokenizer))
    cuda = torch.cuda.is_available()
    torch.manual_seed(0)
    with torch.device("cuda" if cuda else "cpu"):
        model = AutoModelForCausalLM.from_config(AutoConfig.for_model(**config),
                                                 dtype=torch.bfloat16 if cuda else torch.float32)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)


def ragged_text(path: Path, examples: int, shortest: int, longest: int, even: bool) -> None:
    """Plain text of about n tokens per example (the demo tokenizer reads "wordN tokenM" as about 8 tokens)."""
    rng = random.Random(0)
    rows = []
    for _ in range(examples):
        n = longest + 16 if even else rng.randint(shortest, longest)
        rows.append(json.dumps({"text": " ".join(f"word{rng.randrange(97)} token{rng.randrange(13)}"
                                                 for _ in range(max(n // 8, 1)))}))
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")


def run_file(path: Path, model: Path, data: Path, out: Path, args, padding_free: bool | None) -> None:
    training = {"output_dir": str(out), "max_steps": args.steps, "per_device_train_batch_size": args.batch,
                "gradient_accumulation_steps": 1, "learning_rate": 2.0e-4, "lr_scheduler_type": "linear",
                "warmup_steps": 0, "weight_decay": 0.0, "max_grad_norm": 1.0, "optim": "adamw_torch_fused",
                "gradient_checkpointing": False, "logging_steps": 1, "save_steps": 100_000, "seed": 42}
    if padding_free is not None:
        training["padding_free"] = padding_free
    path.write_text(json.dumps({
        "model": {"name_or_path": str(model)},
        "lora": {"r": 16, "lora_alpha": 16, "lora_dropout": 0.0, "target_modules": ALL7},
        "data": {"path": str(data), "format": "text", "max_length": args.lengths[1], "packing": False},
        "training": training}), encoding="utf-8")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--lengths", type=int, nargs=2, default=(32, 512), metavar=("SHORTEST", "LONGEST"))
    parser.add_argument("--even", action="store_true", help="every example at the longest: nothing to save")
    parser.add_argument("--model", help="a FULL config of tests/tiny_configs.py (on a GPU)")
    args = parser.parse_args()
    sides = {"finetune (chooses)": None, "finetune (padded)": False, "finetune (all flat)": True, "plain TRL": "plain"}
    times: dict[str, list[tuple[float, float, float]]] = {name: [] for name in sides}
    with tempfile.TemporaryDirectory(prefix="bench-batches-") as tmp:
        tmp = Path(tmp)
        build_model(tmp / "model", args.model)
        data = tmp / "data.jsonl"
        ragged_text(data, args.steps * args.batch, *args.lengths, args.even)
        for rep in range(args.reps):
            order = list(sides.items()) if rep % 2 == 0 else list(sides.items())[::-1]
            for name, choice in order:
                out = tmp / f"{rep}-{len(times[name])}-{name.split()[-1].strip('()')}"
                if choice == "plain":
                    cmd = [sys.executable, str(ROOT / "benchmarks" / "gpu" / "plain_trl.py"), str(tmp / "model"),
                           str(data), str(out), "--steps", str(args.steps), "--batch", str(args.batch),
                           "--length", str(args.lengths[1])]
                else:
                    run_file(tmp / "run.json", tmp / "model", data, out, args, choice)
                    cmd = [sys.executable, "-m", "finetune", "train", str(tmp / "run.json")]
                log = tmp / f"{out.name}.log"
                times[name].append(timed(cmd, log, None))
                chosen = [line for line in log.read_text().splitlines() if line.startswith("batches: ") and " of " in line]
                wall, _, train = times[name][-1]
                print(f"rep {rep + 1}: {name:19s} wall {wall:6.1f} s   in train() {train:6.1f} s   "
                      f"{chosen[-1] if chosen else ''}", flush=True)
    base = statistics.median(t[2] for t in times["plain TRL"])
    for name, runs in times.items():
        train = statistics.median(t[2] for t in runs)
        print(f"median in train(): {name:19s} {train:6.1f} s   {base / train:.2f}x plain TRL's speed")


if __name__ == "__main__":
    main()
