"""Axolotl imports that keep their meaning (finetune/runfile/axolotl_import.py, importers.py): `rl:` as the
method, each method's export read back as the same run, a chat_template dataset's column and turn names,
DeepSpeed / FSDP as training.strategy, the attention switches and trust_remote_code said, never dropped or
carried silently."""

import dataclasses

import pytest
import yaml

from finetune.errors import RunFileError
from finetune.runfile import RunConfig
from finetune.runfile.export import export, to_axolotl
from finetune.runfile.importers import convert, from_axolotl
from finetune.runfile.method import DATA_FORMATS

BASE = {"base_model": "x/y", "adapter": "lora"}
REWARDS = [{"type": "contains", "text": "yes", "weight": 1.0}]
METHODS = {
    "sft": {"method": {"name": "sft"}, "data": {"packing": True}},
    "dpo": {"method": {"name": "dpo", "beta": 0.2}},
    "kto": {"method": {"name": "kto", "beta": 0.3, "desirable_weight": 1.5, "undesirable_weight": 0.5}},
    "orpo": {"method": {"name": "orpo", "beta": 0.15}},
    "grpo": {"method": {"name": "grpo", "beta": 0.01, "num_generations": 4, "max_completion_length": 48,
                        "temperature": 0.7, "top_p": 0.9, "rewards": REWARDS}},
}


def imported(config: dict) -> tuple[RunConfig, list[str]]:
    run, notes = convert(config)
    return RunConfig.from_dict(run), notes


@pytest.mark.parametrize("rl", ["dpo", "kto", "orpo", "grpo"])
def test_rl_is_the_method_with_its_beta_as_axolotl_picks_it(rl):
    """Axolotl's beta: trl.beta, else rl_beta, else (ORPO) orpo_alpha (axolotl/core/builders/rl.py)."""
    run, notes = from_axolotl({**BASE, "rl": rl, "rl_beta": 0.25})
    assert (run["method"], notes) == ({"name": rl, "beta": 0.25}, [])
    assert from_axolotl({**BASE, "rl": rl, "rl_beta": 0.25, "trl": {"beta": 0.5}})[0]["method"]["beta"] == 0.5
    run, notes = from_axolotl({**BASE, "rl": rl, "orpo_alpha": 0.1})
    assert run["method"].get("beta") == (0.1 if rl == "orpo" else None)
    assert notes == ([] if rl == "orpo" else ["orpo_alpha: not carried over (ORPO's beta when rl_beta is not set)"])


def test_rl_settings_without_rl_are_notes():
    run, notes = from_axolotl({**BASE, "rl_beta": 0.1, "trl": {"num_generations": 4}})
    assert "method" not in run and [n.split(":")[0] for n in notes] == ["rl_beta", "trl"]


def test_an_rl_value_that_is_no_method_here_is_a_note():
    run, notes = imported({**BASE, "rl": "ipo"})
    assert run.method.name == "sft" and notes == ["rl: \"ipo\" is not carried over (methods: dpo, kto, orpo, "
                                                  "grpo); imported as sft"]


@pytest.mark.parametrize("method", list(METHODS))
@pytest.mark.parametrize("fmt", ["auto", "explicit"])
def test_each_method_exports_and_imports_back_as_the_same_run(method, fmt):
    """Axolotl has no `auto` data format: the export writes the method's first format, and the import reads it
    back as that format; everything else comes back as it was. GRPO's rewards are Python import paths in
    Axolotl, so they are the one thing added back by hand (the import refuses without them, in one line)."""
    sections = METHODS[method]
    data = {**sections.get("data", {}), **({"format": DATA_FORMATS[method][0]} if fmt == "explicit" else {})}
    run = RunConfig.from_dict({**sections, "data": data, "training": {"max_steps": 9}})
    config = yaml.safe_load(export(run, "axolotl"))
    back, notes = from_axolotl(config)
    if method == "grpo":
        assert "rewards" not in back["method"]
        with pytest.raises(RunFileError, match=r"method\.rewards"):
            convert(config)
        back["method"]["rewards"] = REWARDS
    # GRPO's dataset goes to Axolotl without a type, so the import leaves the format to `auto` (the columns).
    settled = "auto" if method == "grpo" else DATA_FORMATS[method][0]
    want = dataclasses.replace(run, data=dataclasses.replace(run.data, format=settled))
    assert RunConfig.from_dict(back) == want and notes == []


def test_the_export_writes_the_dataset_types_axolotl_documents_for_each_method():
    """Axolotl reads a mapping `type` as user_defined.default: DPO's takes field_prompt / field_chosen /
    field_rejected, KTO's field_prompt / field_completion / field_label (docs/rlhf.qmd), each naming our
    format's columns; SFT's chat data is `chat_template`. ORPO has one reader, chat_template.argilla; a typed
    GRPO dataset would go to the DPO reader (chosen/rejected), so GRPO's has no type."""
    def dataset(method):
        return to_axolotl(RunConfig.from_dict(METHODS[method]))["datasets"][0]

    assert dataset("sft")["type"] == "chat_template"
    assert dataset("dpo")["type"] == {"field_prompt": "prompt", "field_chosen": "chosen", "field_rejected": "rejected"}
    assert dataset("kto")["type"] == {"field_prompt": "prompt", "field_completion": "completion",
                                      "field_label": "label"}
    assert dataset("orpo")["type"] == "chat_template.argilla"
    assert "type" not in dataset("grpo")
    assert "# datasets[0]: Axolotl's ORPO reads chat_template.argilla only" in export(
        RunConfig.from_dict(METHODS["orpo"]), "axolotl")


def test_orpos_documented_type_is_read_as_preference_data():
    run, notes = imported({**BASE, "rl": "orpo", "datasets": [{"path": "a/b", "type": "chat_template.argilla"}]})
    assert (run.method.name, run.data.format, notes) == ("orpo", "preference", [])


def test_a_chat_template_dataset_is_chat_with_its_names_carried():
    """What the chat format reads anyway (a messages column, or ShareGPT's conversations with from/value
    turns and its human/gpt roles) is carried without a word; any other name is one note each."""
    sharegpt = {"path": "a/b", "type": "chat_template", "field_messages": "conversations",
                "message_property_mappings": {"role": "from", "content": "value"},
                "roles": {"user": ["human", "user"], "assistant": ["gpt", "assistant"], "system": ["system"]}}
    run, notes = imported({**BASE, "datasets": [sharegpt]})
    assert (run.data.format, notes) == ("chat", [])
    old_style = {"path": "a/b", "type": "chat_template", "message_field_role": "role",
                 "message_field_content": "content"}
    assert imported({**BASE, "datasets": [old_style]})[1] == []
    other = {"path": "a/b", "type": "chat_template", "field_messages": "dialog",
             "message_property_mappings": {"role": "speaker", "content": "text"}, "roles": {"user": ["customer"]}}
    run, notes = imported({**BASE, "datasets": [other]})
    assert run.data.format == "chat"
    assert [n.split(":")[0] for n in notes] == ["datasets[0].field_messages", "datasets[0].message_property_mappings",
                                                "datasets[0].roles"]
    assert '"dialog"' in notes[0] and '"speaker"' in notes[1] and "customer" in notes[2]


def test_from_value_turns_outside_a_conversations_column_are_a_note():
    mapped = {"path": "a/b", "type": "chat_template", "message_property_mappings": {"role": "from", "content": "value"}}
    [note] = imported({**BASE, "datasets": [mapped]})[1]
    assert note.startswith('datasets[0].message_property_mappings: role "from", content "value" is not carried')


@pytest.mark.parametrize(("deepspeed", "stage"), [("deepspeed_configs/zero3_bf16.json", 3),
                                                  ("deepspeed_configs/zero2.json", 2),
                                                  ({"zero_optimization": {"stage": 3}}, 3)])
def test_deepspeed_is_the_strategy_with_its_zero_stage(deepspeed, stage):
    run, notes = imported({**BASE, "deepspeed": deepspeed})
    t = run.training
    assert (t.strategy, t.zero_stage, t.devices) == ("deepspeed", stage, "auto")
    [note] = notes
    assert note.startswith(f"deepspeed: carried over as training.strategy deepspeed, zero_stage {stage}")


@pytest.mark.parametrize("deepspeed", ["deepspeed_configs/zero1.json", "/home/me/ds.json"])
def test_a_zero_stage_the_run_file_has_no_choice_for_is_said(deepspeed):
    run, [note] = imported({**BASE, "deepspeed": deepspeed})
    assert (run.training.strategy, run.training.zero_stage) == ("deepspeed", 2)
    assert ("ZeRO stage 1" if "zero1" in deepspeed else "no ZeRO stage in its name") in note


def test_zero_3_over_a_quantized_base_keeps_the_strategy_and_says_why_the_stage_is_not():
    run, notes = imported({**BASE, "adapter": "qlora", "deepspeed": "zero3.json"})
    assert (run.training.strategy, run.training.zero_stage, run.model.quantization) == ("deepspeed", 2, "4bit")
    assert any(n.startswith("training.zero_stage: 3 partitions the base weights") for n in notes)


@pytest.mark.parametrize("keys", [{"fsdp": ["full_shard", "auto_wrap"], "fsdp_config": {"fsdp_offload_params": True}},
                                  {"fsdp_version": 2, "fsdp_config": {"reshard_after_forward": True}}])
def test_fsdp_is_the_strategy(keys):
    run, [note] = imported({**BASE, **keys})
    assert (run.training.strategy, run.training.devices) == ("fsdp", "auto")
    assert "training.strategy fsdp" in note


@pytest.mark.parametrize("training", [{"strategy": "deepspeed", "zero_stage": 2},
                                      {"strategy": "deepspeed", "zero_stage": 3}, {"strategy": "fsdp"}],
                         ids=["zero2", "zero3", "fsdp"])
def test_each_strategy_exports_in_axolotl_s_keys_and_imports_back(training):
    """DeepSpeed as the file Axolotl ships for the stage, FSDP as FSDP2; the import takes the process count
    from the launch (devices: auto), so a run on every free GPU comes back as it was."""
    run = RunConfig.from_dict({"training": {**training, "devices": "auto"}})
    text = export(run, "axolotl")
    assert "training.strategy" not in text and "training.zero_stage" not in text
    config = yaml.safe_load(text)
    if training["strategy"] == "deepspeed":
        assert config["deepspeed"] == f"deepspeed_configs/zero{training['zero_stage']}.json"
    else:
        assert config["fsdp_version"] == 2 and config["fsdp_config"]["auto_wrap_policy"] == "TRANSFORMER_BASED_WRAP"
    back, notes = imported(config)
    assert back == dataclasses.replace(run, data=dataclasses.replace(run.data, format="chat"))
    key = "deepspeed" if training["strategy"] == "deepspeed" else "fsdp_config"
    assert [n.split(" as ")[0] for n in notes] == [f"{key}: carried over"]


def test_fsdp_and_deepspeed_together_carry_neither():
    run, [note] = imported({**BASE, "fsdp": ["full_shard"], "deepspeed": "zero2.json"})
    assert (run.training.strategy, run.training.devices) == ("ddp", 1)
    assert note.startswith("deepspeed: not carried over, nor fsdp")


def test_attention_switches_are_said_and_sdpa_is_the_default():
    assert imported({**BASE, "sdp_attention": True, "flash_attention": False})[1] == []
    _, [note] = imported({**BASE, "flash_attention": True})
    assert note.startswith("flash_attention: not carried over (the run file has no attention setting")


def test_trust_remote_code_is_off_unless_this_machine_allows_it(monkeypatch):
    monkeypatch.delenv("FINETUNE_ALLOW_REMOTE_CODE", raising=False)
    run, [note] = imported({**BASE, "trust_remote_code": True})
    assert run.model.trust_remote_code is False
    assert note.startswith("model.trust_remote_code: true is not carried over") and "set it yourself" in note
    monkeypatch.setenv("FINETUNE_ALLOW_REMOTE_CODE", "1")
    run, [note] = imported({**BASE, "trust_remote_code": True})
    assert run.model.trust_remote_code is True and "own Python code will run" in note


@pytest.mark.parametrize("value", [None, 0, "x", [], {}, [1], {"a": 1}, [[]], {"role": [1]}, {"user": "human"},
                                   {1: [None]}, {"zero_optimization": 3}, {"zero_optimization": {"stage": True}}],
                         ids=repr)
@pytest.mark.parametrize("key", ["field_messages", "message_property_mappings", "message_field_role", "roles",
                                 "deepspeed"])
def test_odd_values_in_these_settings_import_with_notes_never_a_crash(key, value):
    config = ({**BASE, "deepspeed": value} if key == "deepspeed" else
              {**BASE, "datasets": [{"path": "a/b", "type": "chat_template", key: value}]})
    run, _ = imported(config)
    assert run.data.format == ("auto" if key == "deepspeed" else "chat")
