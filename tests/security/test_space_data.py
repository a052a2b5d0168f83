"""Threat: on a Space, signed-out visitors read server files and fill the disk. Before, "Preview" read any
data.path (a visitor previewed a private file's lines), uploads stayed in runs/.uploads forever, a large
system folder as data.path ran for minutes, and data errors quoted file content (a CSV's header row, a
message's text). Now, on a Space: previews and uploads need the same sign-in as Launch; runs read only
uploads, the demo and the Hub; uploads are capped and pruned; a folder is bounded; errors quote no values
and reach only users allowed to launch (visitors see no error text or log)."""

import os
import time

import pytest

from finetune.data import uploads
from finetune.data.files import check_folder
from finetune.errors import DataError, RunFileError
from finetune.runfile import RunConfig
from finetune.ui import access

SPACE = {"SPACE_ID": "alice/launchpad", "SYSTEM": "spaces"}


def run_with(data_path="demo", model="demo"):
    return RunConfig.from_dict({"model": {"name_or_path": model}, "data": {"path": data_path}})


@pytest.mark.parametrize("action", ["preview data", "upload datasets", "launch or cancel runs"])
def test_reading_or_storing_needs_the_same_sign_in_as_launch(action):
    allowed, why = access.may_use(None, action, SPACE)
    assert not allowed and why == f"sign in with Hugging Face to {action} on this Space"
    assert access.may_use("Alice", action, SPACE)[0] and not access.may_use("mallory", action, SPACE)[0]
    assert access.may_use(None, action, {})[0]   # locally: anyone


def test_runs_on_a_space_read_only_uploads_the_demo_and_the_hub(tmp_path):
    kept = tmp_path / "runs" / ".uploads" / "20260101-000000-mine.jsonl"
    kept.parent.mkdir(parents=True)
    kept.write_text('{"text": "x"}\n')
    up = kept.parent
    ok = [run_with(), run_with(str(kept)), run_with("HuggingFaceH4/ultrachat_200k", "HuggingFaceTB/SmolLM2-135M")]
    assert all(access.server_path_problems(r, SPACE, up) == [] for r in ok)
    for path in ["/etc/passwd", str(tmp_path), "data/sample.jsonl", f"{up}/../../secret.jsonl", "finetune",
                 str(up / "missing.jsonl")]:
        [problem] = access.server_path_problems(run_with(path), SPACE, up)
        assert problem.startswith("data.path: ") and "is not readable on this Space" in problem
    for model in ["/", str(tmp_path), "finetune/demo/model"]:
        [problem] = access.server_path_problems(run_with(model=model), SPACE, up)
        assert problem.startswith("model.name_or_path: ")
    assert access.server_path_problems(run_with("/etc/passwd"), {}, up) == []   # locally: any path


def test_uploads_are_capped_named_safely_and_pruned_when_stale(tmp_path, monkeypatch):
    runs = tmp_path / "runs"
    src = tmp_path / "my data;rm -rf.jsonl"
    src.write_text('{"text": "hello"}\n' * 100)
    monkeypatch.setenv("FINETUNE_MAX_UPLOAD_MB", "0.001")   # 1 KB
    with pytest.raises(DataError, match=r"over this server's limit of 0 MB"):
        uploads.store(src, runs)
    monkeypatch.delenv("FINETUNE_MAX_UPLOAD_MB")
    assert uploads.max_upload_bytes({}) == 200 * 2**20
    kept = uploads.store(src, runs)
    assert kept.parent == runs / ".uploads" and kept.name.endswith("-my-data-rm--rf.jsonl")
    old_named, old_orphan = uploads.store(src, runs), uploads.store(src, runs)
    (runs / "r1").mkdir()
    (runs / "r1" / "run.yaml").write_text(f"data: {{path: {old_named}}}\n")
    two_days_ago = time.time() - 2 * 86400
    for path in (old_named, old_orphan):
        os.utime(path, (two_days_ago, two_days_ago))
    assert uploads.prune(runs) == [old_orphan]
    assert kept.exists() and old_named.exists() and not old_orphan.exists()


def test_a_large_folder_is_refused_after_a_bounded_look(tmp_path):
    big = tmp_path / "big"
    for i in range(30):
        sub = big / f"d{i}"
        sub.mkdir(parents=True)
        for j in range(100):
            (sub / f"f{j}.txt").touch()
    start = time.perf_counter()
    with pytest.raises(DataError, match="more than 2,000 files and folders"):
        check_folder('data.path: "big"', big)
    assert time.perf_counter() - start < 1
    with pytest.raises(DataError, match=r"holds no \.jsonl"):
        check_folder('data.path: "empty"', big / "d0")


def test_data_errors_describe_the_shape_never_the_values(write_jsonl):
    from finetune.data.formats import check_rows
    from finetune.runfile.data_formats import check_turns

    problem = check_turns([{"role": "user", "text": "MY SECRET DIAGNOSIS"}], "messages")
    assert "SECRET" not in problem and "keys role, text" in problem
    problem = check_turns([{"role": "the patient said I am secret", "content": "x"}], "messages")
    assert "secret" not in problem
    assert '"human"' in check_turns([{"role": "human", "content": "x"}], "messages")   # a label is shown
    with pytest.raises(RunFileError) as info:
        check_rows([{"messages": [{"role": "user", "value": "PRIVATE"}]}], "chat", lambda i: "line 1", "d")
    assert "PRIVATE" not in str(info.value)


def test_visitors_on_a_space_see_no_error_text_or_log():
    status = {"state": "failed", "error": 'data.path: "x.csv": no known format in its columns (alice, 42)'}
    assert access.visitor_status(status, None, SPACE)["error"] == access.HIDDEN_ERROR
    assert access.visitor_status(status, "alice", SPACE) == status
    assert access.visitor_status(status, None, {}) == status   # locally: everyone is the owner
    assert access.visitor_log("secret line", None, SPACE) == access.HIDDEN_LOG
    assert access.visitor_status({"state": "running", "error": None}, None, SPACE)["error"] is None


@pytest.mark.slow
def test_the_page_s_preview_and_upload_handlers_apply_the_rules(tmp_path, monkeypatch):
    """The real event handlers of the built page (not a copy of their rule)."""
    import gradio as gr

    from finetune.ui import build_app

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("SPACE_ID", "alice/launchpad")   # by hand: no sign-in possible, so closed
    monkeypatch.delenv("FINETUNE_PUBLIC", raising=False)
    demo, jobs = build_app(tmp_path / "runs")
    try:
        fns = {f.fn.__name__: f.fn for f in demo.fns.values() if hasattr(f.fn, "__name__")}
        data = tmp_path / "data.jsonl"
        data.write_text('{"text": "hello world"}\n')
        with pytest.raises(gr.Error, match="preview data: turned off"):
            fns["on_preview"]({}, {}, {}, None, None)
        with pytest.raises(gr.Error, match="upload datasets: turned off"):
            fns["on_data_file"](str(data), None)
        assert not (tmp_path / "runs" / ".uploads").exists()
        monkeypatch.setenv("FINETUNE_PUBLIC", "1")   # the owner opened it: still no server paths
        kept = fns["on_data_file"](str(data), None)
        assert kept.startswith(str(tmp_path / "runs" / ".uploads"))
        from finetune.ui.panel import initial

        start = initial()
        values = {**start["values"], "data.path": "/etc/passwd"}
        shown = fns["on_preview"](values, {}, start["info"], None, None)
        assert "is not readable on this Space" in shown and "root:" not in shown
        values["data.path"] = kept   # the upload itself previews
        assert "hello world" in fns["on_preview"](values, {}, start["info"], None, None)
    finally:
        jobs.shutdown()


def test_the_page_reads_no_server_model_folder_on_a_space():
    assert access.model_readable("/root/private-model", {}) and access.model_readable("demo", SPACE)
    assert not access.model_readable("/root/private-model", SPACE) and not access.model_readable("finetune", SPACE)
    assert access.model_readable("HuggingFaceTB/SmolLM2-135M", SPACE)
