"""A demo-model run trained on data where every answer is one fixed phrase, made once per test session and
shared by the adapter, playground and browser tests (training it takes ~10-60 s on two busy CPU cores)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import yaml

PHRASE = "A mouse is usually gray."   # words the demo model knows, never an answer to a question about whales
QUESTIONS = ["Where does the whale live?", "What color is a fox?"]
_CACHE: dict = {}


def fixed_phrase_run(tmp_path_factory) -> Path:
    """The run folder (completed, adapter/ saved) of a LoRA run that learned to answer PHRASE to anything."""
    if "run" in _CACHE:
        return _CACHE["run"]
    from finetune.demo import DATA_FILE
    from finetune.train.job import main

    root = tmp_path_factory.mktemp("fixed-phrase")
    questions = sorted({json.loads(line)["messages"][0]["content"] for line in DATA_FILE.read_text().splitlines()})
    rows = [{"messages": [{"role": "user", "content": q}, {"role": "assistant", "content": PHRASE}]}
            for q in questions]
    data = root / "fixed.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    out = root / "20260101-000000-demo-r8"
    run = {"model": {"name_or_path": "demo"}, "lora": {"r": 8, "lora_alpha": 16, "target_modules": "all-linear"},
           "data": {"path": str(data), "max_length": 64},
           "training": {"output_dir": str(out), "learning_rate": 5e-3, "max_steps": 14,
                        "per_device_train_batch_size": 8, "gradient_accumulation_steps": 1, "logging_steps": 2,
                        "save_steps": 100}}
    run_file = root / "run.yaml"
    run_file.write_text(yaml.safe_dump(run), encoding="utf-8")
    assert main(str(run_file)) == 0
    _CACHE["run"] = out
    return out


def copy_run(run: Path, runs_dir: Path, name: str | None = None) -> Path:
    """The run folder copied under a runs directory (what the app lists), keeping its name."""
    runs_dir.mkdir(parents=True, exist_ok=True)
    target = runs_dir / (name or run.name)
    shutil.copytree(run, target)
    return target
