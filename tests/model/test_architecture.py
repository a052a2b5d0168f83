"""finetune.model.architecture: reading config.json (local, Hub cache, demo), its errors, and the skeleton's contents."""

import json
import pickle

import pytest
from tiny_configs import TINY, write_config

from finetune.demo import MODEL_DIR
from finetune.errors import RunFileError
from finetune.model import architecture
from finetune.model.architecture import CONV1D, EMBEDDING, LINEAR, inspect_model

HAS_DEMO = (MODEL_DIR / "config.json").is_file()


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("configs")
    return {arch: write_config(root / arch, config) for arch, config in TINY.items()}


def one_line_error(*args, **kwargs) -> str:
    with pytest.raises(RunFileError) as info:
        inspect_model(*args, **kwargs)
    assert len(info.value.problems) == 1 and "\n" not in info.value.problems[0]
    return info.value.problems[0]


def test_llama_skeleton(folders):
    skel = inspect_model(str(folders["llama"]))
    assert (skel.model_type, skel.architecture) == ("llama", "LlamaForCausalLM")
    assert skel.output_name == "lm_head" and skel.input_name == "model.embed_tokens" and not skel.tied
    q = skel.by_name()["model.layers.0.self_attn.q_proj"]
    assert (q.kind, q.in_features, q.out_features, q.has_bias) == (LINEAR, 32, 32, False)
    k = skel.by_name()["model.layers.0.self_attn.k_proj"]
    assert k.out_features == 16   # 2 key/value heads of 8
    assert skel.by_name()["model.norm"].kind == "other"
    assert skel.total == sum(skel.param_numels)
    groups = skel.adaptable()
    assert [g.name for g in groups] == ["embed_tokens", "q_proj", "k_proj", "v_proj", "o_proj", "gate_proj",
                                        "up_proj", "down_proj", "lm_head"]
    flags = {g.name: g.all_linear for g in groups}
    assert not flags["embed_tokens"] and not flags["lm_head"] and flags["q_proj"]
    q_group = groups[1]
    assert (q_group.kind, q_group.shapes, q_group.layers, q_group.params) == (LINEAR, ((32, 32),), 3, 3 * 32 * 32)


def test_gpt2_conv1d_and_tied_embeddings(folders):
    skel = inspect_model(str(folders["gpt2"]))
    assert skel.tied and skel.output_name == "lm_head"
    # lm_head's weight is the embedding's: counted once, owned by the embedding.
    assert "lm_head.weight" not in skel.param_names and "transformer.wte.weight" in skel.param_names
    groups = {g.name: g for g in skel.adaptable()}
    assert groups["c_attn"].kind == CONV1D and groups["c_attn"].shapes == ((32, 96),)
    # attn.c_proj and mlp.c_proj share a short name, so one group with two shapes (as a target entry selects both).
    assert groups["c_proj"].shapes == ((32, 32), (128, 32)) and groups["c_proj"].layers == 6
    assert groups["wte"].kind == EMBEDDING and groups["wpe"].kind == EMBEDDING


def test_gemma2_scaled_embedding_is_an_embedding(folders):
    skel = inspect_model(str(folders["gemma2"]))
    assert skel.tied
    emb = skel.by_name()["model.embed_tokens"]
    assert emb.kind == EMBEDDING and emb.cls != "Embedding"   # a subclass, recognised by isinstance
    assert skel.by_name()["model.layers.0.self_attn.q_proj"].out_features == 4 * 12   # head_dim, not hidden / heads


def test_fused_projections(folders):
    phi3 = {g.name: g for g in inspect_model(str(folders["phi3"])).adaptable()}
    assert phi3["qkv_proj"].shapes == ((32, 32 + 2 * 16),) and phi3["gate_up_proj"].shapes == ((32, 96),)
    neox = {g.name: g for g in inspect_model(str(folders["gpt_neox"])).adaptable()}
    assert "query_key_value" in neox and neox["query_key_value"].all_linear


def test_cached_per_model_and_refreshed_when_the_config_changes(tmp_path):
    folder = write_config(tmp_path / "m", TINY["llama"])
    first = inspect_model(str(folder))
    assert inspect_model(str(folder)) is first
    assert inspect_model(str(folder), trust_remote_code=True) is not first   # a different key
    changed = dict(TINY["llama"], num_hidden_layers=1)
    (folder / "config.json").write_text(json.dumps(changed))
    import os
    os.utime(folder / "config.json", ns=(1, 1))   # a distinct mtime even on coarse clocks
    assert inspect_model(str(folder)).total < first.total


def test_skeleton_is_plain_data(folders):
    skel = inspect_model(str(folders["opt"]))
    data = pickle.dumps(skel)   # no torch objects inside: nothing of the model is kept alive
    assert b"torch" not in data


def test_missing_folder():
    assert one_line_error("/no/such/model") == 'model.name_or_path: no such folder "/no/such/model"'


def test_folder_without_config(tmp_path):
    assert "has no config.json" in one_line_error(str(tmp_path))


def test_file_instead_of_folder(tmp_path):
    (tmp_path / "x.bin").write_text("")
    assert "is a file" in one_line_error(str(tmp_path / "x.bin"))


def test_broken_config(tmp_path):
    (tmp_path / "config.json").write_text("{not json")
    message = one_line_error(str(tmp_path))
    assert message.startswith("model.name_or_path: config.json of") and "cannot be read" in message


def test_config_without_model_type(tmp_path):
    write_config(tmp_path, {"hidden_size": 8})
    assert 'has no "model_type"' in one_line_error(str(tmp_path))


def test_unknown_architecture(tmp_path):
    write_config(tmp_path, {"model_type": "llamaz", "hidden_size": 8})
    message = one_line_error(str(tmp_path))
    assert "'llamaz'" in message and "does not know" in message


def test_remote_code_needs_consent(tmp_path):
    write_config(tmp_path, {"model_type": "my_arch", "auto_map": {"AutoConfig": "x.MyConfig"}})
    assert "trust_remote_code" in one_line_error(str(tmp_path))


def test_not_a_causal_lm(tmp_path):
    write_config(tmp_path, {"model_type": "t5", "d_model": 16, "d_ff": 32, "num_layers": 1, "num_heads": 2,
                            "d_kv": 8, "vocab_size": 64})
    assert "cannot load as a causal language model" in one_line_error(str(tmp_path))


def test_impossible_sizes(tmp_path):
    write_config(tmp_path, dict(TINY["llama"], pad_token_id=500))   # padding index beyond the vocabulary
    assert "transformers cannot build" in one_line_error(str(tmp_path))


def test_hub_offline_is_one_clear_line():
    message = one_line_error("some-org/some-model-that-is-not-cached")
    assert message.startswith('model.name_or_path: cannot read config.json of "some-org/some-model-that-is-not-cached"'
                              " from the Hugging Face Hub (offline?)")


def test_hub_id_read_from_the_hub_cache(tmp_path, monkeypatch):
    """The real Hub code path (hf_hub_download), served from a Hub cache laid out as huggingface_hub does."""
    from huggingface_hub import constants

    commit = "0123456789abcdef0123456789abcdef01234567"
    repo = tmp_path / "models--tiny-org--tiny-llama"
    write_config(repo / "snapshots" / commit, TINY["llama"])
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path))
    skel = inspect_model("tiny-org/tiny-llama")
    assert skel.model_type == "llama" and skel.source == "tiny-org/tiny-llama"


def test_invalid_hub_id():
    assert "neither a local folder nor a valid Hub model id" in one_line_error("not a model")


@pytest.mark.skipif(not HAS_DEMO, reason="the demo model is not built yet")
def test_demo():
    skel = inspect_model("demo")
    assert skel.source == "demo" and skel.architecture.endswith("ForCausalLM")
    assert any(g.all_linear for g in skel.adaptable())
    assert inspect_model("demo") is skel


def test_clear_cache(folders):
    first = inspect_model(str(folders["mistral"]))
    architecture.clear_cache()
    assert inspect_model(str(folders["mistral"])) is not first
