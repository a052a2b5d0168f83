"""Threat: anyone floods the app's log. A page event whose input names a file Gradio did not store (a made-up
path: /etc/passwd, a run's train.log) is refused by Gradio, but each refusal printed a ~25-line traceback;
a script sending them wrote the log full; a URL in place of the path was downloaded into Gradio's cache
(any size: past the upload gate). Now each is refused in one line (finetune/ui/page.py), and the visitor reads
that their request was refused."""

import json

import httpx
import pytest
from appserver import serve_app

from finetune.ui.page import REFUSED


def events_taking_files(url: str) -> list[dict]:
    """The page's events whose first input is a file (Load a run file, the data upload)."""
    config = httpx.get(f"{url}/config", timeout=30).json()
    kinds = {c["id"]: c["type"] for c in config["components"]}
    return [d for d in config["dependencies"] if d["inputs"] and kinds[d["inputs"][0]] in ("uploadbutton", "file")]


def forged(url: str, dep: dict, path: str, session: str) -> dict:
    """Join the queue with `path` as the event's file, as a script would; the event's final message."""
    fake = {"path": path, "meta": {"_type": "gradio.FileData"}, "orig_name": "run.yaml"}
    data = [fake] + [{} for _ in dep["inputs"][1:]]
    with httpx.Client(timeout=60) as http:
        joined = http.post(f"{url}/gradio_api/queue/join",
                           json={"data": data, "fn_index": dep["id"], "session_hash": session, "trigger_id": None})
        assert joined.status_code == 200, joined.text
        with http.stream("GET", f"{url}/gradio_api/queue/data", params={"session_hash": session}) as stream:
            for line in stream.iter_lines():
                if line.startswith("data:") and '"process_completed"' in line:
                    return json.loads(line[5:])
    raise AssertionError("the event never completed")


@pytest.mark.slow
def test_each_made_up_file_path_is_one_log_line(tmp_path):
    runs = tmp_path / "runs"
    secret = runs / "20260101-000000-demo-r8" / "train.log"
    secret.parent.mkdir(parents=True)
    secret.write_text("a line of someone's data\n")
    with serve_app(runs) as url:
        [log] = tmp_path.glob("app-*.log")
        deps = events_taking_files(url)
        assert len(deps) == 2
        before = log.read_text().splitlines()
        # A URL would be downloaded into Gradio's cache, any size (here, offline, its download fails)
        paths = ["/etc/passwd", str(secret), "../../../../etc/hostname", "/nonexistent/x.yaml",
                 "https://huggingface.co/datasets/x/resolve/main/huge.bin"]
        for n, path in enumerate(paths * 3):
            answer = forged(url, deps[n % 2], path, f"flood-{n}")
            assert answer["success"] is False and answer["output"]["error"] == REFUSED
        added = log.read_text().splitlines()[len(before):]
    print(f"{len(paths) * 3} forged requests -> {len(added)} log lines")
    assert not any("Traceback" in line for line in added), "\n".join(added[:40])
    assert len(added) == len(paths) * 3 and all(line.endswith(f"refused: {REFUSED}") for line in added)
