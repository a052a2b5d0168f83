"""Downloads are handed out, never served from the runs folder (finetune/ui/downloads.py): the adapter's and
the merged model's zips reach the page as a link (or copy) in a random folder of Gradio's cache, named after
the run, after the handler has checked the sign-in rule. Before, the DownloadButton pointed into the runs
folder, which had to be an allowed path, and so was everyone's."""

import os
from pathlib import Path

import gradio as gr
import pytest

from finetune.ui import downloads, keep
from security.space_app import RUN, secret_runs


@pytest.fixture
def cache(tmp_path, monkeypatch):
    folder = tmp_path / "gradio-cache"
    monkeypatch.setenv("GRADIO_TEMP_DIR", str(folder))   # Gradio's cache, read at each call
    return folder


def test_a_handout_is_a_link_in_a_random_folder_of_gradio_s_cache(tmp_path, cache, monkeypatch):
    source = tmp_path / "runs" / "adapter.zip"
    source.parent.mkdir()
    source.write_bytes(b"zip bytes")
    first = downloads.handout(source, "run-adapter.zip")
    assert first.startswith(str(cache / downloads.FOLDER)) and first.endswith("/run-adapter.zip")
    assert os.path.samefile(first, source)   # no second copy of a 2 GB zip
    assert downloads.handout(source, "run-adapter.zip", reuse=first) == first   # the page's next poll
    assert downloads.handout(source, "run-adapter.zip") != first   # another page: its own random folder
    new = tmp_path / "new.zip"
    new.write_bytes(b"new zip bytes")
    new.replace(source)   # the run changed: its zip is rewritten
    again = downloads.handout(source, "run-adapter.zip", reuse=first)
    assert again != first and Path(again).read_bytes() == b"new zip bytes"
    assert downloads.handout(source, "x.zip", reuse=str(source)) != str(source)   # only its own handouts


def test_across_file_systems_a_handout_is_a_copy(tmp_path, cache, monkeypatch):
    source = tmp_path / "adapter.zip"
    source.write_bytes(b"zip bytes")

    def no_link(*_):
        raise OSError(18, "Invalid cross-device link")

    monkeypatch.setattr(downloads.os, "link", no_link)
    copy = downloads.handout(source, "a.zip")
    assert not os.path.samefile(copy, source) and Path(copy).read_bytes() == b"zip bytes"


@pytest.mark.slow
def test_the_merged_model_is_handed_out_outside_the_runs_folder(tmp_path, cache, monkeypatch):
    from finetune.jobs import JobManager
    from finetune.ui import build_page

    runs = tmp_path / "runs"
    secret_runs(runs)

    def merged(args, token=None):   # what `python -m finetune merge` leaves (the merge itself: tests/adapter/test_adapter.py)
        out = args[args.index("--out") + 1]
        Path(out).mkdir()
        (Path(out) / "model.safetensors").write_bytes(b"weights" * 100)
        return 0, "merged into the base model", ""

    monkeypatch.setattr(keep, "run_cli", merged)
    monkeypatch.delenv("SPACE_ID", raising=False)
    jobs = JobManager(runs)
    try:
        demo, _ = build_page(jobs)
        [on_merge] = [f.fn for f in demo.fns.values() if getattr(f.fn, "__name__", "") == "on_merge"]
        *_, (_, button) = on_merge(RUN, None)
        handed = button.constructor_args["value"]
        assert handed.startswith(str(cache)) and handed.endswith(f"/{RUN}-merged.zip")
        assert not handed.startswith(str(runs))
        assert Path(handed).read_bytes() == (runs / RUN / "merged.zip").read_bytes()
        monkeypatch.setenv("SPACE_ID", "alice/space")   # by hand, not a real Space: nobody may merge
        with pytest.raises(gr.Error, match="merge runs"):
            list(on_merge(RUN, None))
    finally:
        jobs.shutdown()
