"""Activation memory of a LoRA training step: what autograd keeps for the backward pass and the largest
transient on top of it, from the skeleton's module tree (finetune.model.architecture) and the run's settings.
The bookkeeping, and what was measured, is described in finetune.model.memory; tests/model/test_memory.py holds the
kept part against autograd's own saved tensors on real models.
"""

from __future__ import annotations

from collections import Counter

from finetune.model.adapter_inputs import reads_input_as_is
from finetune.model.architecture import CONV1D, EMBEDDING, LINEAR, Skeleton
from finetune.model.dtypes import BYTES
from finetune.model.trainables import trainable_tensors

TOKEN_TILE, VOCAB_TILE = 4096, 32768   # trl.kernels.chunked_logprob: TOKEN_CHUNK_SIZE, _CHUNKED_LOGPROB_CHUNK_SIZE
ATTN_OUT = {"o_proj", "out_proj", "dense", "c_proj", "wo", "o"}
MLP_OUT = {"down_proj", "c_proj", "fc2", "dense_4h_to_h", "w2"}
# Activations written as several tensor operations keep several intermediates (measured); the others keep one.
ACTIVATION_SAVES = {"NewGELUActivation": 4, "FastGELUActivation": 7, "QuickGELUActivation": 2}
# Model types whose transformers 5 class has no SDPA path (`_supports_sdpa = False`): they run eager attention.
EAGER_ONLY = {"gemma2", "gemma4", "gpt_oss", "vaultgemma", "granite_swa", "granitemoe_swa", "mimo_v2_flash",
              "deepseek_v4"}


# --- the model's shape, once per skeleton ----------------------------------------------------------------

def layout(skel: Skeleton) -> dict:
    """The decoder's dimensions and each linear's role in a block, read from the skeleton's module tree."""
    found = skel.memo.get("memory-layout")
    if found is not None:
        return found
    lists = {m.name for m in skel.modules if m.cls == "ModuleList"}
    blocks: Counter = Counter()
    for m in skel.modules:
        parent, _, tail = m.name.rpartition(".")
        if parent in lists and tail.isdigit():
            blocks[parent] += 1
    where, n_layers = blocks.most_common(1)[0] if blocks else ("", 0)
    prefix = f"{where}.0."
    first = [m for m in skel.modules if m.name.startswith(prefix)]
    linears = [m for m in first if m.kind in (LINEAR, CONV1D)]
    by_name = skel.by_name()
    emb = by_name.get(skel.input_name)
    out = by_name.get(skel.output_name)
    hidden = emb.out_features if emb is not None else (linears[0].in_features if linears else 0)
    vocab = out.out_features if out is not None and out.kind != EMBEDDING else (emb.in_features if emb else 0)
    inter = max((m.in_features for m in linears), default=hidden)
    roles = {}
    for m in linears:
        path = m.name[len(prefix):].split(".")
        in_attn = any("attn" in p or "attention" in p for p in path[:-1])
        if in_attn:
            roles[m.short] = "attn_out" if m.short in ATTN_OUT else "qkv"
        elif (m.in_features == inter and inter != hidden) or m.short in MLP_OUT:
            roles[m.short] = "mlp_out"
        else:
            roles[m.short] = "mlp_in"
    width = {r: sum(m.out_features for m in linears if roles[m.short] == r) for r in ("qkv", "mlp_in")}
    q = next((m.in_features for m in linears if roles[m.short] == "attn_out"), hidden)
    kv = max(0, (width["qkv"] - q) // 2)
    norms = []
    for m in first:
        if "Norm" in m.cls:
            inside = any("attn" in p or "attention" in p for p in m.name[len(prefix):].split(".")[:-1])
            norms.append(q if inside and m.short.startswith("q") else kv if inside else hidden)
    # The largest quantizable weight: dequantized whole for each 4-bit / 8-bit matmul.
    biggest = max((m.in_features * m.out_features for m in linears), default=0)
    raw = _config(skel)
    act = next((m.cls for m in first if m.cls in ACTIVATION_SAVES), "")
    # Residual dropout (GPT-2, OPT...): a one-byte mask per dropout, two per layer. GPT-2's default is 0.1
    # even when its config.json does not say so.
    dropout = _first(raw, ("resid_pdrop", "hidden_dropout", "dropout", "hidden_dropout_prob"),
                     0.1 if skel.model_type == "gpt2" else 0.0)
    found = dict(layers=n_layers, hidden=hidden, vocab=vocab, inter=inter, q=q, kv=kv, qkv=width["qkv"] or 3 * hidden,
                 gated=width["mlp_in"] >= 2 * inter, roles=roles, norms=norms, biggest=biggest,
                 heads=int(_first(raw, ("num_attention_heads", "n_head", "num_heads", "n_heads"), max(1, q // 128))),
                 act=ACTIVATION_SAVES.get(act, 1), dropout=dropout > 0, eager=skel.model_type in EAGER_ONLY)
    skel.memo["memory-layout"] = found
    return found


def _config(skel: Skeleton) -> dict:
    """config.json as plain data when it is on this machine (a local folder, the demo, or the Hub client's
    cache; never the network), else {}: the few numbers the module tree does not show."""
    import json
    from pathlib import Path

    from finetune.demo import resolve_model

    try:
        path: Path | None = Path(resolve_model(skel.source)).expanduser() / "config.json"
        if path is None or not path.is_file():
            from huggingface_hub import try_to_load_from_cache

            cached = try_to_load_from_cache(skel.source, "config.json")
            path = Path(cached) if isinstance(cached, str) else None
        raw = json.loads(path.read_text(encoding="utf-8")) if path else {}
        raw = raw.get("text_config", raw) if isinstance(raw, dict) else {}
        return raw if isinstance(raw, dict) else {}
    except Exception:  # an unreadable or odd config only costs the fallbacks
        return {}


def _first(raw: dict, keys, default):
    return next((raw[k] for k in keys if isinstance(raw.get(k), (int, float)) and not isinstance(raw[k], bool)),
                default)


# --- activations -----------------------------------------------------------------------------------------

def upcast_base(s) -> bool:
    """Whether the quantized base's unquantized weights (embeddings, norms, lm_head) are float32 in training,
    and with them the residual stream: only under ORPO, whose TRL trainer calls PEFT's
    prepare_model_for_kbit_training itself. The job keeps them in the compute dtype. The QLoRA estimate under
    this rule still awaits GPU measurements (benchmarks/bench_gpu.py); the float32 one measured -8.5%..+0.4%."""
    return s.quantization != "none" and getattr(s, "method", "sft") == "orpo"


def activation_bytes(count, lay: dict, s) -> int:
    saved, transient = activation_parts(count, lay, s)
    return saved + transient


def activation_parts(count, lay: dict, s, fused_head: bool = True) -> tuple[int, int]:
    """(bytes autograd keeps at the end of the forward pass, the largest transient on top of them). Without
    the fused head (ORPO) the head's transients are the caller's (finetune.model.passes)."""
    from finetune.model.count import _ranks

    quant = s.quantization != "none"
    w = BYTES[s.dtype]
    autocast = w == 2                                    # Trainer bf16/fp16: autocast to the weights' dtype
    c = 2 if autocast else 4                             # what matmuls and attention run in
    # The residual stream is in the weights' dtype, a quantized base's too: its unquantized weights stay in the
    # compute dtype (finetune.model.loading.prepare_quantized_for_training); only ORPO's trainer upcasts them.
    stream = 4 if upcast_base(s) else c
    adapter = 2 if quant else 4
    h, L, T = lay["hidden"], lay["layers"], s.batch * s.max_length
    roles = lay["roles"]

    # Per layer, without adapters: norms keep a float32 copy (+ per-token statistics); attention keeps q, k, v
    # (repeated to all heads when a padding mask stops SDPA's GQA path), its output and a float32 logsumexp;
    # the MLP keeps its intermediates in the stream's dtype.
    attn_impl = "eager" if lay["eager"] and s.attn == "sdpa" else s.attn
    norms = sum(4 * n + 8 for n in lay["norms"])
    padded = s.batch > 1 and attn_impl != "flash_attention_2"
    qkv = 3 * lay["q"] if padded else lay["qkv"]
    attn = c * (qkv + lay["q"]) + 4 * lay["heads"]
    # 4-bit layers return their input's dtype (the stream's); 8-bit ones the compute dtype.
    mlp_bytes = c if s.quantization == "8bit" else stream
    mlp = (lay["act"] + 2 if lay["gated"] else lay["act"]) * lay["inter"] * mlp_bytes
    per_layer = T * (norms + attn + mlp + (2 * h if lay["dropout"] else 0))
    if attn_impl == "eager":   # the scores: softmax output in float32 and its cast for the value matmul
        per_layer += s.batch * lay["heads"] * s.max_length ** 2 * (4 + c)

    # Adapters: each keeps its input: its own copy when PEFT casts it to the adapter's dtype (and autocast
    # back to the compute dtype), else the input itself, once per shared input (q/k/v read one tensor, so do
    # gate/up), nothing for the attention output, which attention keeps already. Then the rank-r
    # intermediate; with dropout a mask and the dropped copy; with DoRA the base and adapter outputs.
    stream_dt = "float32" if stream == 4 else s.dtype
    # Under autocast, PEFT's bitsandbytes layers never cast the adapter's input, and the job's plain LoRA layers
    # skip the cast where autocast would undo it (finetune.model.adapter_inputs): both read the stream itself.
    if autocast and (quant or reads_input_as_is(s.lora_dropout, s.use_dora)):
        adapter_dt = s.dtype
    else:
        adapter_dt = "bfloat16" if quant else "float32"
    kept = c if autocast else adapter      # bytes of the tensor the adapter's first matmul keeps
    adapters = 0
    shared = set()
    for (short, kind, fin, fout, _), per_rank in _ranks(count._skel, count._match, count._lora)["buckets"].items():
        layers = sum(per_rank.values())
        r_sum = sum((rank or count._lora.r) * n for rank, n in per_rank.items())
        adapters += T * r_sum * c
        if kind == EMBEDDING:
            continue
        role = roles.get(short, "other")
        input_dt = stream_dt
        if (role == "attn_out" and autocast) or (role == "mlp_out" and s.quantization == "8bit"):
            input_dt = s.dtype if autocast else "float32"
        if s.lora_dropout > 0:
            adapters += layers * T * fin * (1 + kept)
        elif input_dt != adapter_dt:
            adapters += layers * T * fin * kept
        elif role != "attn_out":
            group = (role, fin) if role in ("qkv", "mlp_in") else (short, fin)
            if group not in shared:
                shared.add(group)
                adapters += layers * T * fin * BYTES[input_dt]
        if s.use_dora:
            adapters += layers * T * fout * 2 * c
    if autocast and adapter != c:   # autocast's cached 16-bit copies of the float32 adapter weights
        adapters += c * sum(n for n, b, _, _ in trainable_tensors(count, s.quantization, s.dtype) if b == 4)

    head = T * h * stream + 18 * T        # the LM head's input, and per-token log-prob, entropy, stats
    inputs = 3 * 8 * T                     # input_ids, labels, attention_mask (int64)
    mask = s.batch * s.max_length ** 2 if padded else 0   # the 4-D boolean attention mask, shared by all layers
    rope = 2 * s.max_length * (lay["q"] // max(1, lay["heads"])) * c
    if s.gradient_checkpointing:
        # Each layer's input, and the final norm's float32 copy (without checkpointing it stands in for the first
        # layer's input norm, which keeps nothing while the embeddings' output needs no gradient).
        saved = L * T * h * stream + T * (4 * h + 8) + head + inputs + mask + rope
        recompute = per_layer + adapters // max(1, L)
    else:
        saved = L * per_layer + adapters + head + inputs + mask + rope
        recompute = 0
    # Transients: the LM head's backward (float32 gradient of its input, a logits tile, the tile's input cast to
    # the compute dtype) or a layer's backward (gradients of its hidden states and MLP intermediates), plus,
    # quantized, one dequantized weight.
    # The tile buffer is VOCAB_TILE wide whatever the vocabulary (chunked_logprob allocates (tokens, chunk_size)
    # once and uses a slice of it): a model with a smaller vocabulary still pays the whole width.
    tile = min(T, TOKEN_TILE) * VOCAB_TILE * c
    head_back = T * h * 4 + tile + min(T, TOKEN_TILE) * h * c
    layer_back = T * (2 * h + 2 * lay["inter"]) * max(stream, c) + recompute
    dequant = lay["biggest"] * c if quant else 0
    return saved, max(head_back if fused_head else 0, layer_back) + dequant
