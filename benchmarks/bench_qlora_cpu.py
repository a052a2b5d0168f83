"""A QLoRA base loaded for training, as the job loads it (finetune.model.loading.prepare_quantized_for_training)
beside PEFT's prepare_model_for_kbit_training, on the CPU (bitsandbytes' 4-bit runs there, slowly).

    python benchmarks/bench_qlora_cpu.py [--steps 20] [--batch 8] [--length 128]

The demo model in 4-bit NF4 with model.dtype bfloat16, LoRA r=16 on every linear, TRL's SFTTrainer. For each
side: the dtypes of the embeddings, a norm, lm_head and the residual stream (hidden states of a forward under
bf16 autocast, as the Trainer runs it); the frozen weights' bytes; what autograd keeps for one forward; the
CPU allocator's peak over one real training step of the job (tests/memory_probe.py's method_step); then the
loss of a short `finetune train`-style run (the job's setup, model and trainer) from first to last log.
The GPU numbers this is about (Llama-3-8B: 47.8 GB against plain TRL's 30.6 GB) are bench_gpu.py's.

Measured on 2 shared CPU cores (20 steps, batch 8, max_length 128), PEFT's function -> the job's:
embeddings, norms, lm_head and hidden states float32 -> bfloat16; frozen weights 393,520 -> 258,864 bytes;
kept by one forward 17.5 MB -> 11.5 MB; kept in a trainer step 5.7 MB -> 3.9 MB; the step's allocator peak
35.9 MB -> 33.8 MB; loss 4.895 -> 1.846 and 4.894 -> 1.849 (the same curve to 0.01). Times not compared:
the first side shared the cores with a test run.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

SIDES = ("peft prepare_model_for_kbit_training", "finetune prepare_quantized_for_training")


def use_side(side: str) -> None:
    """Make the job's load_model prepare a quantized base the way `side` does."""
    import finetune.model.loading as loading

    if side == SIDES[0]:
        from peft import prepare_model_for_kbit_training

        loading.prepare_quantized_for_training = (   # type: ignore[assignment]
            lambda base, gradient_checkpointing: prepare_model_for_kbit_training(
                base, use_gradient_checkpointing=gradient_checkpointing))
    else:
        loading.prepare_quantized_for_training = ORIGINAL


def run_file(out: str, steps: int, batch: int, length: int) -> dict:
    return {"model": {"name_or_path": "demo", "quantization": "4bit", "dtype": "bfloat16"},
            "lora": {"r": 16, "lora_alpha": 16, "target_modules": "all-linear"},
            "data": {"path": "demo", "max_length": length},
            "training": {"output_dir": out, "max_steps": steps, "per_device_train_batch_size": batch,
                         "gradient_accumulation_steps": 1, "learning_rate": 1e-3, "logging_steps": 1,
                         "save_steps": 100_000, "seed": 42, "optim": "adamw_torch"}}


def dtypes_and_static(raw: dict) -> dict:
    """Dtypes after loading for training, frozen weights' bytes, bytes autograd keeps over one forward."""
    import memory_probe as mp
    import torch

    from finetune.model.loading import load_model
    from finetune.runfile import RunConfig

    run = RunConfig.from_dict(raw)
    base = load_model(run.model, False)
    weights = mp.weights_bytes(base)
    model, _ = mp.prepare(run, base)
    inner = model.get_base_model()
    ids = torch.randint(3, 1000, (raw["training"]["per_device_train_batch_size"], raw["data"]["max_length"]),
                        generator=torch.Generator().manual_seed(0))
    model.train()
    with mp.autocast_for(run):
        out = model(input_ids=ids, output_hidden_states=True)
    found = {"embeddings": str(inner.model.embed_tokens.weight.dtype),
             "norm": str(inner.model.layers[0].input_layernorm.weight.dtype),
             "lm_head": str(inner.lm_head.weight.dtype),
             "hidden_states": sorted({str(h.dtype) for h in out.hidden_states}),
             "adapters": sorted({str(p.dtype) for p in model.parameters() if p.requires_grad}),
             "weights_bytes": weights}
    del out
    mp.add_job_loss(model)
    found["saved_bytes"] = mp.saved_activation_bytes(model, ids, torch.ones_like(ids), mp.autocast_for(run))
    return found


def one_step_peak(raw: dict, workdir: str) -> dict:
    """The allocator's peak over the second step of the job's own trainer (memory_probe.method_step)."""
    import memory_probe as mp

    from finetune.runfile import dump_yaml

    raw = json.loads(json.dumps(raw))
    raw["training"]["max_steps"] = 2
    path = Path(workdir) / "step.yaml"
    path.write_text(dump_yaml(raw), encoding="utf-8")
    found = mp.method_step(str(path), workdir)
    return {"step_peak_bytes": found["peak"], "step_saved_bytes": found["saved"]}


def short_run(raw: dict, workdir: str) -> dict:
    """The job's setup, model and trainer for raw's steps: the losses it logs, and its seconds in train()."""
    from transformers import TrainerCallback

    from finetune.model.loading import load_model
    from finetune.runfile import dump_yaml
    from finetune.train.job import setup
    from finetune.train.methods import build_trainer

    losses: list[float] = []

    class Losses(TrainerCallback):
        def on_log(self, args, state, control, logs=None, **kwargs):
            if logs and "loss" in logs:
                losses.append(round(float(logs["loss"]), 4))

    raw = json.loads(json.dumps(raw))
    raw["training"]["output_dir"] = str(Path(workdir) / "short")   # not the measured step's trained folder
    path = Path(workdir) / "run.yaml"
    path.write_text(dump_yaml(raw), encoding="utf-8")
    plan = setup(str(path), False)
    trainer = build_trainer(plan, load_model(plan.run.model, False), [Losses()])
    started = time.perf_counter()
    trainer.train()
    return {"losses": losses, "train_s": round(time.perf_counter() - started, 2)}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--length", type=int, default=128)
    a = parser.parse_args()
    from finetune.model.loading import quiet_libraries

    quiet_libraries()
    for side in SIDES:
        use_side(side)
        with tempfile.TemporaryDirectory() as work:
            raw = run_file(str(Path(work) / "out"), a.steps, a.batch, a.length)
            found = {"side": side, **dtypes_and_static(raw), **one_step_peak(raw, work), **short_run(raw, work)}
        print(json.dumps(found), flush=True)


if __name__ == "__main__":
    import finetune.model.loading

    ORIGINAL = finetune.model.loading.prepare_quantized_for_training
    main()
