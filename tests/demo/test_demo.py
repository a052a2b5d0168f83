"""The shipped demo: a real tokenizer with a chat template, a tiny Llama whose text is not noise, and the
dataset build.py makes, all small enough to commit. The full build takes minutes; its parts are run small."""

import json
import random

import pytest

from finetune.demo import DATA_FILE, MODEL_DIR, build, resolve_data, resolve_model


@pytest.fixture(scope="module")
def tokenizer():
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(MODEL_DIR)


def test_demo_names_resolve_and_files_are_small():
    assert resolve_model("demo") == str(MODEL_DIR) and resolve_data("demo") == str(DATA_FILE)
    assert resolve_model("org/model") == "org/model"
    names = {p.name for p in MODEL_DIR.iterdir()}
    assert {"config.json", "model.safetensors", "tokenizer.json", "generation_config.json"} <= names
    total = sum(p.stat().st_size for folder in (MODEL_DIR, DATA_FILE.parent) for p in folder.iterdir())
    assert total < 5 * 2**20


def test_tokenizer_has_special_tokens_and_a_training_chat_template(tokenizer):
    assert len({tokenizer.bos_token, tokenizer.eos_token, tokenizer.pad_token}) == 3
    assert 800 <= len(tokenizer) <= 2048
    messages = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello there."}]
    text = tokenizer.apply_chat_template(messages, tokenize=False)
    assert text == "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\nHello there.<|im_end|>\n"
    out = tokenizer.apply_chat_template(messages, return_dict=True, return_assistant_tokens_mask=True)
    trained = [t for t, m in zip(out["input_ids"], out["assistant_masks"], strict=True) if m]
    assert tokenizer.decode(trained) == "Hello there.<|im_end|>"  # the reply and its stop token


def test_model_is_tiny_and_its_text_is_not_noise(tokenizer):
    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(MODEL_DIR)
    assert model.config.model_type == "llama" and 100_000 < model.num_parameters() < 1_000_000
    assert tokenizer.convert_tokens_to_ids("<|im_end|>") in model.generation_config.eos_token_id
    # Fresh text from the same generator: a random model scores about ln(vocab) = 7 nats per token.
    text = " ".join(build.corpus(random.Random(99), paragraphs=10))
    ids = tokenizer(text, return_tensors="pt")["input_ids"][:, :256]
    with torch.no_grad():
        assert model(input_ids=ids, labels=ids).loss.item() < 2.0


def test_shipped_dataset_is_what_build_makes():
    shipped = [json.loads(line) for line in DATA_FILE.read_text().splitlines()]
    assert shipped == build.dataset(random.Random(build.SEED + 1))
    assert 200 <= len(shipped) <= 1000 and all(r["messages"][-1]["role"] == "assistant" for r in shipped)


def test_shipped_tokenizer_is_what_build_makes():
    texts = build.corpus(random.Random(build.SEED))
    rows = build.dataset(random.Random(build.SEED + 1))
    questions = [m["content"] for r in rows for m in r["messages"] if m["role"] != "assistant"]
    made = json.loads(build.build_tokenizer(texts + questions).backend_tokenizer.to_str())["model"]
    shipped = json.loads((MODEL_DIR / "tokenizer.json").read_text())["model"]
    assert (made["vocab"], made["merges"]) == (shipped["vocab"], shipped["merges"])


def test_build_parts_run_small_and_are_deterministic():
    texts = build.corpus(random.Random(5), paragraphs=200)
    assert texts == build.corpus(random.Random(5), paragraphs=200)
    tok = build.build_tokenizer(texts)
    assert tok.chat_template == build.CHAT_TEMPLATE and tok.eos_token == build.EOS
    model = build.build_model(tok)
    first = build.pretrain(model, tok, texts, steps=1)
    assert build.pretrain(model, tok, texts, steps=8, lr=1e-2) < first
