"""Costly input against the served app: how fast it is refused, and how /status fares meanwhile.

    python benchmarks/bench_security.py [--seconds 15] [--attackers 4]

1. In process: parse_run() on each attack (the 334-byte alias bomb used as lora.target_modules, a 5 MB
   document, 50,000 nested brackets, 100,000 values, a 5,000-digit integer, a duplicated key); the median
   of 5 in ms. Goal (issue #7): under 100 ms each.
2. Over HTTP, against `python app.py`: /count's round trip for the bomb and the 5 MB document (median of 5),
   /status's latency idle (20 calls), then while `--attackers` processes send the attacks to /count as fast
   as the app answers. Goal: /status under 1 s throughout.
The attackers are processes, not threads: threads of this script would time its own GIL.
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from appserver import serve_app  # noqa: E402
from security.test_app_under_load import ATTACKER, ATTACKS, DONE, finished_run  # noqa: E402
from security.test_parser_limits import REFUSED  # noqa: E402


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


def over_http(seconds: float, attackers: int) -> None:
    import httpx

    runs = Path(tempfile.mkdtemp()) / "runs"
    finished_run(runs)
    with serve_app(runs) as url, httpx.Client(timeout=60) as http:
        def call(endpoint, value):
            started = time.perf_counter()
            http.post(f"{url}/gradio_api/run/{endpoint}", json={"data": [value]})
            return (time.perf_counter() - started) * 1000

        call("count", "lora: {r: 8}")   # the first count imports the counting code
        for name, text in (("bomb", ATTACKS[0]), ("5 MB", ATTACKS[1])):
            print(f"/count refuses the {name}: median {statistics.median(call('count', text) for _ in range(5)):.0f} ms"
                  " round trip")
        idle = sorted(call("status", DONE) for _ in range(20))
        print(f"/status idle: median {statistics.median(idle):.0f} ms, max {idle[-1]:.0f} ms")
        flood = [subprocess.Popen([sys.executable, "-c", ATTACKER, url, str(seconds), str(i)], cwd=ROOT,
                                  stdout=subprocess.PIPE, text=True) for i in range(attackers)]
        time.sleep(1)
        busy = []
        while any(p.poll() is None for p in flood):
            busy.append(call("status", DONE))
            time.sleep(0.1)
        refused = sum(int(p.communicate()[0].split()[0]) for p in flood)
        busy.sort()
        print(f"/status during {attackers} attackers x {seconds:g} s ({refused} attacks refused): "
              f"median {statistics.median(busy):.0f} ms, p90 {busy[int(len(busy) * 0.9)]:.0f} ms, "
              f"max {busy[-1]:.0f} ms over {len(busy)} calls")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=15)
    parser.add_argument("--attackers", type=int, default=4)
    args = parser.parse_args()
    in_process()
    over_http(args.seconds, args.attackers)
