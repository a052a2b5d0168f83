"""The served app (python app.py, through gradio_client) while costly input is thrown at it: the alias bomb
and 5 MB documents are refused in one line each, /status keeps answering in under a second, and the app
log gets one line per refusal, never a traceback. Before the fix, one bomb on /count hung the app for
minutes and wrote ~300 MB to its log. A second app, with SPACE_ID set by hand (not a real Space), must
start (it crashed) and fail closed."""

import subprocess
import sys
import time

import pytest
from appserver import ROOT, serve_app

from finetune.train.runfolder import RunFolder
from security.test_parser_limits import BOMB_AS_TARGETS

DONE = "20260101-000000-demo-r8"
ATTACKS = [BOMB_AS_TARGETS, "lora: {r: 8}\n# " + "x" * 5_000_000, "a: " + "[" * 50_000 + "]" * 50_000,
           "a: [" + ", ".join(f"w{i}" for i in range(100_000)) + "]"]


def finished_run(runs_dir, run_id=DONE, **status):
    folder = RunFolder(runs_dir / run_id)
    folder.path.mkdir(parents=True)
    folder.run_yaml.write_text("model: {name_or_path: demo}\n")
    folder.write_status(**{"state": "completed", "step": 3, "max_steps": 3, "error": None, **status})
    for step in (1, 2, 3):
        folder.append_metrics({"step": step, "loss": 3.0 - step / 10})


def client(url):
    from gradio_client import Client

    return Client(url, verbose=False, httpx_kwargs={"timeout": 60})


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    runs = tmp_path_factory.mktemp("attack") / "runs"
    finished_run(runs)
    with serve_app(runs) as url:
        yield url, runs


@pytest.mark.slow
def test_the_bomb_and_5_mb_are_refused_in_one_line_each(app):
    from gradio_client.exceptions import AppError

    api = client(app[0])
    for text, expected in [(ATTACKS[0], "aliases (*a) are not allowed"), (ATTACKS[1], "too large for a run file")]:
        for endpoint in ("/count", "/launch"):
            started = time.perf_counter()
            with pytest.raises(AppError) as info:
                api.predict(text, api_name=endpoint)
            assert time.perf_counter() - started < 5   # a round trip through HTTP; the parse is < 100 ms
            assert expected in str(info.value) and len(str(info.value)) < 300


ATTACKER = """
import sys, time, httpx
sys.path.insert(0, "tests")
from security.test_app_under_load import ATTACKS
url, seconds, n = sys.argv[1], float(sys.argv[2]), int(sys.argv[3])
refused = accepted = 0
with httpx.Client(timeout=60) as http:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        answer = http.post(url + "/gradio_api/run/count", json={"data": [ATTACKS[n % len(ATTACKS)]]})
        refused, accepted = refused + ("error" in answer.json()), accepted + ("error" not in answer.json())
        n += 1
print(refused, accepted)
"""


def call(http, url, endpoint, *data) -> tuple[float, dict]:
    """One plain HTTP call of a named endpoint, as any script would make it: (seconds, JSON answer)."""
    started = time.perf_counter()
    answer = http.post(f"{url}/gradio_api/run/{endpoint}", json={"data": list(data)})
    return time.perf_counter() - started, answer.json()


@pytest.mark.slow
def test_status_answers_within_a_second_during_the_attack(app):
    """Four attacker processes send the bomb, 5 MB, deep and 100k-value documents to /count as fast as the
    app answers, for 15 s; meanwhile /status of a run is timed. (Separate processes: threads of the test
    itself would time the test's own GIL.)"""
    import httpx

    url, _ = app
    with httpx.Client(timeout=30) as http:
        idle = sorted(call(http, url, "status", DONE)[0] for _ in range(10))
        attackers = [subprocess.Popen([sys.executable, "-c", ATTACKER, url, "15", str(i)], cwd=ROOT,
                                      stdout=subprocess.PIPE, text=True) for i in range(4)]
        time.sleep(1)   # let the flood start
        latencies = []
        while any(a.poll() is None for a in attackers):
            seconds, answer = call(http, url, "status", DONE)
            assert answer["data"][0]["state"] == "completed", answer
            latencies.append(seconds)
            time.sleep(0.1)
    counts = [list(map(int, a.communicate()[0].split())) for a in attackers]
    refused, accepted = sum(c[0] for c in counts), sum(c[1] for c in counts)
    latencies.sort()
    print(f"\n/status idle: median {idle[5] * 1000:.0f} ms; during the attack: {len(latencies)} calls, median "
          f"{latencies[len(latencies) // 2] * 1000:.0f} ms, max {latencies[-1] * 1000:.0f} ms; "
          f"{refused} attacks refused")
    assert accepted == 0 and refused >= 8
    # Under 1 s (the bound) for nine calls in ten, and never stalled: this machine is shared, and
    # its own load makes even an idle call take hundreds of ms at times (benchmarks/bench_security.py
    # measures the figures on a quiet machine).
    assert latencies[int(len(latencies) * 0.9)] < 1.0 and latencies[-1] < 3.0


@pytest.mark.slow
def test_user_errors_are_one_log_line_and_a_long_run_id_is_refused(app):
    from gradio_client.exceptions import AppError

    url, runs = app
    api = client(url)
    with pytest.raises(AppError, match="run id: must be a run folder's name"):
        api.predict("a" * 10_000, api_name="/status")
    with pytest.raises(AppError, match="no run"):
        api.predict("no-such-run", api_name="/status")
    with pytest.raises(AppError, match="not valid YAML"):
        api.predict("lora: {r: [1", api_name="/count")
    time.sleep(0.5)
    log = next(runs.parent.glob("app-*.log")).read_text(errors="replace")
    assert "Traceback" not in log
    assert "refused: run id: must be" in log and "refused: no run 'no-such-run'" in log
    assert max(len(line) for line in log.splitlines()) < 600 and len(log) < 1_000_000


@pytest.mark.slow
def test_space_id_set_by_hand_starts_and_fails_closed(tmp_path):
    from gradio_client.exceptions import AppError

    runs = tmp_path / "runs"
    finished_run(runs, "20260101-000001-demo-r8", state="failed", error='data.path: "mine.csv": columns (secret)')
    with serve_app(runs, env={"SPACE_ID": "alice/launchpad"}) as url:   # crashed at start before the fix
        api = client(url)
        assert api.predict("lora: {r: 8}", api_name="/count")["trainable"] > 0   # counting stays open
        with pytest.raises(AppError, match="launch or cancel runs: turned off"):
            api.predict("lora: {r: 8}", api_name="/launch")
        with pytest.raises(AppError, match=r'data\.path: "/etc/passwd" is not readable on this Space'):
            api.predict("data: {path: /etc/passwd}", api_name="/count")
        status = api.predict("20260101-000001-demo-r8", api_name="/status")
        assert status["state"] == "failed" and "secret" not in status["error"]
