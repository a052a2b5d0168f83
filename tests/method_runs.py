"""Demo-model runs of the methods beyond SFT, each trained once per test session on the method's demo data
(finetune/demo/method_data.py) and shared by the playground, merge and push tests.

DPO is trained until its adapter prefers the enthusiastic answers ("... forest!") the base never gives; GRPO
with a `contains: helper` reward until its adapter says the demo's small talk ("I am a small helper.") that
the base says about one time in five (both measured in tests/train/test_methods_train.py). KTO and ORPO train two
steps: enough for an adapter whose weights moved, which is all that merging and pushing need.
"""

from __future__ import annotations

from pathlib import Path

import yaml

# The method section and the steps of each; learning rate 5e-3 and batch 8 as in tests/train/test_methods_train.py.
RUNS = {
    "dpo": ({"name": "dpo"}, 20),
    "grpo": ({"name": "grpo", "num_generations": 4, "max_completion_length": 16,
              "rewards": [{"type": "contains", "text": "helper"}]}, 12),
    "kto": ({"name": "kto"}, 2),
    "orpo": ({"name": "orpo"}, 2),
}
_CACHE: dict[str, Path] = {}


def run_file(out: Path, method: dict, steps: int, **training) -> dict:
    return {"model": {"name_or_path": "demo"}, "method": method, "lora": {"r": 8, "lora_alpha": 16},
            "data": {"path": "demo", "max_length": 64},
            "training": {"output_dir": str(out), "max_steps": steps, "per_device_train_batch_size": 8,
                         "gradient_accumulation_steps": 1, "learning_rate": 5e-3, "logging_steps": 1,
                         "save_steps": 100, **training}}


def method_run(tmp_path_factory, name: str) -> Path:
    """The completed run folder (adapter/ saved) of the demo trained with method `name`."""
    if name in _CACHE:
        return _CACHE[name]
    from finetune.train.job import main

    method, steps = RUNS[name]
    root = tmp_path_factory.mktemp(f"method-{name}")
    out = root / f"20260101-000000-demo-{name}"
    path = root / "run.yaml"
    path.write_text(yaml.safe_dump(run_file(out, method, steps)), encoding="utf-8")
    assert main(str(path)) == 0
    _CACHE[name] = out
    return out
