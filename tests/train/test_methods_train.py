"""Each method trains the demo on the CPU with the same LoRA, run folder and adapter as SFT (slow: they train).
The demo's method data (finetune/demo/method_data.py) teaches one trait the base model lacks: answers that end
with an exclamation mark."""

import json

import pytest
import torch
import yaml

from finetune.demo import DEMO_DATA, MODEL_DIR
from finetune.train.job import main
from finetune.train.runfolder import RunFolder

pytestmark = pytest.mark.slow

FAST = {"per_device_train_batch_size": 8, "gradient_accumulation_steps": 1, "learning_rate": 5e-3,
        "logging_steps": 1, "save_steps": 100}


def train(tmp_path, method: dict, steps: int, **training) -> RunFolder:
    out = tmp_path / "out"
    run = {"model": {"name_or_path": "demo"}, "method": method, "lora": {"r": 8, "lora_alpha": 16},
           "data": {"path": "demo", "max_length": 64},
           "training": {"output_dir": str(out), "max_steps": steps, **FAST, **training}}
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(run), encoding="utf-8")
    assert main(str(path)) == 0
    folder = RunFolder(out)
    assert folder.read_status()["state"] == "completed"
    assert (folder.adapter_dir / "adapter_model.safetensors").is_file()
    return folder


def series(folder: RunFolder, name: str) -> list[float]:
    return [r[name] for r in folder.read_metrics() if name in r]


def preference_gap(model, tokenizer, rows) -> list[float]:
    """Per pair: log p(chosen) - log p(rejected) of the answer tokens."""
    def logp(prompt, answer):
        text = tokenizer.apply_chat_template(prompt + answer, tokenize=False)
        head = tokenizer.apply_chat_template(prompt, tokenize=False, add_generation_prompt=True)
        ids = tokenizer(text, return_tensors="pt", add_special_tokens=False).input_ids
        start = len(tokenizer(head, add_special_tokens=False).input_ids)
        with torch.no_grad():
            logits = model(ids).logits.log_softmax(-1)
        return logits[0, start - 1:-1].gather(-1, ids[0, start:, None]).sum().item()

    return [logp(r["prompt"], r["chosen"]) - logp(r["prompt"], r["rejected"]) for r in rows]


def test_dpo_raises_the_margin_and_the_adapter_prefers_what_the_base_does_not(tmp_path, capsys):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder = train(tmp_path, {"name": "dpo"}, steps=20)
    margins = series(folder, "rewards/margins")
    assert len(margins) == 20 and sum(margins[-3:]) / 3 > sum(margins[:3]) / 3 + 1.0, margins
    assert series(folder, "rewards/accuracies")[-1] >= 0.75
    out = capsys.readouterr().out
    assert "method: dpo (DPOTrainer)" in out and "margin " in out and "accuracy " in out
    rows = [json.loads(line) for line in DEMO_DATA["dpo"].read_text().splitlines()[:16]]
    tokenizer = AutoTokenizer.from_pretrained(MODEL_DIR)
    base = AutoModelForCausalLM.from_pretrained(MODEL_DIR).eval()
    before = preference_gap(base, tokenizer, rows)
    after = preference_gap(PeftModel.from_pretrained(base, str(folder.adapter_dir)).eval(), tokenizer, rows)
    assert sum(g > 0 for g in before) == 0 and sum(g > 0 for g in after) == len(rows), (before, after)


def test_dpo_reference_is_the_base_with_the_adapter_off(tmp_path):
    from finetune.model.loading import load_model
    from finetune.train.job import setup
    from finetune.train.methods import build_trainer

    run = {"method": {"name": "dpo"}, "data": {"max_length": 64},
           "training": {"output_dir": str(tmp_path / "out"), "max_steps": 1}}
    (tmp_path / "run.yaml").write_text(yaml.safe_dump(run))
    plan = setup(str(tmp_path / "run.yaml"), resume=False)
    trainer = build_trainer(plan, load_model(plan.run.model, False), [])
    assert trainer.ref_model is None and hasattr(trainer.model, "disable_adapter")   # no second model


@pytest.mark.parametrize("method, metrics", [("kto", ("rewards/margins", "kl", "logps/chosen")),
                                             ("orpo", ("rewards/margins", "rewards/accuracies", "log_odds_ratio"))])
def test_kto_and_orpo_complete_with_their_metrics(tmp_path, method, metrics):
    folder = train(tmp_path, {"name": method}, steps=6)
    records = [r for r in folder.read_metrics() if "loss" in r]
    assert len(records) == 6
    for name in metrics:
        assert any(name in r for r in records), (name, records[-1])


def test_grpo_with_a_contains_reward_raises_the_mean_reward(tmp_path):
    method = {"name": "grpo", "num_generations": 4, "max_completion_length": 16,
              "rewards": [{"type": "contains", "text": "helper"}]}
    folder = train(tmp_path, method, steps=12)
    rewards = series(folder, "rewards/contains/mean")
    assert rewards == series(folder, "reward") and len(rewards) == 12
    assert sum(rewards[-3:]) / 3 > sum(rewards[:3]) / 3 + 0.2, rewards
    assert series(folder, "completions/mean_length")
