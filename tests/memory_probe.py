"""Measuring what finetune.model.memory estimates, on a real model loaded the way the training job loads it.

Used by the tests (static parts, on the CPU, to 2%) and by benchmarks/bench_memory.py (the whole step's peak
on a GPU). Everything here imports torch and PEFT; the estimate itself (memory.py) never does.

- `prepare(run)`: the base model as finetune.model.loading.load_model gives it (quantized models through
  prepare_quantized_for_training), the LoRA adapter from get_peft_model with the job's adapter inputs
  (finetune.model.adapter_inputs), and TRL's SFTTrainer rule for
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

    from finetune.model.adapter_inputs import read_inputs_as_is
    from finetune.model.loading import load_model, lora_config

    if base is None:
        base = load_model(run.model, run.training.gradient_checkpointing)
    model = get_peft_model(base, lora_config(run.lora))
    read_inputs_as_is(model)   # as the job does under mixed precision; outside autocast it changes nothing
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


@contextlib.contextmanager
def saved_bytes(model):
    """Within it, what autograd saves for backward: {storage: bytes}, each storage once, the model's parameters
    (and quantized weights) and meta tensors left out; sum its values once the forward is done."""
    import torch

    params = {_storage_key(p) for p in model.parameters()}
    seen: dict[int, int] = {}

    def pack(t):
        if t.device.type != "meta":
            key = _storage_key(t)
            if key not in params and key not in seen:
                seen[key] = t.untyped_storage().nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        yield seen


def saved_activation_bytes(model, input_ids, attention_mask=None, context=None) -> int:
    """Bytes autograd saves for backward during one forward with the job's loss (add_job_loss first), each
    storage once, parameters and quantized weights left out. The forward's own output is then released."""
    with context or contextlib.nullcontext(), saved_bytes(model) as seen:
        out = model(input_ids=input_ids, attention_mask=attention_mask, labels=input_ids, fused_lm_head=True)
    del out
    return sum(seen.values())


# --- one real step of a method's TRL trainer (finetune.model.passes) ----------------------------------------

def allocated_peak(trace: str) -> int:
    """The CPU allocator's peak over a profiled window, in bytes above what was allocated when it began: the
    largest 'Total Allocated' of the profiler's [memory] events (c10's ProfiledCPUMemoryReporter keeps that
    running total while memory profiling is on: the CPU's torch.cuda.max_memory_allocated)."""
    import json
    from pathlib import Path

    events = [e["args"] for e in json.loads(Path(trace).read_text(encoding="utf-8"))["traceEvents"]
              if e.get("name") == "[memory]" and e["args"].get("Device Type") == 0]
    if not events:
        return 0
    start = events[0]["Total Allocated"] - events[0]["Bytes"]
    return max(e["Total Allocated"] for e in events) - start


def method_step(run_path: str, workdir: str) -> dict:
    """Train the run (a run file whose training.max_steps is 2) with the job's own setup, model and TRL trainer,
    and measure its second step (the first creates the optimizer state): the allocator's peak over the step,
    the gradients alive after it, the bytes autograd kept during compute_loss (each storage once, parameters
    left out), the training forward's (rows, tokens), and GRPO's generation: its (rows, prompt tokens) and the
    KV cache's bytes and tokens at their largest."""
    import os

    import torch
    from transformers import TrainerCallback

    from finetune.model.loading import load_model
    from finetune.train.job import setup
    from finetune.train.methods import build_trainer

    found: dict = {"saved": 0, "rows": 0, "tokens": 0, "kv": 0, "kv_tokens": 0, "generation": (0, 0)}
    window: dict = {"on": False}

    class Probe(TrainerCallback):
        def on_step_begin(self, args, state, control, **kwargs):
            if state.global_step == 1:
                window["on"] = True
                window["prof"] = torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU],
                                                        profile_memory=True)
                window["prof"].start()

        def on_step_end(self, args, state, control, **kwargs):
            if window.pop("on", False):
                window["prof"].stop()
                path = os.path.join(workdir, "step.json")
                window["prof"].export_chrome_trace(path)
                found["peak"] = allocated_peak(path)
                found["gradients"] = gradient_bytes(kwargs["model"])

    plan = setup(run_path, False)
    model = load_model(plan.run.model, plan.run.training.gradient_checkpointing)
    trainer = build_trainer(plan, model, [Probe()])
    base = trainer.model.get_base_model()

    def before(module, args, kwargs):
        ids = kwargs.get("input_ids", args[0] if args else None)
        if window["on"] and torch.is_grad_enabled() and ids is not None:
            found["rows"], found["tokens"] = ids.shape
        elif window["on"] and ids is not None and kwargs.get("past_key_values") is not None \
                and found["generation"] == (0, 0):
            found["generation"] = tuple(ids.shape)      # the prefill: (sequences, prompt tokens)

    def after(module, args, kwargs, output):
        cache = getattr(output, "past_key_values", None)
        if window["on"] and cache is not None and not torch.is_grad_enabled():
            tensors = [t for layer in cache.layers for t in (layer.keys, layer.values) if torch.is_tensor(t)]
            found["kv"] = max(found["kv"], sum(t.numel() * t.element_size() for t in tensors))
            found["kv_tokens"] = max(found["kv_tokens"], tensors[0].shape[-2] if tensors else 0)

    base.register_forward_pre_hook(before, with_kwargs=True)
    base.register_forward_hook(after, with_kwargs=True)
    compute_loss = trainer.compute_loss

    def kept_loss(*args, **kwargs):
        if not window["on"]:
            return compute_loss(*args, **kwargs)
        with saved_bytes(trainer.model) as seen:
            out = compute_loss(*args, **kwargs)
        found["saved"] = sum(seen.values())
        return out

    trainer.compute_loss = kept_loss
    trainer.train()
    return found


def method_run(method: dict, out: str, batch: int = 4, max_length: int = 128) -> dict:
    """A run file (as data) of two steps of `method` on the demo model and the method's demo data."""
    return {"model": {"name_or_path": "demo"}, "method": method, "lora": {"r": 8, "target_modules": "all-linear"},
            "data": {"path": "demo", "max_length": max_length},
            "training": {"output_dir": out, "max_steps": 2, "per_device_train_batch_size": batch,
                         "gradient_accumulation_steps": 1, "save_steps": 1000, "logging_steps": 1}}


def compare_method(raw: dict, workdir: str) -> dict:
    """One measured step (method_step) beside the estimate for the shape that step really had (the demo's
    examples are shorter than max_length: the estimate is given the batch's padded length, and for GRPO the
    prompt and completion lengths it generated). Bytes: "saved" (kept for backward) and "peak" (the step's
    allocator peak, against the estimate's activations + gradients, which is what a step allocates anew)."""
    import dataclasses
    from pathlib import Path

    from finetune.model.activations import layout
    from finetune.model.count import count_run
    from finetune.model.dtypes import CPU
    from finetune.model.memory import estimate, settings_of
    from finetune.model.passes import SHAPES, method_parts
    from finetune.runfile import RunConfig, dump_yaml

    path = Path(workdir) / "run.yaml"
    path.write_text(dump_yaml(raw), encoding="utf-8")
    found = method_step(str(path), workdir)
    run = RunConfig.from_dict(raw)
    s = settings_of(run, CPU)
    if SHAPES[s.method].generates:
        prompt = found["generation"][1]
        s = dataclasses.replace(s, batch=found["rows"], max_length=prompt, completion=found["tokens"] - prompt)
    else:
        s = dataclasses.replace(s, batch=found["rows"] // SHAPES[s.method].sequences, max_length=found["tokens"])
    count = count_run(run)
    assert count._skel is not None, "a run that counts has a skeleton"
    parts = method_parts(count, layout(count._skel), s)
    memory = estimate(count, s)
    return {"method": s.method, "settings": s, "measured": found, "saved": parts["saved"], "parts": parts,
            "peak": memory.activations + memory.gradients}
