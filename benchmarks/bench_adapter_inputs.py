"""Adapters reading their 16-bit input as it is under autocast (finetune/model/adapter_inputs.py, what the job
does under bf16/fp16) against PEFT's float32 round trip, on one model in one process, alternately.

    python benchmarks/bench_adapter_inputs.py [--steps 6] [--reps 3] [--batch 4] [--length 256]
    python benchmarks/bench_adapter_inputs.py --model Meta-Llama-3-8B --batch 4 --length 1024   # on a GPU

A forward and backward pass under bf16 autocast with LoRA r=16 on the seven projections, random weights: on the
CPU a Llama of hidden size 1024 and 4 layers; with --model, that FULL config of tests/tiny_configs.py, made on
the GPU. It prints the median time of a step each way, the bytes autograd keeps (each storage once), the GPU's
peak, and whether the loss and every gradient are the same bits.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))   # tiny_configs, memory_probe

CPU_MODEL = dict(model_type="llama", hidden_size=1024, intermediate_size=2816, num_hidden_layers=4,
                 num_attention_heads=16, num_key_value_heads=4, vocab_size=8192, max_position_embeddings=4096)
ALL7 = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def build(name: str | None, device: str):
    import torch
    from peft import LoraConfig, get_peft_model
    from tiny_configs import FULL
    from transformers import AutoConfig, AutoModelForCausalLM

    torch.manual_seed(0)
    with torch.device(device):
        base = AutoModelForCausalLM.from_config(AutoConfig.for_model(**(FULL[name][0] if name else CPU_MODEL)),
                                                dtype=torch.bfloat16)
    # init_lora_weights=False: B is not zero, so the adapters' gradients are not trivially zero either
    return get_peft_model(base, LoraConfig(r=16, lora_alpha=16, target_modules=ALL7, init_lora_weights=False))


def step(model, ids, counting=False) -> tuple:
    """One forward and backward under bf16 autocast: (the loss, the bytes autograd kept for the backward pass,
    each storage once and the parameters left out; 0 unless `counting`)."""
    import contextlib

    import torch
    from memory_probe import saved_bytes

    with saved_bytes(model) if counting else contextlib.nullcontext({}) as kept, \
            torch.autocast(ids.device.type, dtype=torch.bfloat16):
        loss = model(input_ids=ids, labels=ids).loss
    loss.backward()
    return loss.detach(), sum(kept.values())


def measure(model, ids, steps: int) -> dict:
    import torch

    cuda = ids.device.type == "cuda"
    model.zero_grad(set_to_none=True)
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    loss, kept = step(model, ids, counting=True)
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    times = []
    for _ in range(steps):
        model.zero_grad(set_to_none=True)
        start = time.perf_counter()
        step(model, ids)
        if cuda:
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return {"loss": loss, "grads": grads, "times": times, "peak": torch.cuda.max_memory_allocated() if cuda else 0,
            "kept": kept}


def main() -> None:
    import torch

    from finetune.model.adapter_inputs import read_inputs_as_is, remove_all

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", help="a FULL config of tests/tiny_configs.py (on a GPU)")
    parser.add_argument("--steps", type=int, default=6, help="timed steps per side and rep")
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--length", type=int, default=256)
    args = parser.parse_args()
    device = "cuda" if torch.cuda.is_available() else "cpu"
    model = build(args.model, device)
    model.train()
    ids = torch.randint(3, model.config.vocab_size, (args.batch, args.length),
                        generator=torch.Generator().manual_seed(0)).to(device)
    step(model, ids)   # warm-up: kernels, allocator
    sides: dict[str, list[dict]] = {"peft": [], "as is": []}
    for rep in range(args.reps):
        for side in (("peft", "as is") if rep % 2 == 0 else ("as is", "peft")):
            handles = read_inputs_as_is(model) if side == "as is" else []
            sides[side].append(measure(model, ids, args.steps))
            remove_all(handles)
    peft, ours = sides["peft"][0], sides["as is"][0]
    same = torch.equal(peft["loss"], ours["loss"]) and all(torch.equal(g, ours["grads"][n])
                                                          for n, g in peft["grads"].items())
    medians = {side: statistics.median(t for m in runs for t in m["times"]) for side, runs in sides.items()}
    name = args.model or "CPU Llama 1024x4"
    print(f"{name} on {device}, batch {args.batch} x {args.length}, {args.reps} reps x {args.steps} steps a side")
    for side, runs in sides.items():
        peak = f", peak {runs[0]['peak'] / 2**30:.2f} GiB" if device == "cuda" else ""
        print(f"  {side:6s} {1000 * medians[side]:8.1f} ms/step, kept {runs[0]['kept'] / 2**20:8.1f} MiB{peak}")
    print(f"  as is / peft: {medians['peft'] / medians['as is']:.3f}x the speed, "
          f"{ours['kept'] / peft['kept']:.3f}x the kept bytes; same loss and gradients to the bit: {same}")


if __name__ == "__main__":
    main()
