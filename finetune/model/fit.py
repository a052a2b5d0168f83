"""Does a run fit a GPU, and if not, the change that makes it fit with the least loss. Pure arithmetic on
finetune.model.memory's estimate (no torch unless this machine has CUDA, to name its own GPUs).

Least loss, in this order of cost: changes that only cost time (gradient checkpointing, about 30% slower;
a smaller batch with proportionally more gradient accumulation, which keeps the effective batch and so the
training itself), then 4-bit NF4 quantization of the frozen base (QLoRA: Dettmers et al. 2023 found it
matches 16-bit LoRA), and last a shorter max_length, which truncates the data. 8-bit is not proposed: it
saves less than 4-bit and trains slower.
"""

from __future__ import annotations

import dataclasses
import functools
from dataclasses import dataclass

from finetune.model.dtypes import Device
from finetune.model.memory import Memory, Settings, estimate

MIB = 1 << 20
TIGHT = 0.90          # above 90% of the GPU's memory: "tight" (other processes, a longer batch, drift)
SHORTEST = 128        # max_length is not proposed below this


@dataclass(frozen=True)
class Gpu:
    key: str
    label: str
    memory: int         # bytes the driver reports (nvidia-smi's total)
    bf16: bool

    @property
    def device(self) -> Device:
        return Device(cuda=True, bf16=self.bf16)


# Totals as nvidia-smi reports them (MiB), which is what the CUDA allocator can at most get.
GPUS = [Gpu("t4", "T4 16 GB", 15_360 * MIB, False), Gpu("l4", "L4 24 GB", 23_034 * MIB, True),
        Gpu("a10g", "A10G 24 GB", 23_028 * MIB, True), Gpu("rtx4090", "RTX 4090 24 GB", 24_564 * MIB, True),
        Gpu("a100-40", "A100 40 GB", 40_960 * MIB, True), Gpu("a100-80", "A100 80 GB", 81_920 * MIB, True),
        Gpu("h100", "H100 80 GB", 81_559 * MIB, True)]
LOCAL = "local"


@functools.lru_cache(maxsize=1)
def local_gpu() -> Gpu | None:
    """This machine's GPUs as one choice (the first one's memory: a run trains on one device each), or None
    without CUDA (then torch is not imported at all)."""
    from finetune.model.dtypes import this_device

    device = this_device()
    if not device.cuda:
        return None
    import torch

    props = [torch.cuda.get_device_properties(i) for i in range(torch.cuda.device_count())]
    name = props[0].name + (f" x{len(props)}" if len(props) > 1 else "")
    return Gpu(LOCAL, f"this machine: {name}", min(p.total_memory for p in props), device.bf16)


def gpus() -> list[Gpu]:
    local = local_gpu()
    return ([local] if local else []) + GPUS


def gpu(key: str | None) -> Gpu:
    """The GPU for a picker key; the default is this machine's GPU, else the T4 (the smallest common one)."""
    found = {g.key: g for g in gpus()}
    return found.get(key or "") or gpus()[0]


def verdict(memory: Memory, on: Gpu) -> str:
    """fits | tight | no"""
    if memory.total <= TIGHT * on.memory:
        return "fits"
    return "tight" if memory.total <= on.memory else "no"


@dataclass(frozen=True)
class Fix:
    changes: dict        # run-file keys ("section.key") -> the value that makes the run fit
    what: list           # the changes in words, in order
    memory: Memory       # the estimate with them
    verdict: str         # fits (or tight when nothing fits with room)


def find_fix(count, s: Settings, on: Gpu, accumulation: int) -> Fix | None:
    """The cheapest combination of changes (see the module's doc) under which the run fits `on`, or None when
    it fits already or nothing in reach makes it fit. Tries a few dozen settings: microseconds each."""
    if verdict(estimate(count, s), on) == "fits":
        return None
    best = None
    for cost, changed, what in _candidates(s, accumulation):
        memory = estimate(count, changed)
        v = verdict(memory, on)
        if v == "no":
            continue
        rank = (v != "fits", cost, memory.total)
        if best is None or rank < best[0]:
            best = (rank, changed, what, memory, v)
    if best is None:
        return None
    _, changed, what, memory, v = best
    return Fix(_changes(s, changed, accumulation), what, memory, v)


def _candidates(s: Settings, accumulation: int):
    """(cost, settings, words) for every combination of the four changes."""
    gcs = [s.gradient_checkpointing] + ([True] if not s.gradient_checkpointing else [])
    quants = [s.quantization] + (["4bit"] if s.quantization != "4bit" else [])
    batches = [b for b in range(s.batch, 0, -1) if s.batch % b == 0]       # divisors: the effective batch stays
    lengths = [s.max_length]
    while lengths[-1] // 2 >= SHORTEST:
        lengths.append(lengths[-1] // 2)
    for gc in gcs:
        for quant in quants:
            for batch in batches:
                for i, length in enumerate(lengths):
                    cost = (gc != s.gradient_checkpointing) * 1 + (quant != s.quantization) * 2 \
                        + _halvings(s.batch, batch) + 4 * i
                    if cost == 0:
                        continue
                    what = []
                    if gc != s.gradient_checkpointing:
                        what.append("turn on gradient checkpointing")
                    if quant != s.quantization:
                        what.append("load the model in 4-bit (QLoRA)")
                    if batch != s.batch:
                        what.append(f"batch size {batch} with gradient accumulation "
                                    f"{accumulation * s.batch // batch} (the same effective batch of "
                                    f"{accumulation * s.batch})")
                    if length != s.max_length:
                        what.append(f"max_length {length} (longer examples are truncated)")
                    yield cost, dataclasses.replace(s, gradient_checkpointing=gc, quantization=quant, batch=batch,
                                                    max_length=length), what


def _halvings(before: int, after: int) -> int:
    n = 0
    while before > after:
        before, n = (before + 1) // 2, n + 1
    return n


def _changes(s: Settings, changed: Settings, accumulation: int) -> dict:
    out: dict = {}
    if changed.gradient_checkpointing != s.gradient_checkpointing:
        out["training.gradient_checkpointing"] = changed.gradient_checkpointing
    if changed.quantization != s.quantization:
        out["model.quantization"] = changed.quantization
    if changed.batch != s.batch:
        out["training.per_device_train_batch_size"] = changed.batch
        out["training.gradient_accumulation_steps"] = accumulation * s.batch // changed.batch
    if changed.max_length != s.max_length:
        out["data.max_length"] = changed.max_length
    return out
