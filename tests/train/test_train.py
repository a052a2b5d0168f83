"""The training job, for real: the demo model and a tiny base model trained a few steps on CPU for each data
format, unquantized and in 4-bit and 8-bit; the adapter loads with plain PEFT and generates; SIGTERM ends
`cancelled` with the adapter kept and --resume continues the curve; bad input exits 2 before anything is
written. Most runs call main() in-process (the libraries import once); the signal test is a real process."""

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from finetune.demo import DATA_FILE, MODEL_DIR
from finetune.train.job import main
from finetune.train.runfolder import RunFolder

pytestmark = pytest.mark.slow   # each runs the training job

FAST = {"max_steps": 4, "per_device_train_batch_size": 4, "gradient_accumulation_steps": 1, "learning_rate": 3e-3,
        "logging_steps": 1, "save_steps": 100}


def write_run(tmp_path, name="run", model=None, lora=None, data=None, training=None) -> tuple[str, RunFolder]:
    out = tmp_path / f"{name}-out"
    run = {"model": {"name_or_path": "demo", **(model or {})},
           "lora": {"r": 8, "lora_alpha": 16, **(lora or {})},
           "data": {"path": "demo", "max_length": 96, **(data or {})},
           "training": {"output_dir": str(out), **FAST, **(training or {})}}
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(run), encoding="utf-8")
    return str(path), RunFolder(out)


def demo_rows(n=64):
    rows = [json.loads(line) for line in DATA_FILE.read_text().splitlines()[:n]]
    return [(r["messages"][-2]["content"], r["messages"][-1]["content"]) for r in rows]


def as_format(fmt, rows):
    if fmt == "prompt_completion":
        return [{"prompt": q, "completion": " " + a} for q, a in rows]
    if fmt == "alpaca":
        return [{"instruction": q, "input": "", "output": a} for q, a in rows]
    return [{"text": f"Question: {q} Answer: {a}"} for q, a in rows]


def losses(folder):
    return [r["loss"] for r in folder.read_metrics() if "loss" in r]


def falls(values, k=3):
    return sum(values[-k:]) / k < 0.8 * sum(values[:k]) / k


def load_adapter(folder, base=MODEL_DIR):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    return PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(base), str(folder.adapter_dir))


def test_demo_run_learns_and_leaves_a_complete_run_folder(tmp_path, capsys):
    path, folder = write_run(tmp_path, training={"max_steps": 30, "per_device_train_batch_size": 8})
    assert main(path) == 0
    out = capsys.readouterr().out
    status = folder.read_status()
    assert (status["state"], status["step"], status["max_steps"], status["error"]) == ("completed", 30, 30, None)
    records = folder.read_metrics()
    assert [r["step"] for r in records] == list(range(1, 31))
    assert set(records[0]) >= {"step", "loss", "learning_rate", "grad_norm", "epoch", "tokens_per_second"}
    assert falls(losses(folder)), losses(folder)
    assert yaml.safe_load(folder.run_yaml.read_text())["training"]["max_steps"] == 30
    assert "loss: on the assistant's replies only" in out and "WARNING" not in out
    peft_line = next(line for line in out.splitlines() if line.endswith("%)") and "(PEFT" in line)
    assert peft_line.split(" (")[0].replace("(finetune count)", "") in out.replace(peft_line, "")

    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(folder.adapter_dir)
    model = load_adapter(folder)
    prompt = tokenizer.apply_chat_template([{"role": "user", "content": "Where does the fox live?"}],
                                           add_generation_prompt=True, return_tensors="pt", return_dict=True)
    new = model.generate(**prompt, max_new_tokens=8, do_sample=False)[0][prompt["input_ids"].shape[1]:]
    assert len(new) > 0 and tokenizer.decode(new, skip_special_tokens=True).strip()


@pytest.mark.parametrize("fmt", ["prompt_completion", "alpaca", "text"])
def test_each_data_format_trains(tmp_path, write_jsonl, fmt):
    data = write_jsonl(as_format(fmt, demo_rows()))
    path, folder = write_run(tmp_path, data={"path": str(data)},
                             training={"max_steps": 10, "per_device_train_batch_size": 8})
    assert main(path) == 0
    assert folder.read_status()["state"] == "completed" and falls(losses(folder)), losses(folder)
    assert (folder.adapter_dir / "adapter_model.safetensors").is_file()


def test_a_base_model_without_chat_template_trains_on_text(tmp_path, write_jsonl, plain_model_dir):
    data = write_jsonl(as_format("text", demo_rows(16)))
    path, folder = write_run(tmp_path, model={"name_or_path": str(plain_model_dir)}, data={"path": str(data)},
                             lora={"target_modules": ["q_proj", "v_proj"]})
    assert main(path) == 0 and len(losses(folder)) == 4
    load_adapter(folder, base=plain_model_dir)


def test_chat_without_generation_markers_trains_on_the_last_reply(tmp_path, capsys, plain_model_dir):
    model = tmp_path / "chat-model"
    shutil.copytree(plain_model_dir, model)
    (model / "chat_template.jinja").write_text(
        "{% for m in messages %}{{ m['role'] + ': ' + m['content'] + '\\n' }}{% endfor %}"
        "{% if add_generation_prompt %}assistant: {% endif %}")
    path, folder = write_run(tmp_path, model={"name_or_path": str(model)}, data={"max_length": 16})
    assert main(path) == 0 and len(losses(folder)) == 4
    out = capsys.readouterr().out
    assert "loss: on each conversation's last assistant reply" in out
    assert "examples are longer than data.max_length=16 tokens and will be truncated" in out


@pytest.mark.parametrize("checkpointing", [False, True])
def test_bf16_adapters_read_their_input_as_is_with_the_same_curve_and_answers(tmp_path, capsys, monkeypatch,
                                                                              checkpointing):
    """Over a bfloat16 base under bf16 (autocast, on the CPU too) the job's adapters skip PEFT's float32 copy of
    their input (finetune/model/adapter_inputs.py): the same losses to the bit as PEFT's own path, and the answers
    generated at each evaluation, outside autocast, where the input must still be cast, are the same. With
    gradient checkpointing too, whose recomputation in the backward pass runs under the forward's autocast."""
    import finetune.model.adapter_inputs as adapter_inputs

    def run(name):
        path, folder = write_run(tmp_path, name=name, model={"dtype": "bfloat16"}, data={"eval_size": 0.1},
                                 training={"bf16": True, "max_steps": 6, "eval_steps": 3,
                                           "gradient_checkpointing": checkpointing})
        assert main(path) == 0
        answers = [(r["step"], r["answer"]) for r in map(json.loads, folder.samples_file.read_text().splitlines())]
        return capsys.readouterr().out, losses(folder), answers

    out, ours, our_answers = run("as-is")
    assert "adapters: 28 skip PEFT's float32 copy of a 16-bit input under autocast" in out and "cpu, bf16)" in out
    # six steps mid-epoch, with evaluation: the batches trained, not those the data loader collated ahead
    assert re.search(r"^batches: \d of 6 padding-free$", out, re.M), out
    monkeypatch.setattr(adapter_inputs, "read_inputs_as_is", lambda model: [])
    out, peft, peft_answers = run("peft")
    assert "adapters:" not in out
    assert len(ours) == 6 and ours == peft
    assert our_answers and our_answers == peft_answers


@pytest.mark.parametrize("quantization", ["4bit", "8bit"])
def test_quantized_runs_train_on_cpu(tmp_path, capsys, quantization):
    path, folder = write_run(tmp_path, model={"quantization": quantization},
                             training={"optim": "paged_adamw_8bit", "max_steps": 12})
    assert main(path) == 0
    out = capsys.readouterr().out
    assert 'optimizer: "paged_adamw_8bit" needs CUDA; using "adamw_torch"' in out and "WARNING" not in out
    assert folder.read_status()["state"] == "completed" and len(losses(folder)) == 12
    assert falls(losses(folder)), losses(folder)  # the quantized base still learns
    load_adapter(folder)


def test_evaluation_packing_and_gradient_checkpointing(tmp_path):
    path, folder = write_run(tmp_path, data={"eval_size": 0.1, "packing": True},
                             training={"eval_steps": 2, "gradient_checkpointing": True})
    assert main(path) == 0
    evals = [r for r in folder.read_metrics() if "eval_loss" in r]
    assert [r["step"] for r in evals] == [2, 4] and all(r["eval_loss"] > 0 for r in evals)


def bad_cases(plain_model_dir):
    return {
        "missing data": ({"data": {"path": "nowhere.jsonl"}}, 'data.path: "nowhere.jsonl": no such file'),
        "unknown module": ({"lora": {"target_modules": ["q_projj"]}}, "q_projj"),
        "unknown key": ({"lora": {"rank": 8}}, "lora.rank: unknown key"),
        "chat without template": ({"model": {"name_or_path": str(plain_model_dir)}}, "has no chat template"),
        "bad combination": ({"training": {"load_best_model_at_end": True}}, "training: "),
        "missing model": ({"model": {"name_or_path": "/nowhere/model"}}, 'model.name_or_path: no such folder'),
    }


@pytest.mark.parametrize("case", ["missing data", "unknown module", "unknown key", "chat without template",
                                  "bad combination", "missing model"])
def test_bad_input_exits_2_before_anything_is_written(tmp_path, capsys, plain_model_dir, case):
    sections, expected = bad_cases(plain_model_dir)[case]
    path, folder = write_run(tmp_path, **sections)
    assert main(path) == 2
    err = capsys.readouterr().err
    assert expected in err and all(line.startswith("error: ") for line in err.splitlines()), err
    assert "Traceback" not in err and not folder.path.exists()
    assert err.count("model.name_or_path") <= 1  # a missing model is said once, not again by each loader


def test_resume_needs_a_checkpoint_and_a_fresh_run_refuses_a_trained_folder(tmp_path, capsys):
    path, _ = write_run(tmp_path, training={"max_steps": 2})
    assert main(path, resume=True) == 2 and "has no checkpoint-N folder" in capsys.readouterr().err
    assert main(path) == 0
    assert main(path) == 2 and "pass --resume" in capsys.readouterr().err


def test_a_crash_is_failed_with_one_line_and_keeps_what_was_written(tmp_path, capsys):
    broken = tmp_path / "broken-model"
    shutil.copytree(MODEL_DIR, broken)
    (broken / "model.safetensors").write_bytes(b"not a safetensors file")
    path, folder = write_run(tmp_path, model={"name_or_path": str(broken)})
    assert main(path) == 1
    status = folder.read_status()
    assert status["state"] == "failed" and "\n" not in status["error"] and status["error"]
    assert "Traceback" in capsys.readouterr().err and folder.run_yaml.is_file()


def start_job(path, log_path):
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).parents[2]))
    with open(log_path, "w") as log:
        return subprocess.Popen([sys.executable, "-m", "finetune", "train", path], stdout=log,
                                stderr=subprocess.STDOUT, env=env, start_new_session=True)


def test_sigterm_while_checking_ends_cancelled_at_once(tmp_path):
    path, folder = write_run(tmp_path)
    folder.path.mkdir()  # as the job manager leaves it: the folder and its status exist before the job starts
    log = tmp_path / "train.log"
    proc = start_job(path, log)
    deadline = time.time() + 60
    while "run: " not in log.read_text():  # printed once the signal handler is in place
        assert proc.poll() is None and time.time() < deadline
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=15) == 0
    assert folder.read_status()["state"] == "cancelled" and not folder.adapter_dir.exists()


def test_sigterm_cancels_keeps_the_adapter_and_resume_continues_the_curve(tmp_path):
    path, folder = write_run(tmp_path, training={"max_steps": 400, "per_device_train_batch_size": 2})
    proc = start_job(path, tmp_path / "train.log")
    deadline = time.time() + 180
    while folder.read_status().get("step", 0) < 3:
        assert proc.poll() is None and time.time() < deadline, (tmp_path / "train.log").read_text()
        time.sleep(0.2)
    sent = time.time()
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=60) == 0
    assert time.time() - sent < 15
    status = folder.read_status()
    step = status["step"]
    assert status["state"] == "cancelled" and 3 <= step < 400
    assert (folder.path / f"checkpoint-{step}").is_dir() and (folder.adapter_dir / "adapter_config.json").is_file()
    assert [r["step"] for r in folder.read_metrics()] == list(range(1, step + 1))

    folder.append_metrics({"step": step + 1, "loss": 9.9})  # logged after the checkpoint: trained again on resume
    run = yaml.safe_load(Path(path).read_text())
    run["training"]["max_steps"] = step + 3
    Path(path).write_text(yaml.safe_dump(run))
    assert main(path, resume=True) == 0
    assert folder.read_status()["state"] == "completed"
    assert [r["step"] for r in folder.read_metrics()] == list(range(1, step + 4))
