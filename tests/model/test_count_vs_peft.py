"""The closed-form count against PEFT itself: `get_peft_model(...).get_nb_trainable_parameters()` on the meta
device, over generated settings for ten architectures, full-size configs of real models, and real 4-bit and
8-bit loads. Every case must be exact."""

import dataclasses
import re

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tiny_configs import FULL, LAYERS, TINY, write_config

from finetune.model.architecture import inspect_model
from finetune.model.count import count_run
from finetune.runfile import RunConfig

pytestmark = pytest.mark.filterwarnings("ignore")   # PEFT warns about tied embeddings, fan_in_fan_out...


@pytest.fixture(scope="module")
def peft():
    import peft  # ~10 s once per session
    return peft


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("tiny")
    return {arch: write_config(root / arch, config) for arch, config in TINY.items()}


def peft_numbers(peft, folder, run, low_cpu_mem_usage=False) -> tuple[int, int]:
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(folder))
    config = peft.LoraConfig(**dataclasses.asdict(run.lora))
    wrapped = peft.get_peft_model(model, config, low_cpu_mem_usage=low_cpu_mem_usage)
    return wrapped.get_nb_trainable_parameters()


def ours(folder, lora: dict, **model) -> tuple[int, int]:
    count = count_run(RunConfig.from_dict({"model": {"name_or_path": str(folder), **model}, "lora": lora}))
    assert sum(row["params"] for row in count.modules.values()) == count.trainable
    return count.trainable, count.total


@st.composite
def lora_settings(draw, skel):
    """Settings PEFT accepts and that adapt at least one module, drawn from the model's own names."""
    groups = skel.adaptable()
    by_short = {}
    for m in skel.modules:
        by_short.setdefault(m.short, m.name)
    in_layers = [g.name for g in groups if re.search(r"\.\d+\.", by_short[g.name])]   # inside numbered blocks
    outside = [g.name for g in groups if g.name not in in_layers]                       # embeddings, lm_head
    n_layers = LAYERS
    lora = {"r": draw(st.integers(1, 12)), "lora_alpha": draw(st.sampled_from([1, 8, 16, 32])),
            "bias": draw(st.sampled_from(["none", "all", "lora_only"])), "use_rslora": draw(st.booleans())}
    kind = draw(st.sampled_from(["all-linear", "list", "list", "regex"]))
    if kind == "all-linear":
        targets = "all-linear"
        chosen = [g.name for g in groups if g.all_linear]
    else:
        chosen = draw(st.lists(st.sampled_from(in_layers), min_size=1, max_size=4, unique=True))
        chosen += draw(st.lists(st.sampled_from(outside), max_size=2, unique=True))
        targets = chosen if kind == "list" else r"(.*\.)?(" + "|".join(chosen) + ")"
    lora["target_modules"] = targets
    saved = draw(st.lists(st.sampled_from(outside), max_size=2, unique=True))
    saved = [s for s in saved if s not in chosen or kind == "all-linear"] or None
    lora["modules_to_save"] = saved
    in_chosen = [c for c in chosen if c in in_layers]
    if kind == "list" and draw(st.booleans()):
        lora["layers_to_transform"] = draw(st.lists(st.integers(0, n_layers - 1), min_size=1, unique=True))
        if draw(st.booleans()):
            lora["layers_pattern"] = next(m.short for m in skel.modules if m.cls == "ModuleList")
    elif in_chosen and draw(st.booleans()):
        # exclude one layer's copy of a chosen module, by its full name
        short = draw(st.sampled_from(in_chosen))
        lora["exclude_modules"] = [next(m.name for m in skel.modules if m.short == short)]
    if in_chosen and draw(st.booleans()):
        lora["rank_pattern"] = {draw(st.sampled_from(in_chosen)): draw(st.integers(1, 20))}
    embedding_adapted = kind != "all-linear" and any(g.kind == "embedding" for g in groups if g.name in chosen)
    variant = draw(st.sampled_from(["plain", "dora", "lora_bias"]))
    if variant == "dora":
        lora["use_dora"] = True
    elif variant == "lora_bias" and not embedding_adapted:
        lora["lora_bias"] = True
    return lora


@pytest.mark.slow   # many generated settings per architecture, each built by PEFT
@pytest.mark.parametrize("arch", sorted(TINY))
def test_generated_settings_match_peft(arch, folders, peft):
    folder = folders[arch]
    skel = inspect_model(str(folder))

    @settings(max_examples=40, deadline=None, derandomize=True, database=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
    @given(lora_settings(skel))
    def check(lora):
        run = RunConfig.from_dict({"model": {"name_or_path": str(folder)}, "lora": lora})
        assert ours(folder, lora) == peft_numbers(peft, folder, run), lora

    check()


EDGE_CASES = [
    # tied embeddings: LoRA on both ends, and full copies of each (each copy is a new parameter for PEFT)
    ("gemma2", {"target_modules": ["embed_tokens", "lm_head"]}),
    ("gemma2", {"target_modules": ["q_proj"], "modules_to_save": ["lm_head", "embed_tokens"]}),
    ("gpt2", {"target_modules": ["c_attn"], "modules_to_save": ["lm_head"], "bias": "all"}),
    ("gpt2", {"target_modules": ["wte", "c_fc"], "use_dora": True}),
    ("opt", {"target_modules": ["embed_tokens"], "use_dora": True}),
    # bias="all" does not unfreeze the originals of modules_to_save (their copies train instead)
    ("opt", {"target_modules": ["q_proj"], "modules_to_save": ["final_layer_norm"], "bias": "all"}),
    # exclude_modules as a regular expression; targets by regular expression reaching lm_head
    ("llama", {"target_modules": ".*", "exclude_modules": r".*(norm|embed_tokens|layers(\.\d+)?|mlp|self_attn|model|"
                                                          r"rotary_emb|act_fn)"}),
    ("qwen2", {"target_modules": r".*\.[qkv]_proj", "exclude_modules": r".*\.1\..*", "bias": "lora_only"}),
    # rank_pattern by regular expression, first key wins
    ("llama", {"target_modules": ["q_proj", "v_proj"], "rank_pattern": {r"layers\.0\.self_attn\.q_proj": 2,
                                                                       "q_proj": 5}}),
    ("phi3", {"target_modules": ["qkv_proj", "gate_up_proj"], "layers_to_transform": 1, "layers_pattern": "layers"}),
    ("falcon", {"target_modules": "all-linear", "modules_to_save": ["lm_head"], "use_dora": True}),
    ("gpt_neox", {"target_modules": ["dense"], "bias": "lora_only", "lora_bias": True}),
]


@pytest.mark.parametrize("arch,lora", EDGE_CASES)
def test_edge_cases_match_peft(arch, lora, folders, peft):
    run = RunConfig.from_dict({"model": {"name_or_path": str(folders[arch])}, "lora": lora})
    assert ours(folders[arch], lora) == peft_numbers(peft, folders[arch], run)


FULL_SETTINGS = [
    {"target_modules": "all-linear", "r": 16},
    {"target_modules": r".*attn\.(\w+_proj|c_\w+)", "r": 8, "use_dora": True, "modules_to_save": ["lm_head"]},
]


@pytest.mark.parametrize("name", sorted(FULL))
def test_full_size_models_match_peft(name, tmp_path, peft):
    config, known_total = FULL[name]
    folder = write_config(tmp_path, config)
    assert inspect_model(str(folder)).total == known_total
    for lora in FULL_SETTINGS:
        run = RunConfig.from_dict({"model": {"name_or_path": str(folder)}, "lora": lora})
        assert ours(folder, lora) == peft_numbers(peft, folder, run, low_cpu_mem_usage=True), lora


def test_llama3_8b_known_numbers(tmp_path):
    folder = write_config(tmp_path, FULL["Meta-Llama-3-8B"][0])
    # q_proj + v_proj at r=8: 32 layers x (8 x (4096 + 4096) + 8 x (4096 + 1024))
    assert ours(folder, {"target_modules": ["q_proj", "v_proj"], "r": 8}) == (3_407_872, 8_033_669_120)


@pytest.fixture(scope="module")
def saved_tiny_models(tmp_path_factory):
    """Tiny models with real (random) weights saved to disk, to be loaded quantized like a real run."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    root = tmp_path_factory.mktemp("weights")
    out = {}
    for arch in ("llama", "gemma2", "gpt2"):
        torch.manual_seed(0)
        model = AutoModelForCausalLM.from_config(AutoConfig.for_model(**TINY[arch]))
        model.save_pretrained(root / arch)
        out[arch] = root / arch
    return out


@pytest.mark.parametrize("quantization", ["4bit", "8bit"])
@pytest.mark.parametrize("arch", ["llama", "gemma2", "gpt2"])
def test_quantized_loads_match(arch, quantization, saved_tiny_models, peft):
    pytest.importorskip("bitsandbytes")
    import torch
    from transformers import AutoModelForCausalLM, BitsAndBytesConfig

    if quantization == "4bit":
        bnb = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_compute_dtype=torch.float32)
    else:
        bnb = BitsAndBytesConfig(load_in_8bit=True)
    folder = saved_tiny_models[arch]
    for lora in ({}, {"use_dora": True, "modules_to_save": ["lm_head"], "bias": "all"}):
        model = AutoModelForCausalLM.from_pretrained(folder, quantization_config=bnb, device_map="cpu")
        assert any("bit" in type(m).__name__ for m in model.modules())   # really quantized
        run = RunConfig.from_dict({"model": {"name_or_path": str(folder), "quantization": quantization},
                                   "lora": lora})
        wrapped = peft.get_peft_model(model, peft.LoraConfig(**dataclasses.asdict(run.lora)))
        assert ours(folder, lora, quantization=quantization) == wrapped.get_nb_trainable_parameters()
