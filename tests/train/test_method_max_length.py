"""GRPO and data.max_length (finetune/train/methods.py): TRL 1.16's GRPOConfig has no prompt limit and does not
truncate prompts, so a prompt longer than data.max_length is refused in one line before any answer is generated,
counted as GRPOTrainer tokenizes it (chat template with the answer's turn opened, or plain text); a prompt of
exactly data.max_length tokens is taken."""

import pytest
import yaml

from finetune.demo import MODEL_DIR
from finetune.train.job import main, report_data, setup
from finetune.train.methods import long_prompts, prompt_lengths
from finetune.train.runfolder import RunFolder

GRPO = {"name": "grpo", "num_generations": 2, "max_completion_length": 8,
        "rewards": [{"type": "contains", "text": "helper"}]}
PROMPTS = ["Where does the fox live?", "What color is a whale? Tell me about the sea where it swims."]


@pytest.fixture(scope="module")
def tok():
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(MODEL_DIR)


def write(tmp_path, data: dict, method: dict = GRPO) -> str:
    run = {"model": {"name_or_path": "demo"}, "method": method, "data": data,
           "training": {"output_dir": str(tmp_path / "out"), "max_steps": 1, "per_device_train_batch_size": 2}}
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(run), encoding="utf-8")
    return str(path)


@pytest.mark.parametrize("chat", [True, False])
def test_a_prompt_of_max_length_tokens_is_taken_and_one_token_more_is_refused(tmp_path, write_jsonl, tok, chat):
    prompts = [[{"role": "user", "content": p}] for p in PROMPTS] if chat else PROMPTS
    data = {"path": str(write_jsonl([{"prompt": p} for p in prompts])), "format": "prompt_only"}
    lengths = prompt_lengths(prompts, tok)
    longest = max(lengths)
    # What GRPOTrainer generates from: the template, the user's turn and the assistant's turn opened.
    made = tok.apply_chat_template(prompts[1], add_generation_prompt=True, tokenize=True, return_dict=True) \
        if chat else tok(prompts[1])
    assert longest == lengths[1] == len(made["input_ids"]) > lengths[0]
    plan = setup(write(tmp_path, {**data, "max_length": longest}), resume=False)
    assert long_prompts(plan) == [] and "max_length" not in vars(plan.args)   # GRPOConfig takes none
    plan.run.data.max_length = longest - 1
    assert long_prompts(plan) == [
        f"data.max_length: 1 of 2 prompts are longer than {longest - 1} tokens (the longest has {longest}), and "
        f"GRPO generates from whole prompts (TRL does not truncate them): raise data.max_length to {longest} or "
        "shorten those prompts"]


@pytest.mark.slow   # loads the model
def test_a_grpo_job_with_prompts_past_max_length_stops_before_generating_with_one_line(tmp_path, capsys):
    assert main(write(tmp_path, {"path": "demo", "max_length": 8})) != 0
    captured = capsys.readouterr()
    out = captured.out + captured.err
    folder = RunFolder(tmp_path / "out")
    status = folder.read_status()
    # Refused by the job's setup, before the model loads: the refusal is on stderr, no run was started.
    assert status.get("state") in (None, "failed"), status
    expected = "data.max_length: 200 of 200 prompts are longer than 8 tokens (the longest has 15)"
    assert expected in out + (status.get("error") or ""), out
    assert "\n" not in (status.get("error") or "") and "step 1/1" not in out
    assert not folder.adapter_dir.exists()


def test_other_methods_still_hand_max_length_to_trl(tmp_path):
    plan = setup(write(tmp_path, {"path": "demo", "max_length": 8}, {"name": "dpo"}), resume=False)
    assert plan.args.max_length == 8


def test_grpo_rows_are_not_counted_as_truncated_as_other_methods_rows_are(tmp_path, write_jsonl, capsys):
    """GRPO truncates nothing (a long prompt is refused above); its completion column feeds the rewards only,
    so a short prompt with a long completion is no truncated example, while SFT reads the same row whole."""
    rows = [{"prompt": "Where does the fox live?", "completion": "In the forest, " * 20}] * 2
    data = {"path": str(write_jsonl(rows)), "format": "prompt_completion", "max_length": 32}
    report_data(setup(write(tmp_path, data), resume=False))
    assert "truncated" not in capsys.readouterr().out
    report_data(setup(write(tmp_path, data, {"name": "sft"}), resume=False))
    assert "2 of 2 examples are longer than data.max_length=32 tokens and will be truncated" in capsys.readouterr().out
