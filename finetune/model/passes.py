"""What each training method (method.name) forwards in one step, and the activation memory that follows: one
table keyed by method, read by finetune.model.memory. Pure arithmetic, like the rest of the estimate.

Read from TRL 1.16's trainers (each one's compute_loss):

  sft   one forward of `batch` sequences with the fused LM head (TRL's chunked log-probs, never whole logits).
  dpo   chosen and rejected concatenated into one batch of 2 x batch sequences (DataCollatorForPreference), one
        forward with the fused head; then the reference: the same 2 x batch sequences again through the model
        with the adapter off, per batch (precompute_ref_log_probs is False by default), under torch.no_grad:
        nothing saved, its working memory sits on top of the policy forward's saved activations.
  kto   batch sequences; before the policy forward, a no_grad forward of the KL batch (the same prompts with
        completions shifted by one inside the batch: batch mismatched pairs, when loss_type is `kto`); after
        it, the reference under no_grad for the KL batch and the batch (adapter off). Saved: batch sequences.
  orpo  chosen and rejected concatenated (2 x batch), one forward *without* the fused head: the model returns
        whole (2 x batch, length, vocabulary) logits, and the loss keeps a float32 log_softmax of them twice
        over the chosen half (its cross-entropy) and once over every row (selective_log_softmax, row by row).
  grpo  a generation batch of batch x gradient_accumulation_steps sequences (steps_per_generation defaults to
        gradient_accumulation_steps; per_device_train_batch_size counts completions, num_generations of them
        per prompt) generated at once under no_grad with a KV cache over prompt + max_completion_length
        tokens; then, per micro-batch of `batch` sequences, the training forward over prompt + completion
        (and, with beta > 0, the reference under no_grad before it, in micro-batches of the same size).
        TRL 1.16 does not truncate GRPO's prompts: data.max_length stands for the longest prompt here.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from finetune.model.activations import activation_parts, upcast_base


@dataclass(frozen=True)
class Shape:
    sequences: int = 1            # sequences per training forward, per batch entry (chosen + rejected: 2)
    reference_after: bool = False  # a no_grad pass (adapter off) while the policy's activations are kept
    full_logits: bool = False     # no fused LM head: whole logits and their float32 log_softmax are kept
    generates: bool = False       # GRPO: a generation batch with a KV cache before the training forward


SHAPES = {"sft": Shape(), "dpo": Shape(sequences=2, reference_after=True), "kto": Shape(reference_after=True),
          "orpo": Shape(sequences=2, full_logits=True), "grpo": Shape(generates=True)}


def method_activation_bytes(count, lay: dict, s) -> int:
    """Peak activation bytes of one step of method `s.method`: the largest of its phases."""
    parts = method_parts(count, lay, s)
    return max(parts["saved"] + parts["transient"], parts["generation"])


def method_parts(count, lay: dict, s) -> dict:
    """bytes: "saved" (what autograd keeps at the end of the training forward), "transient" (the largest
    working memory on top of it: the backward's, or the reference pass's), "generation" (GRPO: the KV cache
    and the generating forward's working memory, alone: nothing is kept for a backward then; else 0)."""
    shape = SHAPES.get(s.method, SHAPES["sft"])
    length = s.max_length + (s.completion if shape.generates else 0)
    train = dataclasses.replace(s, batch=s.batch * shape.sequences, max_length=length)
    saved, transient = activation_parts(count, lay, train, fused_head=not shape.full_logits)
    if shape.full_logits:
        logits = train.batch * length * lay["vocab"]
        # Kept: float32 log_softmax of every row and of the chosen half (its cross-entropy). On top, at the
        # end of the forward: the logits themselves and the chosen half's contiguous copy in the compute
        # dtype, and in the backward their float32 gradient.
        saved += 4 * logits + 4 * logits // shape.sequences
        transient = max(transient, logits * (compute_bytes(s) + 4) + logits // shape.sequences * compute_bytes(s))
    if shape.reference_after:
        transient = max(transient, no_grad_bytes(lay, train))
    generation = 0
    if shape.generates:
        sequences = s.batch * max(1, s.accumulation)
        generation = kv_cache_bytes(lay, s, sequences, length) \
            + no_grad_bytes(lay, dataclasses.replace(s, batch=sequences), last_token_only=True)
    return {"saved": saved, "transient": transient, "generation": generation}


def compute_bytes(s) -> int:
    from finetune.model.dtypes import BYTES

    return BYTES[s.dtype] if BYTES[s.dtype] == 2 else 4


def kv_cache_bytes(lay: dict, s, sequences: int, tokens: int) -> int:
    """transformers' DynamicCache at the end of generation: keys and values of every layer, for the kv heads
    only (grouped-query attention keeps them unrepeated), in the compute dtype."""
    return sequences * tokens * lay["layers"] * 2 * lay["kv"] * compute_bytes(s)


def no_grad_bytes(lay: dict, s, last_token_only: bool = False) -> int:
    """Working memory of a forward under torch.no_grad (the reference, KTO's KL batch, generation's prefill):
    nothing is kept from layer to layer, so the largest is one layer's: the residual stream and its normed copy,
    q, k, v and the attention output, the MLP's intermediates; then the fused head's input and one logits tile
    (or, in generation, float32 logits of the last token, its processed scores and probabilities)."""
    from finetune.model.activations import TOKEN_TILE, VOCAB_TILE

    c = compute_bytes(s)
    stream = 4 if upcast_base(s) else c
    tokens = s.batch * s.max_length
    layer = tokens * (2 * lay["hidden"] * stream + (lay["qkv"] + lay["q"]) * c + 3 * lay["inter"] * stream)
    mask = s.batch * s.max_length ** 2 if s.batch > 1 and s.attn != "flash_attention_2" else 0
    if last_token_only:
        head = 3 * s.batch * lay["vocab"] * 4
    else:
        head = tokens * lay["hidden"] * c + min(tokens, TOKEN_TILE) * VOCAB_TILE * c + 16 * tokens
    return max(layer, head) + mask
