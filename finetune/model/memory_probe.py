"""Measuring what finetune.model.memory estimates, on a real model loaded the way the training job loads it.

Used by the tests (static parts, on the CPU, to 2%) and by benchmarks/bench_memory.py (the whole step's peak
on a GPU). Everything here imports torch and PEFT; the estimate itself (memory.py) never does.

- `prepare(run)`: the base model as finetune.model.loading.load_model gives it (quantized models through
  prepare_model_for_kbit_training), the LoRA adapter from get_peft_model, and TRL's SFTTrainer rule for
  quantized bases (adapter weights, but not DoRA magnitudes, cast to bfloat16; trl 1.16 sft_trainer.py).
- `weights_bytes`: model.get_memory_footprint() of the frozen base, plus the quantization constants
  bitsandbytes keeps beside each quantized weight (absmax, code tables, SCB), which the footprint leaves out.
- `saved_activation_bytes`: the tensors autograd keeps for the backward pass during one forward, counted
  once per storage (several views or consumers of one tensor cost it once), parameters left out.
"""

from __future__ import annotations

import contextlib


def prepare(run, base=None):
    """(peft model, base) for a RunConfig, as the job builds them before the Trainer starts."""
    import torch
    from peft import get_peft_model

    from finetune.model.loading import load_model, lora_config

    if base is None:
        base = load_model(run.model, run.training.gradient_checkpointing)
    model = get_peft_model(base, lora_config(run.lora))
    if run.model.quantization != "none":
        for name, p in model.named_parameters():
            if p.requires_grad and "lora_magnitude_vector" not in name:
                p.data = p.data.to(torch.bfloat16)
    return model, base


def _storage_key(t):
    return t.untyped_storage().data_ptr()


def quant_constant_bytes(model) -> int:
    """Bytes of the bitsandbytes quantization state: 4-bit absmax (and, double-quantized, its own absmax,
    code table and offset) and code table per weight; 8-bit per-row scales (SCB)."""
    import torch

    seen, total = set(), 0
    for p in model.parameters():
        tensors = []
        qs = getattr(p, "quant_state", None)
        if qs is not None:
            tensors += [qs.absmax, qs.code, getattr(qs, "offset", None)]
            if getattr(qs, "state2", None) is not None:
                tensors += [qs.state2.absmax, qs.state2.code]
        tensors.append(getattr(p, "SCB", None))
        for t in tensors:
            if torch.is_tensor(t) and _storage_key(t) not in seen:
                seen.add(_storage_key(t))
                total += t.untyped_storage().nbytes()
    return total


def weights_bytes(base) -> int:
    """The frozen model's memory: parameters and buffers (get_memory_footprint) and quantization constants."""
    return base.get_memory_footprint() + quant_constant_bytes(base)


def trainable_bytes(model) -> int:
    return sum(p.numel() * p.element_size() for p in model.parameters() if p.requires_grad)


def gradient_bytes(model) -> int:
    return sum(p.grad.numel() * p.grad.element_size() for p in model.parameters() if p.grad is not None)


def optimizer_bytes(optimizer) -> int:
    """Every tensor the optimizer keeps per parameter (moments, factored second moments, 8-bit states and their
    block scales, step counters), each storage once."""
    import torch

    seen, total = set(), 0
    for state in optimizer.state.values():
        for value in state.values():
            if torch.is_tensor(value) and _storage_key(value) not in seen:
                seen.add(_storage_key(value))
                total += value.untyped_storage().nbytes()
    return total


def build_optimizer(model, run):
    """The optimizer transformers.Trainer builds for training.optim (its own mapping), over the trainable
    parameters."""
    from transformers import TrainingArguments
    from transformers.trainer import Trainer

    args = TrainingArguments(output_dir="/tmp/unused", optim=run.training.optim, learning_rate=run.training.learning_rate,
                             weight_decay=run.training.weight_decay, report_to="none", use_cpu=True)
    cls, kwargs = Trainer.get_optimizer_cls_and_kwargs(args, model)
    return cls([p for p in model.parameters() if p.requires_grad], **kwargs)


def autocast_for(run, device_type: str = "cpu"):
    """Mixed precision as the Trainer sets it: autocast to the weights' 16-bit dtype, none in float32."""
    import torch

    from finetune.model.loading import weights_dtype

    dtype = weights_dtype(run.model)
    if dtype == torch.float32:
        return contextlib.nullcontext()
    return torch.autocast(device_type, dtype=dtype)


def add_job_loss(model) -> None:
    """The loss as TRL's SFTTrainer computes it: a fused LM head that never builds the whole logits tensor."""
    from trl.trainer.utils import add_fused_lm_head

    add_fused_lm_head(model.get_base_model(), outputs=("log_probs", "entropy", "is_top1"))


def saved_activation_bytes(model, input_ids, attention_mask=None, context=None) -> int:
    """Bytes autograd saves for backward during one forward with the job's loss (add_job_loss first), each
    storage once, parameters and quantized weights left out. The forward's own output is then released."""
    import torch

    params = {_storage_key(p) for p in model.parameters()}
    seen: dict[int, int] = {}

    def pack(t):
        if t.device.type != "meta":
            key = _storage_key(t)
            if key not in params and key not in seen:
                seen[key] = t.untyped_storage().nbytes()
        return t

    with context or contextlib.nullcontext(), torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = model(input_ids=input_ids, attention_mask=attention_mask, labels=input_ids, fused_lm_head=True)
    del out
    return sum(seen.values())
