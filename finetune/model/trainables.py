"""The tensors a LoRA run trains, with their shapes: what the memory estimate sizes the gradients and the
optimizer state by (finetune/model/memory.py) and what the adapters' share of the kept activations is
counted from (finetune/model/activations.py). Its own module so that both read it and neither imports the
other for it."""

from __future__ import annotations

from finetune.model.dtypes import BYTES
from finetune.model.skeleton import Skeleton


def trainable_tensors(count, quantization: str, dtype: str) -> list[tuple[int, int, int, int]]:
    """(values, bytes per value, rows, cols) of each trainable tensor, grouped: adapters per bucket of equal
    shapes, then trained biases and full copies. rows x cols is the shape when 2-D (cols 0 for 1-D)."""
    from finetune.model.count import _ranks

    skel, lora = count._skel, count._lora
    quant = quantization != "none"
    adapter = 2 if quant else 4          # bf16 (TRL, over a quantized base) or float32 (PEFT's upcast)
    base = 2 if quant else BYTES[dtype]
    out = []
    for (_, _, fin, fout, _), per_rank in _ranks(skel, count._match, lora)["buckets"].items():
        for rank, layers in per_rank.items():
            r = rank or lora.r
            out += [(layers * r * fin, adapter, r, fin), (layers * fout * r, adapter, fout, r)]
            if lora.lora_bias:
                out.append((layers * fout, adapter, fout, 0))
            if lora.use_dora:
                out.append((layers * fout, 4, fout, 0))
    bias = count.modules.get("bias")
    if bias:
        out.append((bias["params"], base, bias["params"], 0))
    for numel, rows, cols in copied_tensors(skel, count._match):
        out.append((numel, base, rows, cols))
    return out


def copied_tensors(skel: Skeleton, found) -> list:
    """(values, rows, cols) of each parameter of the modules_to_save copies."""
    key = ("memory-copies", found.key)
    cached = skel.memo.get(key)
    if cached is None:
        cached = []
        for i in found.saved:
            m = skel.modules[i]
            for sub in skel.modules:
                if sub.name == m.name or sub.name.startswith(m.name + "."):
                    for local, p in sub.params:
                        n = skel.param_numels[p]
                        two_d = local == "weight" and sub.in_features and sub.kind != "other"
                        cached.append((n, sub.out_features if two_d else n, sub.in_features if two_d else 0))
        skel.memo[key] = cached
    return cached
