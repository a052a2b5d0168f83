"""Packing is exact here: rows that TRL's padding-free collator packs (examples end to end, position ids
restarting at each) give every example the same logits as when it is alone, so `data.packing` changes the
speed, not what is learned. (transformers builds a block-diagonal mask from the restarted position ids for
the sdpa and eager attentions; flash attention reads the sequence boundaries.)"""

import pytest
import torch

from finetune.demo import MODEL_DIR


@pytest.fixture(scope="module")
def model_and_tokenizer():
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(MODEL_DIR, dtype=torch.float32).eval()
    return model, AutoTokenizer.from_pretrained(MODEL_DIR)


@pytest.mark.parametrize("attention", ["sdpa", "eager"])
def test_packed_examples_see_only_themselves(model_and_tokenizer, attention):
    from trl.trainer.sft_trainer import DataCollatorForLanguageModeling

    model, tokenizer = model_and_tokenizer
    model.set_attn_implementation(attention)
    texts = ["The fox lives in a den.", "Owls hunt at night near the old oak trees by the river.", "Hi."]
    examples = [{"input_ids": tokenizer(t)["input_ids"]} for t in texts]
    batch = DataCollatorForLanguageModeling(pad_token_id=tokenizer.pad_token_id, padding_free=True)(examples)
    assert batch["input_ids"].shape[0] == 1 and "attention_mask" not in batch
    with torch.no_grad():
        # use_cache=False, as SFTTrainer.compute_loss passes it: with a cache, transformers skips the packed-
        # sequence mask (and the packed examples would see each other).
        packed = model(input_ids=batch["input_ids"], position_ids=batch["position_ids"], use_cache=False).logits[0]
        start = 0
        for ex in examples:
            n = len(ex["input_ids"])
            alone = model(input_ids=torch.tensor([ex["input_ids"]]), use_cache=False).logits[0]
            torch.testing.assert_close(packed[start:start + n], alone, atol=1e-5, rtol=1e-4)
            start += n
