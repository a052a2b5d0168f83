"""Keep it and ship it, for each method beyond SFT (slow: trains each once): `finetune merge` gives the logits
of base + adapter, and `finetune push` (its adapter, and merged) sends the weights, the run file and a model
card that names the method with its settings, through a fake HfApi: the network boundary."""

import pytest
import yaml
from method_runs import method_run

from finetune.cli import main

pytestmark = pytest.mark.slow

# The card's Method cell for each run of tests/method_runs.py: TRL's defaults filled in beside what it set.
METHOD_CELLS = {
    "dpo": "DPO (Direct Preference Optimization, on chosen/rejected pairs); beta 0.1, loss_type sigmoid",
    "kto": "KTO (Kahneman-Tversky Optimization, on answers labelled good or bad); beta 0.1, loss_type kto, "
           "desirable_weight 1, undesirable_weight 1",
    "orpo": "ORPO (Odds Ratio Preference Optimization, on chosen/rejected pairs); beta 0.1",
    "grpo": "GRPO (Group Relative Policy Optimization: generated answers scored by rewards); beta 0, loss_type "
            "dapo, num_generations 4, max_completion_length 16, temperature 1, top_p 1; rewards: contains (text "
            "`helper`, weight 1)",
}


@pytest.fixture(scope="module", params=sorted(METHOD_CELLS))
def run(request, tmp_path_factory):
    return request.param, method_run(tmp_path_factory, request.param)


class FakeApi:
    """huggingface_hub.HfApi as far as a push calls it: keeps the calls and the files of the one commit."""

    made: list["FakeApi"] = []

    def __init__(self, token=None):
        self.token, self.calls, self.files = token, [], {}
        FakeApi.made.append(self)

    def create_repo(self, **kwargs):
        self.calls.append("create_repo")
        return type("Url", (), {"url": f"https://huggingface.co/{kwargs['repo_id']}"})()

    def upload_folder(self, **kwargs):
        from pathlib import Path

        self.calls.append("upload_folder")
        self.files = {p.name: p.read_bytes() for p in Path(kwargs["folder_path"]).iterdir()}


@pytest.fixture
def fake_api(monkeypatch):
    import huggingface_hub

    FakeApi.made = []
    monkeypatch.setattr(huggingface_hub, "HfApi", FakeApi)   # what adapter/hub.py builds when given no api
    return FakeApi.made


def test_merge_gives_the_logits_of_base_plus_adapter(run, tmp_path, capsys):
    import torch
    from transformers import AutoModelForCausalLM

    from finetune.adapter.generate import load
    from finetune.adapter.source import find_adapter

    name, folder = run
    out = tmp_path / "merged"
    assert main(["merge", str(folder), "--out", str(out)]) == 0, capsys.readouterr().err
    merged = AutoModelForCausalLM.from_pretrained(out).eval()
    adapter = load(find_adapter(folder)).model
    batch = torch.randint(0, merged.config.vocab_size, (2, 24), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        merged_logits, adapter_logits = merged(batch).logits, adapter(batch).logits
        with adapter.disable_adapter():
            base_logits = adapter(batch).logits
    assert (merged_logits - adapter_logits).abs().max().item() < 1e-4, name
    assert (adapter_logits - base_logits).abs().max().item() > 1e-3, name   # the adapter moved something


@pytest.mark.parametrize("merged", [False, True])
def test_push_sends_a_card_that_names_the_method_and_its_settings(run, fake_api, merged, capsys):
    from huggingface_hub import ModelCard

    name, folder = run
    repo = f"alice/demo-{name}"
    assert main(["push", str(folder), "--repo-id", repo, "--token", "hf_alice", *(["--merged"] if merged else [])]) \
        == 0, capsys.readouterr().err
    (api,) = fake_api
    assert api.token == "hf_alice" and api.calls == ["create_repo", "upload_folder"]
    weights = {"model.safetensors", "config.json"} if merged else {"adapter_model.safetensors",
                                                                   "adapter_config.json"}
    assert weights | {"README.md", "run.yaml", "loss.png"} <= set(api.files)
    assert yaml.safe_load(api.files["run.yaml"])["method"]["name"] == name
    text = api.files["README.md"].decode("utf-8")
    card = ModelCard(text)   # the Hub's own parser reads its metadata
    assert name in card.data.tags and card.data.library_name == ("transformers" if merged else "peft")
    assert f"| Method | {METHOD_CELLS[name]} |" in text, text
    limit = "prompts of up to 64 tokens" if name == "grpo" else "up to 64 tokens per example"   # GRPO's: whole
    assert f"| Dataset | the built-in demo dataset of LoRA Launchpad, format `auto`, {limit} |" in text, text
