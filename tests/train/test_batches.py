"""Padding-free batches (finetune/train/batches.py): exact for every model type it lays flat, chosen by cost."""

from types import SimpleNamespace

import pytest
import torch
from tiny_configs import FULL

from finetune.train import batches
from finetune.train.batches import EXACT_TYPES, ChosenPadding, Shape, flat_is_cheaper, model_shape, pair_weight

SMALL = dict(vocab_size=96, hidden_size=32, intermediate_size=48, num_hidden_layers=2, num_attention_heads=4,
             num_key_value_heads=2, max_position_embeddings=64, pad_token_id=0, bos_token_id=1, eos_token_id=2,
             head_dim=8)
LENGTHS = (7, 12, 3)


def flat_vs_separate(model_type: str) -> float:
    """The largest logit difference between one flat batch of three examples and each example alone."""
    from transformers import AutoConfig, AutoModelForCausalLM
    from trl.trainer.sft_trainer import DataCollatorForLanguageModeling

    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(AutoConfig.for_model(model_type, **SMALL)).eval()
    seqs = [torch.randint(3, 90, (n,)).tolist() for n in LENGTHS]
    flat = DataCollatorForLanguageModeling(pad_token_id=0, padding_free=True)([{"input_ids": s} for s in seqs])
    with torch.no_grad():   # use_cache=False as in training: a cache turns transformers' packed-sequence mask off
        together = model(**flat, use_cache=False).logits[0]
        alone = torch.cat([model(input_ids=torch.tensor([s]), use_cache=False).logits[0] for s in seqs])
    return (together - alone).abs().max().item()


@pytest.mark.parametrize("model_type", sorted(EXACT_TYPES))
def test_every_type_laid_flat_gives_the_logits_of_separate_forwards(model_type):
    assert flat_vs_separate(model_type) < 1e-5


@pytest.mark.parametrize("model_type", ["opt", "bloom"])
def test_types_that_read_positions_off_the_padding_stay_padded(model_type):
    """OPT and BLOOM leak across examples in a flat row (if transformers fixes that, they can join EXACT_TYPES)."""
    assert model_type not in EXACT_TYPES
    assert flat_vs_separate(model_type) > 1e-3


def test_pair_weight_follows_the_model_size():
    llama8b = SimpleNamespace(**FULL["Meta-Llama-3-8B"][0])
    assert 1 / pair_weight(llama8b) == pytest.approx(28_600, rel=0.01)
    demo = SimpleNamespace(hidden_size=64, intermediate_size=172, num_hidden_layers=4, num_attention_heads=4,
                           num_key_value_heads=2, head_dim=16, vocab_size=1043)
    assert 1 / pair_weight(demo) == pytest.approx(484, rel=0.01)


LLAMA8B_SDPA = Shape(exact=True, varlen=False, pair_weight=1 / 28_600)
CPU_BENCH = Shape(exact=True, varlen=False, pair_weight=1 / 1545)
QWEN05B_SDPA = Shape(exact=True, varlen=False, pair_weight=1 / 11_485)


@pytest.mark.parametrize(("lengths", "shape", "flat"), [
    ([30, 25, 60, 12, 40, 18, 22, 35], Shape(True, False, 1 / 484), True),   # the demo's ragged batches
    ([1024] * 4, LLAMA8B_SDPA, False),                # nothing to save: the mask would only add attention
    ([1024, 200, 300, 100], LLAMA8B_SDPA, True),      # 1,624 real tokens instead of 4,096
    ([1024, 1000, 1010, 990], LLAMA8B_SDPA, False),   # 1% of padding does not pay for a 4,024-token mask
    ([1024, 1000, 1010, 990], Shape(True, True, 1 / 28_600), True),   # varlen attention: any padding saved
    ([3000, 100, 100, 100, 3000, 2000, 100], LLAMA8B_SDPA, False),     # over FLAT_MASK_LIMIT under a mask
    ([50], LLAMA8B_SDPA, False),
    ([192, 32, 100, 60], QWEN05B_SDPA, True),       # half the tokens: the linear layers dominate at this width
    ([192, 180, 170, 185], QWEN05B_SDPA, False),    # 5% fewer tokens, outweighed by the flat row's pairs
    # Measured on the CPU (benchmarks/bench_batches.py's model, width 256): flat took 0.23x / 0.58x / 1.71x /
    # 2.09x the padded step's time
    ([512] + [40] * 7, CPU_BENCH, True), ([512, 256, 128, 64, 32, 16, 300, 200], CPU_BENCH, True),
    ([500, 450, 480, 100, 300, 200, 250, 512], CPU_BENCH, False), ([256] * 7 + [40], CPU_BENCH, False),
])
def test_a_batch_lies_flat_where_that_costs_less(lengths, shape, flat):
    assert flat_is_cheaper(lengths, shape) is flat


def test_over_the_mask_limit_only_varlen_attention_lies_flat():
    lengths = [batches.FLAT_MASK_LIMIT - 5, 10]   # one row of FLAT_MASK_LIMIT + 5 tokens
    assert not flat_is_cheaper(lengths, Shape(True, False, 1e-9))
    assert flat_is_cheaper(lengths, Shape(True, True, 1e-9))


def test_model_shape_reads_attention_and_type_from_the_config():
    config = SimpleNamespace(model_type="llama", _attn_implementation="flash_attention_2", **SMALL)
    assert model_shape(config) == Shape(exact=True, varlen=True, pair_weight=pair_weight(config))
    config = SimpleNamespace(model_type="opt", _attn_implementation="sdpa", **SMALL)
    assert not model_shape(config).exact and not model_shape(config).varlen


@pytest.mark.parametrize(("always", "flat_count"), [(None, 1), (True, 2), (False, 0)])
def test_chosen_padding_lays_flat_what_it_chose(always, flat_count):
    from trl.trainer.sft_trainer import DataCollatorForLanguageModeling

    chosen = ChosenPadding(DataCollatorForLanguageModeling(pad_token_id=0), Shape(True, False, 1 / 484), always)
    ragged = [{"input_ids": list(range(3, 3 + n))} for n in (40, 5, 8, 6)]
    even = [{"input_ids": list(range(3, 13))} for _ in range(4)]
    batches = [chosen(b) for b in (ragged, even)]
    shapes = [tuple(b["input_ids"].shape) for b in batches]
    assert sum("attention_mask" not in b for b in batches) == flat_count
    assert shapes[0] == ((1, 59) if always in (None, True) else (4, 40))
    assert shapes[1] == ((1, 40) if always else (4, 10))


def fake_trainer(model_type="llama", packing=False, parallelism=None, neftune=None, aux_loss=False):
    from trl.trainer.sft_trainer import DataCollatorForLanguageModeling

    config = SimpleNamespace(model_type=model_type, _attn_implementation="sdpa", **SMALL)
    return SimpleNamespace(data_collator=DataCollatorForLanguageModeling(pad_token_id=0),
                           args=SimpleNamespace(packing=packing, neftune_noise_alpha=neftune),
                           model=SimpleNamespace(config=config), aux_loss_enabled=aux_loss,
                           accelerator=SimpleNamespace(parallelism_config=parallelism))


@pytest.mark.parametrize(("trainer", "always", "note", "replaced"), [
    (fake_trainer(), None, "batches: padding-free where a batch is ragged enough to gain (train/batches.py)", True),
    (fake_trainer(), False, "batches: padded (training.padding_free: False)", True),
    (fake_trainer("opt"), None, "batches: padded (model type opt is not one whose padding-free batches were "
                                "checked exact)", False),
    (fake_trainer(packing=True), None, None, False),   # packing lays examples flat already
    (fake_trainer(parallelism=SimpleNamespace(cp_enabled=True, sp_enabled=False)), True,
     "batches: padded (context or sequence parallelism keeps no per-example mask)", False),
    (fake_trainer(neftune=5.0), None, "batches: padded (NEFTune scales its noise by the row's length)", False),
    (fake_trainer(aux_loss=True), None, "batches: padded (the router's auxiliary loss would no longer count pad "
                                        "tokens)", False),
])
def test_choose_padding_says_what_the_job_does(trainer, always, note, replaced):
    from finetune.train.batches import choose_padding

    before = trainer.data_collator
    assert choose_padding(trainer, always) == note
    assert isinstance(trainer.data_collator, ChosenPadding) is replaced
    assert replaced or trainer.data_collator is before
