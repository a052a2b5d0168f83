"""Threat: on a Space, anyone fills the disk through Gradio's own upload route. Before, /gradio_api/upload took
200 MB files from anyone, as many as they sent, before any sign-in check: ten 20 MB files from a signed-out
visitor took 1.6 s and put 211 MB on disk. Now a visitor who may not upload datasets may upload only what the
page's open features need, a run file ("Load a run file"): one file of at most ~1 MB per request, a few an
hour (finetune/ui/upload_gate.py). Signed-in allowed users, and everyone locally, upload as before."""

import time

import httpx
import pytest
from appserver import serve_app

from finetune.runfile.limits import MAX_BYTES
from finetune.ui import upload_gate
from security.space_app import SPACE_ENV, session_cookie

MB = 1024 * 1024
RUN_FILE = b"model: {name_or_path: demo}\nlora: {r: 8}\n"


def disk(folder) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def upload(http, url, *files, client="203.0.113.7", **kwargs):
    """POST files [(name, bytes)] as the page does; `client`: the visitor's address as the Space's proxy names it."""
    return http.post(f"{url}/gradio_api/upload", files=[("files", f) for f in files],
                     headers={"X-Forwarded-For": f"10.0.0.1, {client}"}, **kwargs)


@pytest.fixture(scope="module")
def space(tmp_path_factory):
    root = tmp_path_factory.mktemp("space-uploads")
    cache = root / "gradio"
    with serve_app(root / "runs", env={**SPACE_ENV, "GRADIO_TEMP_DIR": str(cache)}) as url:
        yield url, cache


@pytest.mark.slow
def test_a_signed_out_visitor_stores_no_large_file(space):
    url, cache = space
    before, started, answers = disk(cache), time.perf_counter(), []
    with httpx.Client(timeout=60) as http:
        for i in range(10):
            try:
                answers.append(upload(http, url, (f"big{i}.jsonl", b"x" * (20 * MB)), client=f"198.51.100.{i}")
                               .status_code)
            except httpx.TransportError:   # refused before the body was read: the server may close first
                answers.append("closed")
    seconds, stored = time.perf_counter() - started, disk(cache) - before
    print(f"ten 20 MB uploads, signed out: {seconds:.2f} s, {stored / MB:.2f} MB stored, answers {answers}")
    assert all(a in (413, "closed") for a in answers) and stored == 0


@pytest.mark.slow
def test_a_signed_out_visitor_loads_a_run_file_a_few_times_an_hour(space):
    url, _ = space
    with httpx.Client(timeout=60) as http:
        answer = upload(http, url, ("mine.yaml", RUN_FILE), client="203.0.113.1")
        assert answer.status_code == 200, answer.text
        [stored] = answer.json()
        assert http.get(f"{url}/gradio_api/file={stored}").content == RUN_FILE
        codes = [upload(http, url, ("mine.yaml", RUN_FILE), client="203.0.113.1").status_code
                 for _ in range(upload_gate.PER_CLIENT)]
        assert codes == [200] * (upload_gate.PER_CLIENT - 1) + [429]
        assert upload(http, url, ("mine.yaml", RUN_FILE), client="203.0.113.2").status_code == 200   # someone else


@pytest.mark.slow
def test_a_signed_out_visitor_sends_one_declared_run_file_at_a_time(space):
    url, _ = space
    with httpx.Client(timeout=60) as http:
        many = upload(http, url, *[(f"f{i}.yaml", RUN_FILE) for i in range(50)], client="203.0.113.3")
        assert many.status_code == 413 and "one file at a time" in many.text
        just_over = upload(http, url, ("big.yaml", b"#" * (MAX_BYTES + 70 * 1024)), client="203.0.113.3")
        assert just_over.status_code == 413 and "sign in with Hugging Face to upload datasets" in just_over.text
        def chunks():   # no Content-Length: a length only known once it has been written to disk
            yield b"--x\r\nContent-Disposition: form-data; name=\"files\"; filename=\"a.yaml\"\r\n\r\nr: 8\r\n--x--\r\n"
        chunked = http.post(f"{url}/gradio_api/upload", content=chunks(),
                            headers={"Content-Type": "multipart/form-data; boundary=x"})
        assert chunked.status_code == 411


@pytest.mark.slow
def test_only_signed_in_allowed_users_upload_datasets(space):
    url, cache = space
    data = (b'{"text": "hello"}\n' * 300_000)[: 5 * MB]
    with httpx.Client(cookies=session_cookie("mallory"), timeout=60) as http:
        assert upload(http, url, ("data.jsonl", data)).status_code == 413
    with httpx.Client(cookies=session_cookie("Alice"), timeout=60) as http:   # the owner (names ignore case)
        answer = upload(http, url, ("data.jsonl", data))
        assert answer.status_code == 200, answer.text
        [stored] = answer.json()
        assert stored.startswith(str(cache))


@pytest.mark.slow
def test_locally_anyone_uploads_up_to_the_configured_size(tmp_path):
    with serve_app(tmp_path / "runs", env={"FINETUNE_MAX_UPLOAD_MB": "3"}) as url, httpx.Client(timeout=60) as http:
        assert upload(http, url, ("data.jsonl", b"x" * (2 * MB))).status_code == 200
        assert upload(http, url, ("a.yaml", RUN_FILE), ("b.yaml", RUN_FILE)).status_code == 200
        assert upload(http, url, ("data.jsonl", b"x" * (4 * MB))).status_code == 413   # Gradio's own cap


# --- the gate's rules, without a server ---

def test_the_budget_caps_each_client_and_all_visitors_together():
    now = [0.0]
    budget = upload_gate.Budget(clock=lambda: now[0])
    assert all(budget.take("a", 1000) is None for _ in range(upload_gate.PER_CLIENT))
    assert "uploads an hour" in budget.take("a", 1000)
    assert budget.take("b", 1000) is None
    now[0] = upload_gate.WINDOW_S + 1   # an hour later, the first ones are forgotten
    assert budget.take("a", 1000) is None
    clients = iter(range(10**6))
    while budget.take(f"c{next(clients)}", MB) is None:
        pass
    assert len(budget.recent) <= upload_gate.ALL_COUNT
    assert sum(n for *_, n in budget.recent) <= upload_gate.ALL_BYTES
    assert "no more uploads" in budget.take("fresh", MB)


def test_the_gate_knows_the_route_the_session_and_the_client():
    from starlette.datastructures import Headers

    assert all(map(upload_gate.is_upload_route, ["/gradio_api/upload", "//gradio_api//upload/", "/x/gradio_api/upload"]))
    assert not any(map(upload_gate.is_upload_route, ["/gradio_api/upload_progress", "/gradio_api/queue/join"]))
    info = {"userinfo": {"preferred_username": "alice"}, "expires_at": time.time() + 60}
    assert upload_gate.signed_in_user({"session": {"oauth_info": info}}) == "alice"
    assert upload_gate.signed_in_user({"session": {"oauth_info": {**info, "expires_at": time.time() - 1}}}) is None
    assert upload_gate.signed_in_user({}) is None   # no sign-in on this app: nobody
    scope = {"client": ("10.1.2.3", 5000)}
    forwarded = Headers({"x-forwarded-for": "1.1.1.1, 203.0.113.9"})
    assert upload_gate.client_of(scope, forwarded, SPACE_ENV) == "203.0.113.9"   # the proxy's entry, not the visitor's
    assert upload_gate.client_of(scope, forwarded, {}) == "10.1.2.3"   # not a Space: the header is anyone's


def test_the_gate_hands_gradio_the_body_it_read():
    """The middleware on a bare app: what it lets through arrives whole; locally it reads nothing."""
    from starlette.applications import Starlette
    from starlette.middleware import Middleware
    from starlette.responses import PlainTextResponse
    from starlette.routing import Route
    from starlette.testclient import TestClient

    async def echo(request):
        return PlainTextResponse(str(len(await request.body())))

    def app(env):
        return Starlette(routes=[Route("/gradio_api/upload", echo, methods=["POST"])],
                         middleware=[Middleware(upload_gate.UploadGate, env=env)])

    with TestClient(app(SPACE_ENV)) as http:
        one = http.post("/gradio_api/upload", files=[("files", ("a.yaml", RUN_FILE))])
        assert one.status_code == 200 and int(one.text) == int(one.request.headers["content-length"])
        two = http.post("/gradio_api/upload", files=[("files", ("a.yaml", RUN_FILE)), ("files", ("b.yaml", RUN_FILE))])
        assert two.status_code == 413
    with TestClient(app({})) as http:
        big = http.post("/gradio_api/upload", files=[("files", ("d.jsonl", b"x" * (3 * MB)))])
        assert big.status_code == 200 and int(big.text) > 3 * MB
