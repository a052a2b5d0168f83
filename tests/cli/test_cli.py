"""`python -m finetune`: exit codes, one `error:` line per problem, never a traceback."""

import json
import subprocess
import sys

import pytest

from finetune.cli import main

LLAMA = {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": 64,
         "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
         "vocab_size": 256, "max_position_embeddings": 128, "tie_word_embeddings": False}


@pytest.fixture
def model_dir(tmp_path):
    path = tmp_path / "tiny-llama"
    path.mkdir()
    (path / "config.json").write_text(json.dumps(LLAMA))
    return path


def write(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def test_count_json_one_line_per_file_and_error_objects(tmp_path, model_dir, capsys):
    good = write(tmp_path, "good.yaml", f"model: {{name_or_path: {model_dir}}}\nlora: {{r: 8, target_modules: [q_proj, v_proj]}}")
    typo = write(tmp_path, "typo.yaml", f"model: {{name_or_path: {model_dir}}}\nlora: {{target_modules: [q_projj]}}")
    assert main(["count", good, typo, "--json"]) == 2
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert lines[0]["config"] == good
    # q: 64x64, v: 64x32 (2 kv heads of 16), 2 layers: 2 * 8 * ((64+64) + (64+32))
    assert lines[0]["trainable"] == 2 * 8 * (128 + 96)
    assert set(lines[0]) >= {"config", "trainable", "total", "percent", "modules"}
    assert lines[1]["config"] == typo and '"q_projj" matches no module' in lines[1]["error"]


def test_count_prints_a_readable_summary(tmp_path, model_dir, capsys):
    good = write(tmp_path, "good.yaml", f"model: {{name_or_path: {model_dir}}}\nlora: {{r: 8, target_modules: [q_proj, v_proj]}}")
    assert main(["count", good]) == 0
    out = capsys.readouterr().out
    assert "3,584" in out and "q_proj" in out


@pytest.mark.parametrize("text, expected", [
    ("lora: {r: 0}", "error: lora.r: must be a whole number >= 1"),
    ("model: {name_or_path: /nowhere/model}", "error: model.name_or_path:"),
    ("lora: {r: [", "error: "),
])
def test_bad_run_files_exit_2_with_one_error_line(tmp_path, capsys, text, expected):
    path = write(tmp_path, "bad.yaml", text)
    for command in (["count", path], ["export", path, "--to", "peft"]):
        code = main(command)
        err = capsys.readouterr().err
        if command[0] == "export" and "name_or_path" in expected:
            continue  # export does not read the model; an unreachable one is not an error there
        assert code == 2 and err.startswith(expected) and "Traceback" not in err, err


def test_missing_run_file_and_bad_arguments(tmp_path, capsys):
    assert main(["count", str(tmp_path / "none.yaml")]) == 2
    assert "no such run file" in capsys.readouterr().err
    with pytest.raises(SystemExit) as info:
        main(["export", "x.yaml", "--to", "ollama"])
    assert info.value.code == 2 and "error:" in capsys.readouterr().err


def test_presets_lists_every_preset(capsys):
    assert main(["presets"]) == 0
    out = capsys.readouterr().out
    for name in ("unsloth", "axolotl-llama3", "peft-defaults", "qlora", "lora-blog", "rslora", "dora"):
        assert name in out


def test_export_axolotl_uses_axolotls_key_names(tmp_path, capsys):
    import yaml

    assert main(["export", "presets/axolotl-llama3.yaml", "--to", "axolotl"]) == 0
    out = yaml.safe_load(capsys.readouterr().out)
    assert out["lora_r"] == 32 and out["lora_alpha"] == 16 and out["lora_target_linear"] is True
    assert main(["export", "presets/qlora.yaml", "--to", "axolotl"]) == 0
    out = yaml.safe_load(capsys.readouterr().out)
    assert out["adapter"] == "qlora" and out["load_in_4bit"] is True


def test_export_peft_is_valid_python_with_the_same_lora_settings(capsys):
    assert main(["export", "presets/unsloth.yaml", "--to", "peft"]) == 0
    code = capsys.readouterr().out
    compile(code, "exported.py", "exec")
    assert "r=16" in code and "'gate_proj'" in code and "LoraConfig(" in code


def test_cli_as_a_process_exit_code_and_no_traceback(tmp_path):
    path = write(tmp_path, "bad.yaml", "lora: {r: -3, bias: x}")
    proc = subprocess.run([sys.executable, "-m", "finetune", "count", path], capture_output=True, text=True)
    assert proc.returncode == 2, proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 2 and "Traceback" not in proc.stderr


def test_train_hands_the_job_its_hub_push(monkeypatch):
    # finetune.train never imports finetune.adapter (ARCHITECTURE.md): the CLI passes the push in.
    from finetune.adapter.hub import push_when_done
    from finetune.train import job

    seen = {}
    monkeypatch.setattr(job, "main", lambda run, resume=False, when_done=None: seen.update(when_done=when_done) or 0)
    assert main(["train", "run.yaml"]) == 0 and seen["when_done"] is push_when_done
