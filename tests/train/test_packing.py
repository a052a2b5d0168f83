"""data.packing, as the job trains: with it on, the trainer the job builds (setup -> load_model ->
build_trainer) feeds rows that each hold several examples end to end, position ids restarting at each and no
padding, and every packed example gets the same logits as when it is alone, so packing changes the speed, not
what is learned; with it off, a step holds per_device_train_batch_size examples (laid flat where that pays:
finetune/train/batches.py), each row one padded example when training.padding_free is false. (transformers builds a block-diagonal mask
from the restarted position ids for the sdpa and eager attentions; flash attention reads the boundaries.)"""

import itertools

import pytest
import torch
import yaml

from finetune.model.loading import load_model
from finetune.train.job import setup
from finetune.train.methods import build_trainer

pytestmark = pytest.mark.slow   # each builds the job's trainer on the demo model

BATCH = 4


def first_batch(tmp_path, packing: bool, **training):
    run = {"model": {"name_or_path": "demo"}, "lora": {"r": 8, "lora_alpha": 16},
           "data": {"path": "demo", "max_length": 96, "packing": packing},
           "training": {"output_dir": str(tmp_path / "out"), "max_steps": 1, "per_device_train_batch_size": BATCH,
                        **training}}
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(run), encoding="utf-8")
    plan = setup(str(path), resume=False)
    trainer = build_trainer(plan, load_model(plan.run.model, False), [])
    return trainer, next(iter(trainer.get_train_dataloader()))


def starts(position_ids: torch.Tensor) -> list[int]:
    return (position_ids == 0).nonzero().flatten().tolist()


def test_packed_rows_hold_several_examples_each_seeing_only_itself(tmp_path):
    trainer, batch = first_batch(tmp_path, packing=True)
    assert "attention_mask" not in batch and batch["input_ids"].shape[0] == 1   # padding-free: one long row
    positions = batch["position_ids"][0]
    bounds = [*starts(positions), len(positions)]
    assert len(bounds) - 1 > BATCH   # more examples than rows: they were packed
    model = trainer.model.eval()
    with torch.no_grad():
        # use_cache=False, as TRL's SFTTrainer passes it: with a cache, transformers skips the packed mask.
        packed = model(input_ids=batch["input_ids"], position_ids=batch["position_ids"], use_cache=False).logits[0]
        for start, end in itertools.pairwise(bounds):
            alone = model(input_ids=batch["input_ids"][:, start:end], use_cache=False).logits[0]
            torch.testing.assert_close(packed[start:end], alone, atol=1e-5, rtol=1e-4)


def test_without_packing_a_step_holds_its_batch_of_examples(tmp_path):
    """Laid flat where that pays (train/batches.py), but per_device_train_batch_size examples, not more."""
    _, batch = first_batch(tmp_path, packing=False)
    if "position_ids" in batch:
        assert batch["input_ids"].shape[0] == 1 and len(starts(batch["position_ids"][0])) == BATCH
    else:
        assert batch["input_ids"].shape[0] == BATCH


def test_with_padding_free_off_each_row_is_one_padded_example(tmp_path):
    _, batch = first_batch(tmp_path, packing=False, padding_free=False)
    assert batch["input_ids"].shape[0] == BATCH and "position_ids" not in batch
    mask = batch["attention_mask"]
    assert mask.shape == batch["input_ids"].shape and (mask == 0).any()   # shorter examples padded
