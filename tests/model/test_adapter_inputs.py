"""Adapters that read their 16-bit input as it is under autocast (finetune.model.adapter_inputs): the same bits as
PEFT's float32 round trip, fewer casts, fewer kept tensors, and PEFT's path wherever the input is not fed
straight to the matmul."""

import pytest
import torch
from memory_probe import saved_bytes
from peft import LoraConfig, get_peft_model
from tiny_configs import TINY
from transformers import AutoConfig, AutoModelForCausalLM

from finetune.model.adapter_inputs import read_inputs_as_is, reads_input_as_is, remove_all

ALL7 = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def peft_model(as_is: bool, **lora):
    torch.manual_seed(0)
    base = AutoModelForCausalLM.from_config(AutoConfig.for_model(**TINY["llama"])).to(torch.bfloat16)
    # init_lora_weights=False: B is not zero, so the adapters' gradients reach their inputs
    model = get_peft_model(base, LoraConfig(r=8, target_modules=ALL7, init_lora_weights=False, **lora))
    layers = len(read_inputs_as_is(model)) if as_is else 0
    return model, layers


def step(model, ids, autocast=True):
    """One forward and backward as the Trainer runs it under bf16; (loss, {name: grad}, casts, kept bytes)."""
    from torch.utils._python_dispatch import TorchDispatchMode

    class Casts(TorchDispatchMode):
        n = 0

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            if func is torch.ops.aten._to_copy.default and args[0].dim() == 3:   # activations, not weights
                Casts.n += 1
            return func(*args, **(kwargs or {}))

    context = torch.autocast("cpu", dtype=torch.bfloat16) if autocast else torch.autocast("cpu", enabled=False)
    with Casts(), saved_bytes(model) as kept, context:
        loss = model(input_ids=ids, labels=ids).loss
    with Casts():
        loss.backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}
    return loss.detach(), grads, Casts.n, sum(kept.values())


IDS = torch.randint(3, 90, (2, 24), generator=torch.Generator().manual_seed(0))


def test_same_bits_fewer_casts_fewer_kept_tensors():
    peft, _ = peft_model(as_is=False)
    ours, layers = peft_model(as_is=True)
    assert layers == 7 * TINY["llama"]["num_hidden_layers"]
    loss_p, grads_p, casts_p, kept_p = step(peft, IDS)
    loss_o, grads_o, casts_o, kept_o = step(ours, IDS)
    assert torch.equal(loss_p, loss_o)
    assert grads_p.keys() == grads_o.keys()
    assert all(torch.equal(grads_p[n], grads_o[n]) for n in grads_p)
    # Each adapter's float32 copy and autocast's cast back, forward and backward: 4 per layer, but no backward
    # for the first layer's q/k/v, whose input (the frozen embeddings, normed) needs no gradient.
    assert casts_p - casts_o == 4 * layers - 2 * 3
    # q/k/v keep one input between them, gate/up one, o_proj none, down_proj its input rather than a copy.
    h, tokens = TINY["llama"]["hidden_size"], IDS.numel()
    per_layer = (2 * h + h + h) * 2 * tokens   # bf16: the two extra q/k/v copies, one of gate/up, o_proj's
    assert kept_p - kept_o == per_layer * TINY["llama"]["num_hidden_layers"], (kept_p, kept_o)


def test_outside_autocast_the_input_is_still_cast():
    """Generation and float32 steps run without autocast: a bfloat16 input must still meet float32 weights as
    float32, exactly as in PEFT."""
    peft, _ = peft_model(as_is=False)
    ours, _ = peft_model(as_is=True)
    with torch.no_grad():
        assert torch.equal(peft(input_ids=IDS).logits, ours(input_ids=IDS).logits)
    loss_p, grads_p, *_ = step(peft, IDS, autocast=False)
    loss_o, grads_o, *_ = step(ours, IDS, autocast=False)
    assert torch.equal(loss_p, loss_o) and all(torch.equal(grads_p[n], grads_o[n]) for n in grads_p)


@pytest.mark.parametrize("lora", [{"lora_dropout": 0.05}, {"use_dora": True}])
def test_dropout_and_dora_keep_peft_path(lora):
    _, layers = peft_model(as_is=True, **lora)
    assert layers == 0
    assert not reads_input_as_is(lora.get("lora_dropout", 0.0), lora.get("use_dora", False))
    assert reads_input_as_is(0.0, False)


def test_removed_hooks_give_peft_path_back():
    peft, _ = peft_model(as_is=False)
    ours, _ = peft_model(as_is=False)
    handles = read_inputs_as_is(ours)
    step(ours, IDS)           # the hooks have run: the layers' flags are off
    remove_all(handles)
    ours.zero_grad()
    *_, casts_p, kept_p = step(peft, IDS)
    *_, casts_o, kept_o = step(ours, IDS)
    assert (casts_p, kept_p) == (casts_o, kept_o)
