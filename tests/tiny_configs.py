"""config.json contents for the count's tests and benchmark. TINY: one per architecture, a few thousand
parameters each, small but keeping each architecture's own traits (biases, fused projections, head_dim, tied
embeddings). FULL: real public models' sizes, with their known parameter totals; on the meta device they
cost no memory."""

import json
from pathlib import Path

LAYERS = 3   # every tiny model has this many blocks
_TOKENS = {"pad_token_id": 0, "bos_token_id": 1, "eos_token_id": 2}
_DECODER = dict(vocab_size=96, hidden_size=32, intermediate_size=48, num_hidden_layers=LAYERS, num_attention_heads=4,
                num_key_value_heads=2, max_position_embeddings=64, **_TOKENS)

TINY = {
    "llama": dict(_DECODER, model_type="llama", architectures=["LlamaForCausalLM"]),
    "mistral": dict(_DECODER, model_type="mistral", architectures=["MistralForCausalLM"]),
    # Qwen2: q/k/v carry biases, o_proj does not.
    "qwen2": dict(_DECODER, model_type="qwen2", architectures=["Qwen2ForCausalLM"]),
    # Qwen3: head_dim decoupled from hidden_size / heads, q_norm and k_norm.
    "qwen3": dict(_DECODER, model_type="qwen3", head_dim=12, architectures=["Qwen3ForCausalLM"]),
    # Gemma 2: tied embeddings (a scaled Embedding subclass), head_dim, four norms per layer.
    "gemma2": dict(_DECODER, model_type="gemma2", head_dim=12, tie_word_embeddings=True,
                   architectures=["Gemma2ForCausalLM"]),
    # Phi-3: fused qkv_proj and gate_up_proj.
    "phi3": dict(_DECODER, model_type="phi3", architectures=["Phi3ForCausalLM"]),
    # GPT-2: transformers' Conv1D (weights stored in x out), biases everywhere, tied embeddings.
    "gpt2": dict(model_type="gpt2", vocab_size=96, n_embd=32, n_layer=LAYERS, n_head=4, n_positions=64,
                 bos_token_id=1, eos_token_id=2, architectures=["GPT2LMHeadModel"]),
    # GPT-NeoX: fused query_key_value, biases, untied.
    "gpt_neox": dict(_DECODER, model_type="gpt_neox", architectures=["GPTNeoXForCausalLM"]),
    # Falcon: FalconLinear (a Linear subclass) without biases, tied.
    "falcon": dict(model_type="falcon", vocab_size=96, hidden_size=32, num_hidden_layers=LAYERS, num_attention_heads=4,
                   bos_token_id=1, eos_token_id=2, architectures=["FalconForCausalLM"]),
    # OPT: decoder.layers, learned positions, fc1/fc2 with biases, tied.
    "opt": dict(model_type="opt", vocab_size=96, hidden_size=32, ffn_dim=48, num_hidden_layers=LAYERS,
                num_attention_heads=4, word_embed_proj_dim=32, max_position_embeddings=64, **_TOKENS,
                architectures=["OPTForCausalLM"]),
}


# Full-size configs of public models (config.json fields as published); totals are the models' known sizes.
FULL = {
    "Meta-Llama-3-8B": (dict(model_type="llama", hidden_size=4096, intermediate_size=14336, num_hidden_layers=32,
                             num_attention_heads=32, num_key_value_heads=8, vocab_size=128256,
                             max_position_embeddings=8192, rope_theta=500000.0, bos_token_id=128000,
                             eos_token_id=128001), 8_030_261_248),
    "Meta-Llama-3-70B": (dict(model_type="llama", hidden_size=8192, intermediate_size=28672, num_hidden_layers=80,
                              num_attention_heads=64, num_key_value_heads=8, vocab_size=128256,
                              max_position_embeddings=8192, rope_theta=500000.0, bos_token_id=128000,
                              eos_token_id=128001), 70_553_706_496),
    "Mistral-7B-v0.1": (dict(model_type="mistral", hidden_size=4096, intermediate_size=14336, num_hidden_layers=32,
                             num_attention_heads=32, num_key_value_heads=8, vocab_size=32000,
                             max_position_embeddings=32768, sliding_window=4096, bos_token_id=1, eos_token_id=2),
                        7_241_732_096),
    "Qwen2.5-0.5B": (dict(model_type="qwen2", hidden_size=896, intermediate_size=4864, num_hidden_layers=24,
                          num_attention_heads=14, num_key_value_heads=2, vocab_size=151936,
                          max_position_embeddings=32768, tie_word_embeddings=True, bos_token_id=151643,
                          eos_token_id=151643), 494_032_768),
    "gpt2": (dict(model_type="gpt2", n_embd=768, n_layer=12, n_head=12, vocab_size=50257, n_positions=1024,
                  bos_token_id=50256, eos_token_id=50256), 124_439_808),
    "Phi-3-mini-4k": (dict(model_type="phi3", hidden_size=3072, intermediate_size=8192, num_hidden_layers=32,
                           num_attention_heads=32, num_key_value_heads=32, vocab_size=32064,
                           max_position_embeddings=4096, pad_token_id=32000, bos_token_id=1, eos_token_id=32000),
                      3_821_079_552),
    "gemma-2-2b": (dict(model_type="gemma2", hidden_size=2304, intermediate_size=9216, num_hidden_layers=26,
                        num_attention_heads=8, num_key_value_heads=4, head_dim=256, vocab_size=256000,
                        tie_word_embeddings=True, pad_token_id=0, bos_token_id=2, eos_token_id=1), 2_614_341_888),
}


def write_config(folder: Path, config: dict) -> Path:
    """A model folder holding only config.json: all a count reads."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps(config), encoding="utf-8")
    return folder
