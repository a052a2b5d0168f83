"""Threat: an imported config that crashes the importer. Before the fix an Axolotl config with `hub_model_id: x/y`
raised KeyError: 'hub' (`python -m finetune import` exited 1 with a traceback; the page's "Load a run file"
showed an empty "Error"). Now every key of the Axolotl table imports, one at a time, with a plausible value or
an odd one, into a run file or the project's one-line refusals, and the page never shows an empty error."""

import copy
import math
from types import SimpleNamespace

import pytest
import yaml

from finetune.cli import main
from finetune.errors import RunFileError
from finetune.runfile import RunConfig, axolotl
from finetune.runfile.importers import AXOLOTL_AS_OURS, AXOLOTL_COMPOSED, convert

# A value a real Axolotl config could hold, for every key the importer reads.
PLAUSIBLE = {
    "lora_r": 8, "lora_alpha": 16, "lora_dropout": 0.05, "lora_modules_to_save": ["lm_head"],
    "peft_layers_to_transform": [0, 1], "peft_use_dora": True, "peft_use_rslora": True, "lora_fan_in_fan_out": True,
    "revision_of_model": "main", "trust_remote_code": True, "val_set_size": 0.05, "sequence_len": 1024,
    "sample_packing": True, "output_dir": "./outputs/lora-out", "learning_rate": 1e-4, "num_epochs": 2,
    "micro_batch_size": 4, "gradient_accumulation_steps": 8, "lr_scheduler": "cosine", "warmup_steps": 10,
    "weight_decay": 0.01, "max_grad_norm": 0.5, "optimizer": "adamw_torch", "gradient_checkpointing": True,
    "logging_steps": 5, "save_steps": 50, "save_total_limit": 3, "eval_steps": 20, "early_stopping_patience": 3, "seed": 7, "max_steps": 100,
    "hub_model_id": "x/y", "rl": "dpo", "rl_beta": 0.1, "kto_desirable_weight": 1.0, "kto_undesirable_weight": 1.5,
    "trl": {"num_generations": 4, "max_completion_length": 64},
    # the composed keys
    "base_model": "x/y", "adapter": "qlora", "load_in_4bit": True, "load_in_8bit": True, "lora_target_linear": True,
    "lora_target_modules": ["q_proj", "v_proj"], "datasets": [{"path": "x/y", "type": "alpaca"}],
    "warmup_ratio": 0.1, "orpo_alpha": 0.1, "deepspeed": "deepspeed_configs/zero2.json", "fsdp": ["full_shard"],
    "fsdp_config": {"fsdp_offload_params": False}, "fsdp_version": 2, "flash_attention": True,
    "xformers_attention": True, "flex_attention": True, "sdp_attention": True, "eager_attention": True,
    # what a run does anyway, set otherwise
    "train_on_inputs": True, "strict": True, "tokenizer_type": "LlamaTokenizer", "group_by_length": True,
    "ds_type": "csv", "bf16": True,
}
KEYS = sorted(set(axolotl.RENAMED.values()) | AXOLOTL_COMPOSED | set(AXOLOTL_AS_OURS))
ODD = [None, 0, -1, 1e100, math.nan, "x", "", [], {}, True, [1], {"a": 1}, [{"path": 1}], [[]], "1e3"]


def test_every_key_of_the_axolotl_table_has_a_plausible_value_here():
    assert set(KEYS) <= set(PLAUSIBLE), "add a plausible value for the new key"


def imported(config: dict):
    """convert(), which may refuse only with the project's one-line errors."""
    try:
        return convert(config)
    except RunFileError as exc:
        assert exc.problems and all("\n" not in p for p in exc.problems)
        return None


@pytest.mark.parametrize("key", KEYS)
def test_each_key_imports_alone_with_a_plausible_value(key):
    run, notes = convert({"base_model": "demo", "adapter": "lora", key: PLAUSIBLE[key]})
    RunConfig.from_dict(run)
    field = {name: k for k, name in axolotl.RENAMED.items()}.get(key)
    if field:   # carried over, or said not to be, by its run-file name
        section, name = field.split(".")
        assert name in run.get(section, {}) or any(n.startswith(field) for n in notes), (run, notes)


def test_hub_model_id_becomes_hub_repo_id():
    run, notes = convert({"base_model": "demo", "adapter": "lora", "hub_model_id": "x/y"})
    assert RunConfig.from_dict(run).hub.repo_id == "x/y" and notes == []


@pytest.mark.parametrize("value", ODD, ids=repr)
@pytest.mark.parametrize("key", KEYS)
def test_an_odd_value_is_a_note_or_a_one_line_refusal(key, value):
    imported({"base_model": "demo", "adapter": "lora", key: value})


def test_keys_that_are_not_strings_are_notes():
    _, notes = convert({"base_model": "demo", "adapter": "lora", 123: "x", None: 1, 1.5: [2]})
    assert [n.split(":")[0] for n in notes] == ["123", "null", "1.5"]


def test_the_cli_imports_hub_model_id_without_a_traceback(tmp_path, capsys):
    path = tmp_path / "lora.yml"
    path.write_text("base_model: demo\nadapter: lora\nlora_r: 8\nhub_model_id: x/y\n")
    assert main(["import", str(path)]) == 0
    out, err = capsys.readouterr()
    assert yaml.safe_load(out.split("\n", 1)[1])["hub"] == {"repo_id": "x/y"} and err == ""


def test_the_page_turns_an_importer_bug_into_one_line(tmp_path, monkeypatch):
    gr = pytest.importorskip("gradio")
    from finetune.runfile import importers
    from finetune.ui.events import load_run_handler

    def broken(raw):
        raise KeyError("hub")

    monkeypatch.setattr(importers, "as_run_file", broken)
    path = tmp_path / "lora.yml"
    path.write_text("base_model: demo\nadapter: lora\n")
    handle = load_run_handler(SimpleNamespace(), locked=None)
    with pytest.raises(gr.Error) as info:
        handle(str(path), {}, {}, SimpleNamespace(session_hash="unit-test"))
    message = info.value.message
    assert message.startswith("lora.yml: could not be loaded (KeyError") and "KeyError" in message and "\n" not in message


@pytest.fixture(scope="module")
def page(tmp_path_factory):
    """The page as the app builds it (no server, no browser), for its "Load a run file" handler."""
    from finetune.jobs import JobManager
    from finetune.ui import build_page

    jobs = JobManager(tmp_path_factory.mktemp("runs"))
    demo, ui = build_page(jobs)
    [load] = [fn.fn for fn in demo.fns.values() if fn.fn is not None and (ui.load_run._id, "upload") in fn.targets]
    yield SimpleNamespace(load=load, form=(copy.deepcopy(ui.values.value), copy.deepcopy(ui.model_info.value)))
    jobs.shutdown()


@pytest.mark.parametrize("text, says", [
    ("lora: 5", "odd.yaml: lora: must be a mapping of settings, got 5"),
    ("lora: {r: 1e100}", 'odd.yaml: lora.r: must be a whole number >= 1 and <= 4096, got "1e100"'),
    ("lora: {target_modules: 5}", "odd.yaml: lora.target_modules: must be a string or a list of names, got 5"),
    ("model: {name_or_path: 5}", "odd.yaml: model.name_or_path: must be a non-empty string, got 5"),
    ("hub: 3", "odd.yaml: hub: must be a mapping of settings, got 3"),
])
def test_a_run_file_the_form_cannot_take_is_refused_with_its_problems(page, text, says, tmp_path):
    """The form fills from a run file as it is and names its problems; a value it cannot even show (a TypeError
    in the form before the fix, an empty "Error" on the page) is refused with the run file's own words."""
    gr = pytest.importorskip("gradio")
    path = tmp_path / "odd.yaml"
    path.write_text(text)
    values, info = copy.deepcopy(page.form)
    with pytest.raises(gr.Error) as refused:
        page.load(str(path), values, info, SimpleNamespace(session_hash="unit-test"))
    assert refused.value.message == says
