"""Costly input against the served app: how fast it is refused, and how the app answers others meanwhile.

    python benchmarks/bench_security.py [--seconds 8] [--only NAME]

1. In process: parse_run() on each costly document (the 334-byte alias bomb used as lora.target_modules, a
   5 MB document, 50,000 nested brackets, 100,000 values, a 5,000-digit integer, a duplicated key); the
   median of 5 in ms. Goal (issue #7): under 100 ms each.
2. Over HTTP, against `python app.py` on 127.0.0.1 (tests/appserver.py): each attack in ATTACKS runs for
   --seconds from attacker processes (threads of this script would time its own GIL), while this script
   times, one after the other every 0.1 s: `GET /`, /status of a finished run, /count of an ordinary run
   file (a new r each time: the skeleton and matching are cached, the count is not), and /count with a
   regex never seen before (it needs a pattern helper, finetune/model/patterns.py). Goal: each under 1 s.
   The first row, "idle", has no attack. Add an attack by adding an Attack to ATTACKS.
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from appserver import serve_app  # noqa: E402
from security.test_app_under_load import ATTACKS as PARSER_ATTACKS  # noqa: E402
from security.test_app_under_load import DONE, finished_run  # noqa: E402
from security.test_parser_limits import REFUSED  # noqa: E402


@dataclass(frozen=True)
class Attack:
    name: str
    payload: Callable[[int, int], str]   # (caller, call) -> the run file it sends to /count
    callers: int = 1                     # calls in flight at once, each caller sending as fast as answered
    processes: int = 1                   # the callers are spread over this many attacker processes


def _regex(caller: int, call: int) -> str:
    return f"lora: {{target_modules: '(.|.)*Z{caller}-{call}'}}"   # new each time: no cached refusal


ATTACKS = [
    Attack("regex (.|.)*Z", _regex),
    Attack("20 concurrent regexes", _regex, callers=20, processes=4),
    Attack("1 MB run file", lambda caller, call: "lora: {r: 8}\n# " + "x" * 1_000_000),
    Attack("parser flood x4", lambda caller, call: PARSER_ATTACKS[(caller + call) % len(PARSER_ATTACKS)],
           callers=4, processes=4),
]


def attacker(name: str, url: str, seconds: float, first: int, callers: int) -> None:
    """One attacker process: `callers` threads sending `name`'s payload until `seconds` are up; prints the
    refused and accepted calls."""
    import httpx

    attack = next(a for a in ATTACKS if a.name == name)
    tally = {"refused": 0, "accepted": 0}
    deadline = time.monotonic() + seconds

    def caller(i: int) -> None:
        with httpx.Client(timeout=60) as http:
            call = 0
            while time.monotonic() < deadline:
                answer = http.post(f"{url}/gradio_api/run/count", json={"data": [attack.payload(i, call)]}).json()
                tally["refused" if "error" in answer else "accepted"] += 1
                call += 1

    threads = [threading.Thread(target=caller, args=(first + i,)) for i in range(callers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    print(tally["refused"], tally["accepted"])


def in_process() -> None:
    from finetune.errors import RunFileError
    from finetune.runfile import parse_run

    print("refused in process (median of 5):")
    for name, (text, _) in REFUSED.items():
        times = []
        for _ in range(5):
            started = time.perf_counter()
            with contextlib.suppress(RunFileError):
                parse_run(text)
            times.append((time.perf_counter() - started) * 1000)
        print(f"  {name:18s} {statistics.median(times):8.2f} ms")


def probes(url: str, http) -> dict[str, Callable[[int], object]]:
    """What is timed while an attack is under way: name -> a call (given a counter, to vary the input)."""
    def count(text):
        answer = http.post(f"{url}/gradio_api/run/count", json={"data": [text]}).json()
        assert "error" not in answer, answer
    return {"GET /": lambda i: http.get(f"{url}/").raise_for_status(),
            "/status": lambda i: http.post(f"{url}/gradio_api/run/status", json={"data": [DONE]}).raise_for_status(),
            "/count": lambda i: count(f"lora: {{r: {1 + i % 64}}}"),
            "/count new regex": lambda i: count(f"lora: {{target_modules: '.*\\.(q|v)_proj|n{time.time_ns()}'}}")}


def under(attack: Attack | None, url: str, http, seconds: float) -> tuple[dict, int, int]:
    """Run `attack` (None: none) for `seconds`, timing each probe meanwhile; (latencies, refused, accepted)."""
    procs = []
    if attack is not None:
        share = -(-attack.callers // attack.processes)
        for p in range(attack.processes):
            first, n = p * share, min(share, attack.callers - p * share)
            if n > 0:
                procs.append(subprocess.Popen(
                    [sys.executable, __file__, "--attacker", attack.name, url, str(seconds), str(first), str(n)],
                    cwd=ROOT, stdout=subprocess.PIPE, text=True))
        time.sleep(1)   # let it start
    calls = probes(url, http)
    times: dict[str, list[float]] = {name: [] for name in calls}
    deadline = time.monotonic() + (seconds - 1 if procs else seconds)
    i = 0
    while time.monotonic() < deadline:
        for name, call in calls.items():
            started = time.perf_counter()
            try:
                call(i)
                times[name].append(time.perf_counter() - started)
            except Exception:   # refused or timed out: counted as the time it took, marked failed
                times[name].append(float("inf"))
        i += 1
        time.sleep(0.1)
    refused = accepted = 0
    for p in procs:
        out, _ = p.communicate(timeout=120)
        r, a = map(int, out.split())
        refused, accepted = refused + r, accepted + a
    return times, refused, accepted


def cell(times: list[float]) -> str:
    if not times:
        return f"{'-':>18}"
    failed = sum(t == float("inf") for t in times)
    ok = sorted(t for t in times if t != float("inf"))
    text = f"{statistics.median(ok) * 1000:.0f}/{ok[-1] * 1000:.0f}" if ok else "-"
    return f"{text + (f' ({failed} failed)' if failed else ''):>18}"


def over_http(seconds: float, only: str | None) -> None:
    import httpx

    runs = Path(tempfile.mkdtemp()) / "runs"
    finished_run(runs)
    chosen = [a for a in ATTACKS if only is None or a.name == only]
    with serve_app(runs) as url, httpx.Client(timeout=30) as http:
        for call in probes(url, http).values():   # the first count imports the counting code
            call(0)
        print(f"\nlatency while each attack runs for {seconds:g} s, median/max in ms (goal: under 1000)")
        names = list(probes(url, http))
        print(f"{'attack':<24}{'refused':>9}" + "".join(f"{n:>18}" for n in names))
        for attack in [None, *chosen]:
            times, refused, accepted = under(attack, url, http, seconds)
            label = "idle" if attack is None else attack.name
            note = f"  ({accepted} accepted!)" if accepted else ""
            print(f"{label:<24}{refused if attack else '-':>9}" + "".join(cell(times[n]) for n in names) + note,
                  flush=True)


if __name__ == "__main__":
    if sys.argv[1:2] == ["--attacker"]:
        name, url, seconds, first, callers = sys.argv[2:7]
        attacker(name, url, float(seconds), int(first), int(callers))
        sys.exit()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=8)
    parser.add_argument("--only", choices=[a.name for a in ATTACKS], help="run just this attack")
    args = parser.parse_args()
    in_process()
    over_http(args.seconds, args.only)
