"""finetune.model.loading: a quantized base loaded for training keeps its unquantized weights, and with them the
residual stream, in the compute dtype (PEFT's prepare_model_for_kbit_training made them float32: 47.8 GB
against plain TRL's 30.6 GB for Llama-3-8B QLoRA on an H200), frozen, with what gradient checkpointing needs.
On the CPU with the demo model: bitsandbytes' 4-bit and 8-bit layers run there."""

import pytest

from finetune.errors import RunFileError
from finetune.runfile import ModelSection


def loaded(quantization: str, dtype: str, gradient_checkpointing: bool = False):
    from finetune.model.loading import load_model

    return load_model(ModelSection(name_or_path="demo", quantization=quantization, dtype=dtype),
                      gradient_checkpointing)


@pytest.mark.parametrize("quantization", ["4bit", "8bit"])
def test_a_quantized_base_keeps_norms_embeddings_and_the_stream_in_bfloat16(quantization):
    import torch

    base = loaded(quantization, "bfloat16", gradient_checkpointing=True)
    unquantized = {name: p.dtype for name, p in base.named_parameters() if p.dtype.is_floating_point}
    norms = [name for name in unquantized if "norm" in name]
    assert norms and {unquantized[n] for n in norms} == {torch.bfloat16}
    assert base.model.embed_tokens.weight.dtype == torch.bfloat16 and base.lm_head.weight.dtype == torch.bfloat16
    assert set(unquantized.values()) == {torch.bfloat16}, unquantized
    assert not any(p.requires_grad for p in base.parameters())            # the whole base frozen
    ids = torch.tensor([[5, 9, 14, 3, 7, 21]])
    base.train()
    with torch.autocast("cpu", dtype=torch.bfloat16):                     # the Trainer's bf16 mixed precision
        out = base(input_ids=ids, output_hidden_states=True)
    assert {h.dtype for h in out.hidden_states} == {torch.bfloat16}      # the residual stream, every layer
    # For reentrant checkpointing, the embeddings' output requires grad so the adapters' gradients flow back.
    assert out.hidden_states[0].requires_grad


def test_without_checkpointing_nothing_in_the_base_asks_for_gradients():
    import torch

    base = loaded("4bit", "bfloat16")
    base.train()   # in eval mode bitsandbytes' CPU kernel repacks the weights, in blocks this tiny model lacks
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = base(input_ids=torch.tensor([[5, 9, 14]]), output_hidden_states=True)
    assert not out.hidden_states[0].requires_grad


def test_adapters_over_a_float16_base_are_never_float16():
    """The float16 AMP gradient scaler refuses float16 gradients: over a quantized float16 base the stream is
    float16, and the adapters PEFT adds (then TRL's bfloat16 cast) must not be."""
    import torch
    from peft import get_peft_model

    from finetune.model.loading import lora_config
    from finetune.runfile import LoraSection

    base = loaded("4bit", "float16")
    assert base.model.norm.weight.dtype == torch.float16
    model = get_peft_model(base, lora_config(LoraSection(r=4, target_modules="all-linear")))
    trainable = {p.dtype for p in model.parameters() if p.requires_grad}
    assert trainable == {torch.float32}


def test_a_model_that_cannot_be_read_is_one_line(tmp_path):
    from finetune.model.loading import load_base

    with pytest.raises(RunFileError) as err:
        load_base(ModelSection(name_or_path=str(tmp_path / "nowhere")))
    assert "cannot load it" in str(err.value) and "\n" not in str(err.value)
