"""Under autocast, a LoRA adapter reads its 16-bit input as it is, not through a float32 copy.

Over a 16-bit base PEFT keeps the adapter weights in float32 (get_peft_model's autocast_adapter_dtype) and casts
each adapter's input to them; under the Trainer's autocast the adapter's first matmul casts it straight back to
16 bits. Every bfloat16 or float16 value is a float32 value, so the round trip changes nothing: skipping it gives
the same loss and gradients to the bit (tests/model/test_adapter_inputs.py). What it saves, per adapter and step:
two full-size casts in the forward pass and two in the backward, and the 16-bit copy autograd keeps for the
adapter's weight gradient, so q/k/v keep one input between them, as do gate/up, and o_proj none (attention keeps
it already). PEFT's own 4-bit and 8-bit layers skip the cast under autocast in the same way.

Only where the input goes straight into the first matmul: with dropout the dropped copy would be drawn in 16 bits
(the same distribution, not the same bits), and variants such as DoRA read the input themselves, so those keep
PEFT's path. finetune.model.activations counts the kept inputs by the same rule (`reads_input_as_is`).
"""

from __future__ import annotations


def reads_input_as_is(lora_dropout: float, use_dora: bool) -> bool:
    """Whether a 16-bit base's adapters read their input as it is under autocast (no float32 copy)."""
    return lora_dropout == 0 and not use_dora


def _as_is_under_autocast(layer, args) -> None:
    # Decided at every call, so a forward outside autocast (generation, a float32 step) keeps PEFT's cast,
    # without which a float32 weight would meet a 16-bit input.
    import torch

    device = args[0].device.type
    as_is = torch.is_autocast_enabled(device) and torch.get_autocast_dtype(device) == args[0].dtype
    layer.cast_input_dtype_enabled = not as_is


def read_inputs_as_is(model) -> list:
    """Let each plain LoRA Linear of a PEFT model skip its input cast whenever autocast would undo it; a handle
    per layer that does (`remove_all` undoes them). Layers with dropout or a variant (DoRA), and PEFT's quantized
    layers, are left alone."""
    import torch
    from peft.tuners.lora import Linear as LoraLinear

    handles = []
    for module in model.modules():
        if type(module) is not LoraLinear or module.lora_variant:
            continue
        if all(isinstance(drop, torch.nn.Identity) for drop in module.lora_dropout.values()):
            handles.append((module, module.register_forward_pre_hook(_as_is_under_autocast)))
    return handles


def remove_all(handles: list) -> None:
    """PEFT's path again for the layers read_inputs_as_is changed."""
    for module, handle in handles:
        handle.remove()
        module.cast_input_dtype_enabled = True
