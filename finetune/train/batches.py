"""Padding-free SFT batches, chosen batch by batch where they are exact and cheaper.

A padded batch computes every row to its longest example: on ragged data much of a step is spent on pad
tokens. TRL's collator can instead lay a batch's examples end to end in one row, with position_ids restarting
at each example, and transformers then keeps each example to itself (its packed-sequence mask, or the
varlen kernels of flash attention). The loss is the same: the first token of each example carries no label,
as a padded row's first token predicts nothing. What changes is the cost:

- the linear layers (nearly all of a step) run on the real tokens instead of rows x longest;
- attention with a mask (SDPA, eager) runs over the whole row, (sum of lengths)^2 pairs instead of
  rows x longest^2. Flash attention's varlen kernels run per example, so with them a flat batch is never
  dearer.

So each batch is laid flat when its modelled cost is lower (`flat_is_cheaper`), and a flat row under a mask
stays short enough (FLAT_MASK_LIMIT) that its mask stays small. Which model types lay flat exactly is
measured, not assumed: EXACT_TYPES are those whose flat logits match their separate forwards
(tests/train/test_batches.py checks every one); OPT and BLOOM, for example, derive positions from the padding
mask and do not.

A run file's `training.padding_free: true` lays every batch flat (TRL's meaning), `false` none; without
it, the choice above. Settings under which a flat batch would train differently keep every batch padded
(`inexact_here`: NEFTune, a MoE router's auxiliary loss, context or sequence parallelism). TRL's own padding_free is never switched on: it refuses data.max_length without
packing, and the data here is already truncated to max_length by TRL's own tokenization.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

# Model types whose flat batches give the logits of separate forwards (transformers 5.23, each checked by
# tests/train/test_batches.py).
EXACT_TYPES = frozenset({
    "llama", "mistral", "mixtral", "qwen2", "qwen2_moe", "qwen3", "qwen3_moe", "gemma", "gemma2", "gemma3_text",
    "phi", "phi3", "olmo", "olmo2", "starcoder2", "cohere", "granite", "smollm3", "stablelm", "gpt2", "gpt_neox",
    "glm", "exaone4",
})
# A masked flat row of n tokens builds an n x n boolean mask: at 8,192 tokens, 64 MiB.
FLAT_MASK_LIMIT = 8192
# Under a mask (SDPA, eager), a flat row's attention pairs cost more per pair than a padded batch's: its one
# long row attends over a mostly masked n x n block. Fitted on the CPU (benchmarks/bench_batches.py's 4-layer
# Llama of width 256, one LoRA step per batch, 2026-12-05), flat/padded step times matched the model with a
# factor of 1.12-1.45 on the flat pairs; the upper end, rounded, keeps a close call padded.
MASKED_PAIR_COST = 1.5


@dataclass(frozen=True)
class Shape:
    """What the choice needs to know about the model: whether flat is exact, whether attention is varlen, and
    how many tokens' linear work one attention pair of a layer costs ("tokens per pair", see pair_weight)."""
    exact: bool
    varlen: bool
    pair_weight: float


def model_shape(config) -> Shape:
    """From a transformers config (the text config of a multimodal one)."""
    config = config.get_text_config() if hasattr(config, "get_text_config") else config
    attn = str(getattr(config, "_attn_implementation", None) or "")
    # flash_attention_2/3 and the Hub's kernels-community flash-attn kernels run each example of a flat row on
    # its own (cu_seq_lens): no mask, no cross-example pairs.
    varlen = "flash" in attn
    return Shape(exact=getattr(config, "model_type", "") in EXACT_TYPES, varlen=varlen,
                 pair_weight=pair_weight(config))


def pair_weight(config) -> float:
    """One attention pair's work in a layer (QK^T and AV: 4 x the attention width FLOPs) over one token's
    linear work in a layer (2 x the layer's weights, the LM head's share included), so that a batch costs
    tokens + pairs x pair_weight token-units. About 1/29,000 for Llama-3-8B, 1/500 for the demo model."""
    d = int(getattr(config, "hidden_size", 0) or getattr(config, "n_embd", 0) or 0)
    layers = int(getattr(config, "num_hidden_layers", 0) or getattr(config, "n_layer", 0) or 1)
    if not d:
        return 0.0
    heads = int(getattr(config, "num_attention_heads", 0) or getattr(config, "n_head", 0) or 1)
    head_dim = int(getattr(config, "head_dim", 0) or d // heads)
    kv_heads = int(getattr(config, "num_key_value_heads", 0) or heads)
    ffn = int(getattr(config, "intermediate_size", 0) or getattr(config, "n_inner", 0) or 4 * d)
    vocab = int(getattr(config, "vocab_size", 0) or 0)
    attn_weights = d * head_dim * (2 * heads + 2 * kv_heads)
    mlp_weights = (3 if hasattr(config, "intermediate_size") else 2) * d * ffn
    per_layer = attn_weights + mlp_weights + d * vocab / layers
    return 4 * heads * head_dim / (2 * per_layer)


def flat_is_cheaper(lengths: list[int], shape: Shape) -> bool:
    """Whether laying these examples end to end costs less than padding them to the longest."""
    rows, longest, flat = len(lengths), max(lengths), sum(lengths)
    if rows < 2 or flat == rows * longest:
        return False   # nothing to save
    if shape.varlen:
        return True    # fewer tokens, and attention per example: never dearer
    if flat > FLAT_MASK_LIMIT:
        return False
    w = shape.pair_weight
    return flat + MASKED_PAIR_COST * flat * flat * w < rows * longest + rows * longest * longest * w


@dataclass
class ChosenPadding:
    """TRL's collator, padded or flat batch by batch. `always` True/False is the run file's
    training.padding_free; None chooses by cost. (What was trained is counted by the trainer: the data loader
    collates a batch ahead, and evaluation's batches come through here too.)"""
    padded: Any   # trl's DataCollatorForLanguageModeling (imported where trl is)
    shape: Shape
    always: bool | None = None

    def __post_init__(self):
        self.flat = dataclasses.replace(self.padded, padding_free=True)   # the same pad token and multiple

    def __call__(self, examples: list[dict]):
        lengths = [len(e["input_ids"]) for e in examples]
        lay_flat = self.always if self.always is not None else self.shape.exact and flat_is_cheaper(lengths,
                                                                                                   self.shape)
        return (self.flat if lay_flat else self.padded)(examples)


def choose_padding(trainer, always: bool | None) -> str | None:
    """Put ChosenPadding in place of the SFT trainer's own collator; returns a note for train.log, or None
    where it stays as it is (packing lays examples flat already; a collator of another kind is left alone)."""
    from trl.trainer.sft_trainer import DataCollatorForLanguageModeling

    collator = trainer.data_collator
    if trainer.args.packing or type(collator) is not DataCollatorForLanguageModeling or collator.padding_free:
        return None
    if reason := inexact_here(trainer):
        return f"batches: padded ({reason})"
    shape = model_shape(trainer.model.config)
    if always is None and not shape.exact:
        return (f"batches: padded (model type {getattr(trainer.model.config, 'model_type', '?')} is not one whose "
                "padding-free batches were checked exact)")
    trainer.data_collator = ChosenPadding(collator, shape, always)
    if always is not None:
        return f"batches: {'every batch padding-free' if always else 'padded'} (training.padding_free: {always})"
    return "batches: padding-free where a batch is ragged enough to gain (train/batches.py)"


def inexact_here(trainer) -> str | None:
    """A setting under which a flat batch would train differently from a padded one, said in a few words."""
    parallelism = getattr(trainer.accelerator, "parallelism_config", None)
    if getattr(parallelism, "cp_enabled", False) or getattr(parallelism, "sp_enabled", False):
        # They split one row across ranks and drop the per-example mask (TRL refuses packing with them).
        return "context or sequence parallelism keeps no per-example mask"
    if getattr(trainer.args, "neftune_noise_alpha", None):
        return "NEFTune scales its noise by the row's length"
    if getattr(trainer, "aux_loss_enabled", False):
        return "the router's auxiliary loss would no longer count pad tokens"
    return None
