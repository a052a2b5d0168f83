"""Try it, keep it, ship it, on the demo model: an adapter trained to answer one fixed phrase says it and its
base model does not (CLI `generate --compare`); the merged model's logits equal base + adapter; the model card
holds the run file and the exact count; a push goes through the real HfApi up to a fake HTTP transport."""

import json
import shutil

import pytest
import yaml
from adapter_run import PHRASE, QUESTIONS, copy_run, fixed_phrase_run

from finetune.cli import main

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    return fixed_phrase_run(tmp_path_factory)


def test_generate_compare_shows_the_adapter_saying_the_phrase_and_the_base_not(run, capsys):
    for question in QUESTIONS:
        assert main(["generate", str(run), "--prompt", question, "--compare", "--json",
                     "--max-new-tokens", "24"]) == 0
        answers = json.loads(capsys.readouterr().out)
        assert answers["adapter"] == PHRASE
        assert answers["base"] and PHRASE not in answers["base"]
    assert main(["generate", str(run), "--prompt", QUESTIONS[0], "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == {"adapter": PHRASE}   # base only with --compare


def test_generate_refuses_bad_settings_in_one_line_each(run, tmp_path, capsys):
    assert main(["generate", str(run), "--prompt", "hi", "--max-new-tokens", "0", "--temperature", "-1"]) == 2
    err = capsys.readouterr().err.splitlines()
    assert err == ["error: max_new_tokens: must be a whole number >= 1 and <= 2048, got 0",
                   "error: temperature: must be a number >= 0 and <= 5, got -1.0"]
    assert main(["generate", str(tmp_path / "nowhere"), "--prompt", "hi"]) == 2
    assert "no such folder" in capsys.readouterr().err


def test_a_running_run_offers_its_newest_checkpoint(run, tmp_path):
    from finetune.adapter.source import find_adapter
    from finetune.errors import RunFileError
    from finetune.train.runfolder import RunFolder

    folder = copy_run(run, tmp_path)
    for saved in [folder / "adapter", *folder.glob("checkpoint-*")]:
        shutil.rmtree(saved)
    with pytest.raises(RunFileError, match="no adapter to try"):
        find_adapter(folder)
    RunFolder(folder).write_status(state="running")
    shutil.copytree(run / "adapter", folder / "checkpoint-7")
    source = find_adapter(folder)
    assert source.checkpoint == 7 and source.label == "checkpoint-7 (running)"


def test_merged_model_gives_the_logits_of_base_plus_adapter(run, tmp_path, capsys):
    import torch
    from transformers import AutoModelForCausalLM

    from finetune.adapter.generate import load
    from finetune.adapter.source import find_adapter

    out = tmp_path / "merged"
    assert main(["merge", str(run), "--out", str(out)]) == 0
    assert "float32" in capsys.readouterr().out
    assert (out / "model.safetensors").is_file() and (out / "tokenizer_config.json").is_file()
    merged = AutoModelForCausalLM.from_pretrained(out).eval()
    peft_model = load(find_adapter(run)).model
    batch = torch.randint(0, merged.config.vocab_size, (4, 32), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        diff = (merged(batch).logits - peft_model(batch).logits).abs().max().item()
    assert diff < 1e-4
    assert main(["merge", str(run), "--out", str(out)]) == 2   # never over an existing model
    assert "already holds files" in capsys.readouterr().err


def test_a_4bit_run_merges_into_the_16_bit_base_and_says_so(run, tmp_path, capsys):
    from transformers import AutoModelForCausalLM

    folder = copy_run(run, tmp_path)   # the same adapter, as if its base had been loaded in 4-bit
    settings = yaml.safe_load((folder / "run.yaml").read_text())
    settings["model"]["quantization"] = "4bit"
    (folder / "run.yaml").write_text(yaml.safe_dump(settings))
    out = tmp_path / "merged-4bit"
    assert main(["merge", str(folder), "--out", str(out)]) == 0
    captured = capsys.readouterr()
    assert "bfloat16" in captured.out and "quantization is 4bit" in captured.err
    model = AutoModelForCausalLM.from_pretrained(out)
    assert str(model.dtype) == "torch.bfloat16" and getattr(model.config, "quantization_config", None) is None


def test_the_model_card_holds_the_run_file_the_count_and_the_curve(run, tmp_path):
    from huggingface_hub import ModelCard

    from finetune.adapter.card import loss_png, render
    from finetune.adapter.source import find_adapter
    from finetune.model.count import count_run

    source = find_adapter(run)
    text = render(source, "alice/mouse-adapter")
    card = ModelCard(text)   # the Hub's own parser reads its metadata
    assert card.data.library_name == "peft" and "lora" in card.data.tags
    count = count_run(source.run)
    assert f"{count.trainable:,} of {count.total:,}" in text
    assert source.run.to_yaml().strip() in text
    assert "Training loss | final" in text and "PeftModel.from_pretrained(base, \"alice/mouse-adapter\")" in text
    assert "| peft |" in text and "| transformers |" in text
    assert loss_png(source.folder.read_metrics(), tmp_path / "loss.png")
    assert (tmp_path / "loss.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


class FakeHub:
    """The Hub's HTTP API as far as a push needs it, behind httpx's MockTransport: records every request."""

    def __init__(self, refuse: int | None = None):
        self.requests, self.refuse = [], refuse

    def __call__(self, request):
        import httpx2 as httpx

        body = request.content.decode("utf-8", errors="replace")
        self.requests.append((request.method, str(request.url), request.headers.get("authorization"), body))
        path = request.url.path
        if self.refuse and path.startswith(("/api/repos", "/api/models")):
            return httpx.Response(self.refuse, json={"error": "You don't have the rights"})
        if path == "/api/repos/create":
            name = json.loads(body)
            return httpx.Response(200, json={"url": f"https://huggingface.co/{name['organization']}/{name['name']}"})
        if path == "/api/validate-yaml":
            return httpx.Response(200, json={})
        if "/preupload/" in path:
            files = json.loads(body)["files"]
            return httpx.Response(200, json={"files": [{"path": f["path"], "uploadMode": "regular",
                                                         "shouldIgnore": False} for f in files]})
        if "/commit/" in path:
            return httpx.Response(200, json={"commitUrl": "https://huggingface.co/alice/mouse/commit/" + "b" * 40,
                                             "commitOid": "b" * 40})
        return httpx.Response(200, json={})

    def commit(self) -> list[dict]:
        body = next(b for m, url, _, b in self.requests if "/commit/" in url)
        return [json.loads(line) for line in body.splitlines()]


@pytest.fixture
def fake_hub(monkeypatch):
    import httpx2 as httpx
    import huggingface_hub
    from huggingface_hub import constants

    hub = FakeHub()
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    huggingface_hub.set_client_factory(lambda: httpx.Client(transport=httpx.MockTransport(hub)))
    yield hub
    huggingface_hub.set_client_factory(huggingface_hub.utils._http.default_client_factory)


def test_push_sends_the_adapter_card_and_run_file_with_the_given_token(run, tmp_path, fake_hub):
    from finetune.adapter.hub import push_recorded, read_push

    folder = copy_run(run, tmp_path)
    record = push_recorded(folder, "alice/mouse", token="hf_alice", private=True, merged=False)
    assert record["state"] == "pushed" and record["url"] == "https://huggingface.co/alice/mouse"
    assert read_push(folder)["state"] == "pushed"
    hub_requests = [r for r in fake_hub.requests if "agent-harnesses" not in r[1]]
    assert {url.split("/")[2] for _, url, _, _ in hub_requests} == {"huggingface.co"}
    assert all(auth == "Bearer hf_alice" for _, _, auth, _ in hub_requests)
    create = json.loads(next(b for _, url, _, b in hub_requests if url.endswith("/api/repos/create")))
    assert create == {**create, "name": "mouse", "organization": "alice", "type": "model"}
    assert create.get("visibility") == "private" or create.get("private") is True
    operations = fake_hub.commit()
    assert operations[0]["key"] == "header" and "LoRA adapter" in operations[0]["value"]["summary"]
    files = {op["value"]["path"] for op in operations if op["key"] == "file"}
    assert {"README.md", "adapter_config.json", "adapter_model.safetensors", "run.yaml", "loss.png",
            "tokenizer_config.json"} <= files
    assert not any(name.startswith(("optimizer", "scheduler", "rng_state")) for name in files)


def test_a_refused_push_is_one_line_and_recorded(run, tmp_path, fake_hub, capsys):
    from finetune.adapter.hub import read_push

    fake_hub.refuse = 403
    folder = copy_run(run, tmp_path)
    assert main(["push", str(folder), "--repo-id", "alice/mouse"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "refused the token (HTTP 403)" in err[0]
    assert read_push(folder)["state"] == "failed"
    assert main(["push", str(folder), "--repo-id", "not a repo"]) == 2


class RecordingApi:
    """An HfApi stand-in that keeps the calls and the staged folder's files."""

    def __init__(self, token=None):
        self.token, self.calls, self.files = token, [], {}

    def create_repo(self, **kwargs):
        self.calls.append(("create_repo", kwargs))
        return type("Url", (), {"url": f"https://huggingface.co/{kwargs['repo_id']}"})()

    def upload_folder(self, **kwargs):
        from pathlib import Path

        self.calls.append(("upload_folder", kwargs))
        self.files = {p.name: p.read_bytes() for p in Path(kwargs["folder_path"]).iterdir()}


def test_push_merged_uploads_full_weights_with_a_transformers_card(run, tmp_path):
    from finetune.adapter.hub import push_run

    api = RecordingApi()
    url = push_run(copy_run(run, tmp_path), "alice/mouse-merged", merged=True, api=api)
    assert url == "https://huggingface.co/alice/mouse-merged"
    assert [c[0] for c in api.calls] == ["create_repo", "upload_folder"]
    assert api.calls[0][1] == {"repo_id": "alice/mouse-merged", "repo_type": "model", "private": False,
                               "exist_ok": True}
    assert {"model.safetensors", "config.json", "README.md", "run.yaml"} <= set(api.files)
    assert "adapter_config.json" not in api.files
    assert b"library_name: transformers" in api.files["README.md"]


def test_push_when_done_uses_the_machine_login_locally_and_never_the_space_token(run, tmp_path):
    from finetune.adapter.hub import push_when_done, read_push
    from finetune.adapter.keeper import Keeper, launch_problem
    from finetune.jobs import JobManager
    from finetune.runfile import parse_run

    folder = copy_run(run, tmp_path / "runs")
    settings = yaml.safe_load((folder / "run.yaml").read_text())
    settings["hub"] = {"repo_id": "alice/auto", "private": True}
    (folder / "run.yaml").write_text(yaml.safe_dump(settings))

    api = RecordingApi()
    assert push_when_done(folder, env={"SPACE_ID": "owner/space"}, api=api) is None and not api.calls
    assert push_when_done(folder, env={}, api=api)["state"] == "pushed"
    assert api.calls[0][1]["private"] is True

    run_cfg = parse_run(yaml.safe_dump(settings))
    space = {"SPACE_ID": "owner/space"}
    assert "needs your own Hugging Face sign-in" in launch_problem(run_cfg, None, space)
    assert launch_problem(run_cfg, "hf_visitor", space) is None and launch_problem(run_cfg, None, {}) is None
    jobs = JobManager(tmp_path / "runs")
    made = []
    keeper = Keeper(jobs, poll_interval=3600, env=space, api_factory=lambda token: made.append(RecordingApi(token))
                    or made[-1])
    try:
        keeper.remember(folder.name, run_cfg, "hf_visitor")
        assert read_push(folder)["state"] == "waiting"
        keeper.poll()   # the run is completed: pushed with the visitor's token
        assert [api.token for api in made] == ["hf_visitor"] and read_push(folder)["state"] == "pushed"
        assert keeper.pending() == []
    finally:
        keeper.shutdown()
        jobs.shutdown()


def test_repo_ids_and_space_notices():
    from finetune.errors import RunFileError
    from finetune.runfile import parse_run
    from finetune.space import notices

    assert parse_run("hub: {repo_id: alice/my-adapter}").hub.repo_id == "alice/my-adapter"
    for bad in ("my-adapter", "alice/bad--name", "alice/-x", "a/b/c"):
        with pytest.raises(RunFileError, match=r"hub\.repo_id: "):
            parse_run(f"hub: {{repo_id: {bad}}}")
    zero = notices({"SPACE_ID": "a/b", "SPACES_ZERO_GPU": "true"})
    assert "ZeroGPU" in zero[0] and "dedicated GPU hardware" in zero[0]
    assert "Storage Bucket" in zero[1]
    assert notices({"SPACE_ID": "a/b", "FINETUNE_RUNS_DIR": "/data/runs"}) == [] and notices({}) == []
