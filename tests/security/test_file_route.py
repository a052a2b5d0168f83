"""Threat: on a Space, anyone reads the run folders through Gradio's file routes. Before, app.py gave Gradio
`allowed_paths=[runs_dir]` so that the adapter zip could be downloaded, and a signed-out visitor fetched
`/gradio_api/file=<runs>/.uploads/<someone's data>.jsonl`, train.log, status.json's hidden error, run.yaml,
push.json and the adapter (200, with the rows). Now the runs folder is never servable (not allowed, and
blocked as defence in depth, even where Gradio's own cache folder holds it), and a download is a short-lived
copy in Gradio's cache, handed only to a visitor the sign-in rule lets download.

The app here is a Space with Gradio's real sign-in; its runs are in its working directory and inside
GRADIO_TEMP_DIR (the folder Gradio serves its uploads from), the hardest place for them to hide."""

import http.client
import os
import urllib.parse

import httpx
import pytest
from appserver import serve_app

from security.space_app import MARK, RUN, SPACE_ENV, secret_runs, session_cookie


@pytest.fixture(scope="module")
def space(tmp_path_factory):
    cwd = tmp_path_factory.mktemp("space")
    temp = cwd / "data"   # GRADIO_TEMP_DIR: Gradio serves what it stored here
    runs = temp / "runs"
    files = secret_runs(runs)
    os.symlink(runs / RUN, temp / "link")   # a link in a served folder, pointing into a run
    with serve_app("data/runs", env={**SPACE_ENV, "GRADIO_TEMP_DIR": str(temp)}, cwd=cwd) as url:
        yield url, cwd, temp, runs, files


def raw_get(url: str, target: str, method: str = "GET") -> tuple[int, bytes]:
    """One request with `target` sent exactly as written (no client-side `..` folding or re-encoding)."""
    host = urllib.parse.urlsplit(url)
    conn = http.client.HTTPConnection(host.hostname, host.port, timeout=30)
    try:
        conn.request(method, target)
        answer = conn.getresponse()
        return answer.status, answer.read()
    finally:
        conn.close()


def targets(cwd, temp, runs, name: str) -> list[str]:
    """Every way to name one file of the runs folder to Gradio's file-serving routes."""
    path = (runs / name).as_posix()
    inside_temp = (runs / name).relative_to(temp).as_posix()
    up = "../" * len(runs.parts)
    return [
        f"/gradio_api/file={path}",
        f"/gradio_api/file={(runs / name).relative_to(cwd).as_posix()}",   # relative to the working directory
        f"/file={path}",
        f"/gradio_api/file/{path}",   # Gradio's deprecated spelling
        f"/gradio_api/file={urllib.parse.quote(path, safe='')}",
        f"/gradio_api/file={temp.as_posix()}/nothing/../{inside_temp}",
        f"/gradio_api/file={temp.as_posix()}/nothing/%2e%2e/{inside_temp}",
        f"/gradio_api/file={urllib.parse.quote(temp.as_posix() + '/nothing/../' + inside_temp, safe='')}",
        f"/gradio_api/file={temp.as_posix()}//{inside_temp}",
        f"/gradio_api/file={temp.as_posix()}/link/{name.split('/', 1)[1]}" if name.startswith(RUN) else
        f"/gradio_api/file={temp.as_posix()}/./{inside_temp}",
        f"/static/{urllib.parse.quote(up + path.lstrip('/'), safe='')}",
        f"/assets/{urllib.parse.quote(up + path.lstrip('/'), safe='')}",
        f"/gradio_api/proxy={path}",
    ]


@pytest.mark.slow
def test_no_file_of_the_runs_folder_is_served_by_any_route(space):
    url, cwd, temp, runs, files = space
    assert {f"{RUN}/train.log", f"{RUN}/status.json", f"{RUN}/run.yaml", f"{RUN}/push.json", f"{RUN}/adapter.zip",
            f"{RUN}/adapter/adapter_config.json", ".uploads/20260101-000000-bob.jsonl"} <= set(files)
    served = []
    for name in files:
        for target in targets(cwd, temp, runs, name):
            for method in ("GET", "HEAD"):
                status, body = raw_get(url, target, method)
                if status < 400 or MARK.encode() in body:
                    served.append(f"{method} {target} -> {status}")
    assert served == []


@pytest.mark.slow
def test_a_file_gradio_stored_itself_is_still_served(space):
    """The routes still work for what Gradio is meant to serve: a file uploaded to its own cache."""
    url, *_ = space
    with httpx.Client(cookies=session_cookie("alice"), timeout=30) as http:
        answer = http.post(f"{url}/gradio_api/upload", files={"files": ("mine.yaml", b"lora: {r: 8}\n")})
        assert answer.status_code == 200, answer.text
        [stored] = answer.json()
        assert http.get(f"{url}/gradio_api/file={stored}").content == b"lora: {r: 8}\n"


def watch_poll(url: str, cookies: dict | None = None) -> dict:
    """What the page's watch poll answers for the finished run: {elem_id or component id: value}."""
    with httpx.Client(cookies=cookies, timeout=60) as http:
        config = http.get(f"{url}/config").json()
        elem = {c["id"]: c.get("props", {}).get("elem_id") for c in config["components"]}
        select = next(i for i, e in elem.items() if e == "run-select")
        [dep] = [d for d in config["dependencies"]
                 if [select, "change"] in [list(t) for t in d["targets"]] and len(d["outputs"]) > 4]
        [load] = [d for d in config["dependencies"] if "load" in [t[1] for t in d["targets"]] and select in d["outputs"]]
        session = f"watch-{len(str(cookies))}"
        answer = http.post(f"{url}/gradio_api/run/predict",   # the page opens: its run list is read
                           json={"fn_index": load["id"], "data": [], "session_hash": session})
        assert answer.status_code == 200, answer.text
        answer = http.post(f"{url}/gradio_api/run/predict",
                           json={"fn_index": dep["id"], "data": [RUN, {}], "session_hash": session})
        assert answer.status_code == 200, answer.text
        return {elem.get(out) or out: value for out, value in zip(dep["outputs"], answer.json()["data"], strict=True)}


@pytest.mark.slow
def test_only_a_visitor_allowed_to_download_is_handed_the_adapter(space):
    url, _, temp, runs, _ = space
    for visitor in (None, session_cookie("mallory")):
        update = watch_poll(url, visitor)["adapter-download"]
        assert not update.get("value") and update.get("visible") is False
    update = watch_poll(url, session_cookie("alice"))["adapter-download"]
    handed = update["value"]["path"]
    assert handed.startswith(str(temp)) and not handed.startswith(str(runs))   # a copy in Gradio's cache
    assert handed.endswith(f"{RUN}-adapter.zip")
    with httpx.Client(timeout=30) as http:   # the link itself works for whoever holds it, for a while
        link = update["value"]["url"]
        got = http.get(link if link.startswith("http") else url + link)
    assert got.status_code == 200 and got.content == (runs / RUN / "adapter.zip").read_bytes()
