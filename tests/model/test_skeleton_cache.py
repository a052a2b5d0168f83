"""finetune.model.skeleton_cache: a model counted once is counted by a fresh process without torch; a changed
config, another library version or a broken cache file is a miss, never a wrong skeleton."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
from tiny_configs import TINY, write_config

from finetune.demo import MODEL_DIR
from finetune.model import architecture, skeleton_cache
from finetune.model.architecture import inspect_model

ROOT = Path(__file__).resolve().parents[2]


def fresh_process(code: str) -> str:
    """Run `code` in a new interpreter (same env, so the same cache dir); its stdout."""
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_a_counted_model_is_counted_again_without_torch(tmp_path):
    folder = write_config(tmp_path / "llama", TINY["llama"])
    built = inspect_model(str(folder))
    key = architecture._disk_key(folder / "config.json", False)
    assert (skeleton_cache.cache_dir() / f"{key}.json").is_file()
    out = fresh_process(
        "import sys, json; from finetune.model.architecture import inspect_model\n"
        f"s = inspect_model({str(folder)!r})\n"
        "print(json.dumps([s.total, [m.name for m in s.modules], s.output_name, s.tied, "
        "'torch' in sys.modules, 'transformers' in sys.modules]))")
    total, names, output_name, tied, torch_loaded, transformers_loaded = json.loads(out)
    assert (total, names, output_name, tied) == (built.total, [m.name for m in built.modules], built.output_name,
                                                 built.tied)
    assert not torch_loaded and not transformers_loaded


def test_round_trip_keeps_every_field(tmp_path):
    folder = write_config(tmp_path / "gpt2", TINY["gpt2"])   # Conv1D, tied embeddings, biases
    built = inspect_model(str(folder))
    back = skeleton_cache.from_json(json.loads(json.dumps(skeleton_cache.to_json(built, "k"))), built.source)
    assert back == built and back.adaptable() == built.adaptable()


def test_a_changed_config_or_library_version_misses(tmp_path, monkeypatch):
    folder = write_config(tmp_path / "m", TINY["llama"])
    key = architecture._disk_key(folder / "config.json", False)
    write_config(folder, dict(TINY["llama"], num_hidden_layers=2))
    assert architecture._disk_key(folder / "config.json", False) != key
    assert architecture._disk_key(folder / "config.json", True) != architecture._disk_key(folder / "config.json", False)
    monkeypatch.setattr(skeleton_cache, "versions", lambda: ("transformers==0.0.1", "torch==0.0.1"))
    assert architecture._disk_key(folder / "config.json", False) != key


def test_a_broken_cache_file_is_rebuilt(tmp_path):
    folder = write_config(tmp_path / "m", TINY["qwen2"])
    built = inspect_model(str(folder))
    key = architecture._disk_key(folder / "config.json", False)
    (skeleton_cache.cache_dir() / f"{key}.json").write_text('{"key": "' + key + '", "modu')   # cut short
    architecture.clear_cache()
    assert inspect_model(str(folder)) == built
    assert json.loads((skeleton_cache.cache_dir() / f"{key}.json").read_text())["key"] == key   # written anew


def test_models_with_their_own_code_are_not_kept(tmp_path):
    folder = write_config(tmp_path / "m", dict(TINY["llama"], auto_map={"AutoConfig": "x.Config"}))
    assert architecture._disk_key(folder / "config.json", True) is None


def test_an_unwritable_cache_only_costs_time(tmp_path, monkeypatch):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    monkeypatch.setenv("FINETUNE_CACHE_DIR", str(blocker))
    folder = write_config(tmp_path / "m", TINY["mistral"])
    assert inspect_model(str(folder)).model_type == "mistral"


def test_the_shipped_demo_skeleton_is_current():
    """The demo's skeleton ships (finetune/demo/skeleton.json) so the app's first page needs no torch; it must
    be what the installed libraries build. If this fails after an upgrade: python -m finetune.model.architecture"""
    data = json.loads(skeleton_cache.SHIPPED.read_text())
    assert data["key"] == skeleton_cache.cache_key((MODEL_DIR / "config.json").read_bytes(), False)
    fresh = architecture._read("demo", str(MODEL_DIR), None, False, is_local=True, disk=False)
    assert skeleton_cache.from_json(data, "demo") == fresh


def test_the_first_page_counts_the_demo_without_torch(tmp_path):
    out = fresh_process(
        "import os, sys; os.environ['FINETUNE_CACHE_DIR'] = " + repr(str(tmp_path / "empty")) + "\n"
        "from finetune.demo import RUN_FILE; from finetune.runfile import load_run\n"
        "from finetune.model.count import count_run\n"
        "print(count_run(load_run(RUN_FILE)).trainable, 'torch' in sys.modules)")
    trainable, torch_loaded = out.split()
    assert int(trainable) > 0 and torch_loaded == "False"


@pytest.mark.slow
def test_the_app_builds_without_torch(tmp_path):
    out = fresh_process(
        "import os, sys; os.environ['FINETUNE_CACHE_DIR'] = " + repr(str(tmp_path / "empty")) + "\n"
        "from finetune.ui import build_app\n"
        f"demo, jobs = build_app({str(tmp_path / 'runs')!r}); jobs.shutdown()\n"
        "print('torch' in sys.modules, 'transformers' in sys.modules)")
    assert out.split() == ["False", "False"]
