"""Will it fit? The GPU memory a LoRA run needs, in bytes per component, from config.json and the run file alone.

Pure arithmetic on the skeleton (finetune.model.architecture) and the exact count (finetune.model.count); what
depends only on the model is cached on the skeleton, so an estimate costs microseconds and the page can redo it
at every slider move. It follows what this project's job really builds (finetune.model.loading + TRL 1.16's
SFTTrainer), measured on loaded models by tests/model/test_memory.py:

  weights      the frozen base. 16/32-bit: parameters x dtype. 4-bit NF4 / 8-bit (bitsandbytes, as
               transformers' replace_with_bnb_linear picks them: plain nn.Linear and Conv1D, not the output
               embedding, not tied or last modules): packed weights plus their quantization constants; every
               other parameter (embeddings, lm_head, norms, biases) stays in the weights' dtype
               (finetune.model.loading.prepare_quantized_for_training), except under ORPO, whose TRL trainer
               calls PEFT's prepare_model_for_kbit_training and upcasts them to float32.
  trainable    LoRA/DoRA adapters and modules_to_save copies: float32 over a 16-bit base (PEFT's
               autocast_adapter_dtype), bfloat16 over a quantized one (SFTTrainer casts them; DoRA
               magnitudes stay float32), the base's dtype for trained biases and full copies.
  gradients    one per trainable parameter, in its dtype (kept across gradient accumulation).
  optimizer    by training.optim: AdamW two moments in the parameter's dtype; bitsandbytes 8-bit AdamW one
               byte per moment plus a float32 scale per 256 (tensors under 4096 values stay 32-bit); paged
               and bnb 32-bit AdamW two float32 moments; Adafactor factored float32 second moments; SGD none.
  activations  what autograd keeps for the backward pass, plus the largest transient of the step. Per layer and
               token this is the Korthikanti et al. 2022 ("Reducing Activation Recomputation in Large
               Transformer Models") bookkeeping redone for a frozen base with adapters (the residual stream in
               the weights' dtype, a quantized base's too; the QLoRA rows of benchmarks/gpu_results.csv were
               measured with a float32 stream and must be re-measured: bench_gpu.py): a frozen Linear keeps
               nothing, norms keep a float32 copy of their input, attention (SDPA/flash) keeps q, k, v, its
               output and a logsumexp (eager adds the heads x s x s scores), a gated MLP keeps three
               intermediates (one without gate), and every adapter keeps its own copy of its input when PEFT
               casts it to the adapter's dtype (with dropout or DoRA: finetune.model.adapter_inputs). Gradient
               checkpointing keeps one hidden state per layer and recomputes one layer at a time. TRL's fused
               LM head never builds the (tokens x vocabulary) logits: it works on 4096 x 32768 tiles. Token
               count is batch x max_length (padding to the longest example can only be shorter).
  overhead     the CUDA context (kernels, cuBLAS workspaces), outside PyTorch's allocator, and a margin for
               the caching allocator's fragmentation.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from finetune.model.activations import layout, upcast_base
from finetune.model.architecture import CONV1D, LINEAR, Skeleton
from finetune.model.dtypes import BYTES, Device, resolve_dtype, this_device
from finetune.model.passes import method_activation_bytes
from finetune.model.trainables import trainable_tensors

MIB = 1 << 20
PARTS = ("weights", "trainable", "gradients", "optimizer", "activations", "overhead")
# A GPU of today, for an estimate asked on a machine without one: the estimate is about the GPU it will train on.
BF16_GPU = Device(cuda=True, bf16=True)
CUDA_CONTEXT = 512 * MIB        # CUDA context + cuBLAS/cuDNN workspaces: 0.3-0.6 GB on recent GPUs and PyTorch
FRAGMENTATION = 0.05            # caching allocator: reserved exceeds allocated by a few percent
BNB_MIN_8BIT = 4096             # bitsandbytes optimizers keep smaller tensors in 32-bit
BNB_8BIT = ("adamw_8bit", "adamw_bnb_8bit", "paged_adamw_8bit")
BNB_BLOCK = 256                 # ... and quantize the others' moments in blocks of 256, one float32 scale each
NF4_BLOCK, NESTED_BLOCK = 64, 256   # QLoRA: an absmax per 64 weights, itself quantized per 256 (double quant)


@dataclass(frozen=True)
class Settings:
    """What the estimate reads from a run file (and what fit.py varies to make a run fit)."""
    quantization: str = "none"        # none | 4bit | 8bit
    dtype: str = "bfloat16"           # resolved: bfloat16 | float16 | float32
    batch: int = 2
    max_length: int = 512
    gradient_checkpointing: bool = False
    optim: str = "adamw_torch_fused"
    lora_dropout: float = 0.0
    use_dora: bool = False
    attn: str = "sdpa"                # sdpa | flash_attention_2 | eager
    double_quant: bool = True         # the job's 4-bit recipe (finetune.model.loading.quantization_config)
    devices: int = 1
    strategy: str = "ddp"
    zero_stage: int = 2
    method: str = "sft"               # method.name: what one step forwards (finetune.model.passes.SHAPES)
    completion: int = 0               # GRPO: max_completion_length, tokens generated after each prompt
    accumulation: int = 1             # GRPO: gradient_accumulation_steps micro-batches are generated at once


@dataclass(frozen=True)
class Memory:
    weights: int
    trainable: int
    gradients: int
    optimizer: int
    activations: int
    overhead: int
    settings: Settings | None = None

    @property
    def total(self) -> int:
        return self.weights + self.trainable + self.gradients + self.optimizer + self.activations + self.overhead

    def to_json(self) -> dict:
        """What `count --json` and /count carry under "memory": bytes, per component and in total."""
        return {**{k: int(getattr(self, k)) for k in PARTS}, "total": int(self.total)}


def settings_of(run, device: Device | None = None) -> Settings:
    """The run's settings as the GPU it trains on sees them: `auto` dtype resolved for `device` (default: this
    machine's GPU, or a bfloat16 GPU when this machine has none)."""
    if device is None:
        device = this_device() if this_device().cuda else BF16_GPU
    t = run.training
    model_kwargs = (run.training_extra.get("model_init_kwargs") or {}) if isinstance(run.training_extra, dict) else {}
    devices = getattr(t, "devices", 1)
    method = run.method
    return Settings(quantization=run.model.quantization, dtype=resolve_dtype(run.model.dtype, device),
                    batch=t.per_device_train_batch_size, max_length=run.data.max_length,
                    gradient_checkpointing=t.gradient_checkpointing, optim=t.optim,
                    lora_dropout=run.lora.lora_dropout, use_dora=run.lora.use_dora,
                    attn=str(model_kwargs.get("attn_implementation") or "sdpa"),
                    devices=devices if isinstance(devices, int) else 1, strategy=getattr(t, "strategy", "ddp"),
                    zero_stage=getattr(t, "zero_stage", 2), method=method.name,
                    completion=(method.max_completion_length or 0) if method.name == "grpo" else 0,
                    accumulation=t.gradient_accumulation_steps)


def estimate(count, s: Settings) -> Memory:
    """The memory of one device for a count (finetune.model.count.Count) under settings `s`."""
    skel, lay = count._skel, layout(count._skel)
    tensors = trainable_tensors(count, s.quantization, s.dtype)          # [(numel, bytes per value, rows, cols)]
    trainable = sum(n * b for n, b, _, _ in tensors)
    weights = weight_bytes(skel, s.quantization, "float32" if upcast_base(s) else s.dtype, s.double_quant)
    optimizer = sum(optimizer_bytes(s.optim, n, b, rows, cols) for n, b, rows, cols in tensors)
    if s.optim in BNB_8BIT and any((rows * cols or rows) >= BNB_MIN_8BIT for _, _, rows, cols in tensors):
        optimizer += 2 * 256 * 4      # the two 256-entry dynamic quantization maps, shared by all parameters
    activations = method_activation_bytes(count, lay, s)
    # Several devices (training.strategy): FSDP shards everything but activations; ZeRO-2 shards gradients and
    # optimizer state, ZeRO-3 the weights too; DDP keeps a whole copy on each device.
    n = max(1, s.devices)
    gradients = trainable
    if n > 1 and s.strategy in ("fsdp", "deepspeed"):
        gradients, optimizer = gradients // n, optimizer // n
        if s.strategy == "fsdp" or s.zero_stage == 3:
            weights, trainable = weights // n, trainable // n
    rest = weights + trainable + gradients + optimizer + activations
    overhead = CUDA_CONTEXT + int(FRAGMENTATION * rest)
    return Memory(weights, trainable, gradients, optimizer, activations, overhead, s)


# --- weights ---------------------------------------------------------------------------------------------

def quantized_weight_bytes(numel: int, rows: int, quantization: str, double_quant: bool = True) -> int:
    """One weight as bitsandbytes keeps it. 4-bit NF4: two values a byte, an absmax per 64 values (uint8 with
    double quantization, which adds a float32 absmax per 256 of them, its 256-entry code table and an offset;
    else float32), and the 16-entry NF4 table. 8-bit (LLM.int8()): a byte each and a float32 scale per row."""
    if quantization == "8bit":
        return numel + 4 * rows
    blocks = math.ceil(numel / NF4_BLOCK)
    if double_quant:
        return (numel + 1) // 2 + blocks + 4 * math.ceil(blocks / NESTED_BLOCK) + 4 * 256 + 4 + 4 * 16
    return (numel + 1) // 2 + 4 * blocks + 4 * 16


def quantized_modules(skel: Skeleton) -> set:
    """Names of the modules bitsandbytes quantizes: exactly nn.Linear (not subclasses) and Conv1D, except the
    output embedding, tied modules and the last parameter's module (transformers' get_keys_to_not_convert)."""
    found = skel.memo.get("memory-quantized")
    if found is None:
        keep = {n for n in (skel.output_name, skel.input_name if skel.tied else None) if n}
        if skel.param_names:
            keep.add(skel.param_names[-1].removesuffix(".weight"))
        found = {m.name for m in skel.modules
                 if (m.kind == CONV1D or (m.kind == LINEAR and m.cls == "Linear"))
                 and not any(m.name == k or m.name.endswith("." + k) for k in keep)}
        skel.memo["memory-quantized"] = found
    return found


def weight_bytes(skel: Skeleton, quantization: str, dtype: str, double_quant: bool = True) -> int:
    key = ("memory-weights", quantization, dtype, double_quant)
    found = skel.memo.get(key)
    if found is not None:
        return found
    if quantization == "none":
        found = skel.total * BYTES[dtype]
    else:
        quantized = quantized_modules(skel)
        done, found = set(), 0
        for m in skel.modules:
            for local, i in m.params:
                if i in done:
                    continue
                done.add(i)
                numel = skel.param_numels[i]
                if local == "weight" and m.name in quantized:
                    found += quantized_weight_bytes(numel, m.out_features, quantization, double_quant)
                else:
                    found += BYTES[dtype] * numel    # left in the weights' dtype
    skel.memo[key] = found
    return found


# --- what trains -----------------------------------------------------------------------------------------

def optimizer_bytes(optim: str, numel: int, each: int, rows: int, cols: int) -> int:
    """State bytes for `numel` values held as tensors of shape rows x cols (1-D when cols is 0), each value of
    `each` bytes. A group of equal tensors is passed as one: the per-tensor terms scale with numel/(rows*cols)."""
    size = rows * cols if cols else rows
    copies = max(1, numel // size) if size else 1
    if optim == "sgd":
        return 0                                            # the Trainer's SGD has no momentum: no state
    if optim == "adafactor":                                # transformers.Adafactor, beta1 None: no first moment
        per = 4 * (rows + cols) if cols else 4 * size       # factored row and column second moments, float32
        return copies * (per + 4)                           # + its RMS, a 0-dim float32 tensor
    if optim in BNB_8BIT:
        if size < BNB_MIN_8BIT:
            return 8 * numel
        return copies * (2 * size + 2 * 4 * math.ceil(size / BNB_BLOCK))
    if optim == "paged_adamw_32bit":
        return 8 * numel                                    # two float32 moments, whatever the parameter's dtype
    return 2 * each * numel + 4 * copies                    # torch AdamW: two moments + a float32 step per tensor


def count_json(run, name: str) -> dict:
    """The object `count --json` prints for a run file and the app's /count returns: the exact count and, under
    "memory", the estimate in bytes for the GPU it will train on (settings_of), which follows the method's
    passes. The count itself is the same for every method: they train the same adapters."""
    from finetune.model.count import count_run

    count = count_run(run)
    return {**count.to_json(name), "method": run.method.name, "memory": estimate(count, settings_of(run)).to_json(),
            "note": "the trainable count is the same for every method (the same adapters); the memory follows "
                    f"what {run.method.name} forwards in a step"}
