"""The one rule for `model.dtype: auto`, used by the count (adapter size on disk), the memory estimate and
the job that loads the weights, so the three never disagree.

`auto` is bfloat16 on a GPU that has it, float16 on an older GPU, and float32 on the CPU (half precision is
slow and poorly supported there).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

from finetune.model.machine import gpu_count

# torch dtype name -> safetensors dtype name (what adapter files record) and bytes per element.
SAFETENSORS_NAME = {"float32": "F32", "bfloat16": "BF16", "float16": "F16"}
BYTES = {"float32": 4, "bfloat16": 2, "float16": 2}


@dataclass(frozen=True)
class Device:
    """What the dtype rule needs to know about the machine that will train."""

    cuda: bool
    bf16: bool


CPU = Device(cuda=False, bf16=False)


@functools.lru_cache(maxsize=1)
def this_device() -> Device:
    """This machine's device: a GPU when finetune/model/machine.py counts one (without a GPU driver torch,
    seconds to import, is not imported at all)."""
    if gpu_count() == 0:
        return CPU
    import torch

    return Device(cuda=True, bf16=torch.cuda.is_bf16_supported())


def resolve_dtype(requested: str, device: Device | None = None) -> str:
    """`requested` (model.dtype: auto, bfloat16, float16, float32) as the torch dtype name the weights get."""
    if requested != "auto":
        return requested
    device = this_device() if device is None else device
    if device.cuda:
        return "bfloat16" if device.bf16 else "float16"
    return "float32"
