"""finetune.model.targets, unit by unit: PEFT's matching rules on a tiny Llama skeleton (the count's tests
check the numbers against PEFT itself; these check which modules each rule picks, and the messages)."""

import pytest
from tiny_configs import LAYERS, TINY, write_config

from finetune.errors import RunFileError
from finetune.model.architecture import inspect_model
from finetune.model.targets import match
from finetune.runfile import LoraSection


@pytest.fixture(scope="module")
def llama(tmp_path_factory):
    return inspect_model(str(write_config(tmp_path_factory.mktemp("llama"), TINY["llama"])))


def adapted(skel, **lora):
    return [skel.modules[i].name for i in match(skel, LoraSection(**lora)).adapted]


def test_a_list_entry_matches_a_whole_name_or_a_dotted_suffix(llama):
    names = adapted(llama, target_modules=["q_proj"])
    assert names == [f"model.layers.{i}.self_attn.q_proj" for i in range(LAYERS)]
    with pytest.raises(RunFileError, match='"proj" matches no module'):   # not a dotted suffix of any name
        adapted(llama, target_modules=["proj"])


def test_a_string_is_a_regular_expression_on_the_full_name(llama):
    assert adapted(llama, target_modules=r".*\.0\.self_attn\.(q|v)_proj") == [
        "model.layers.0.self_attn.q_proj", "model.layers.0.self_attn.v_proj"]


def test_all_linear_takes_every_linear_but_the_output_layer(llama):
    names = adapted(llama, target_modules="all-linear")
    assert "lm_head" not in names and len(names) == 7 * LAYERS


def test_exclude_modules_wins_over_targets(llama):
    names = adapted(llama, target_modules=["q_proj", "v_proj"], exclude_modules=["v_proj"])
    assert names and all(n.endswith("q_proj") for n in names)


def test_layers_to_transform_keeps_only_those_layers(llama):
    assert adapted(llama, target_modules=["q_proj"], layers_to_transform=[1]) == ["model.layers.1.self_attn.q_proj"]


def test_modules_to_save_wraps_and_excludes_its_subtree(llama):
    found = match(llama, LoraSection(target_modules="all-linear", modules_to_save=["lm_head"]))
    assert [llama.modules[i].name for i in found.saved] == ["lm_head"]
    assert found.saved_params == TINY["llama"]["vocab_size"] * TINY["llama"]["hidden_size"]


@pytest.mark.parametrize(("lora", "expected"), [
    ({"target_modules": ["q_projj"]}, 'lora.target_modules: "q_projj" matches no module of this model'),
    ({"target_modules": "q_proj"}, "write [q_proj] to match by name"),
    ({"target_modules": "(("}, 'lora.target_modules: "((" is not a valid regular expression'),
    ({"target_modules": ["q_proj"], "modules_to_save": ["lm_heed"]}, 'lora.modules_to_save: "lm_heed"'),
])
def test_what_matches_nothing_is_one_line_naming_the_field(llama, lora, expected):
    with pytest.raises(RunFileError) as err:
        match(llama, LoraSection(**lora))
    assert any(expected in p for p in err.value.problems), err.value.problems


def test_matching_is_memoised_per_targeting_settings(llama):
    first = match(llama, LoraSection(target_modules=["k_proj"], r=4))
    assert match(llama, LoraSection(target_modules=["k_proj"], r=64)) is first   # r does not change targets
