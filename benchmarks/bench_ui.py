"""UI latency, measured in a real browser (headless Chromium) against the app in its own process.

    python benchmarks/bench_ui.py [--samples 100] [--steps 30] [--out results.json]

1. Slider -> count: set #lora-r to a new value (the DOM events a drag fires) and time until #param-count
   shows the new number (the page redraws it at once from the last answer's slope), until the next
   animation frame (painted), and until the server's own answer is on the page. Goal: under 100 ms.
   Measured idle, then again while a training job shares the CPU.
2. Tick -> count: the same for unticking/ticking a module in #target-modules (server answer only).
3. Launch -> first point, and logged step -> point: demo runs are launched one after another from the same
   page (--runs); a thread here notes when each record lands in the run's metrics.jsonl (polled every 2 ms),
   the page notes when each point is drawn on #loss-plot: when the train line's svg path, with its stroke
   colour set, has that many vertices (a point in the DOM with no stroke, as the empty-chart bug had, does
   not count). Goals: the first point within 15 s of the click on Launch, each step drawn within 2 s.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

from playwright.sync_api import sync_playwright

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]   # the app-server harness lives with the tests

from appserver import serve_app  # noqa: E402

ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]

# Runs in the page: for each value, fire the events a drag fires and time (a) the first change of the shown
# count, (b) the next animation frame after it (painted), (c) the server's own answer (a count box whose
# data-r is the new r; for ticks (c) = (a)), and whether (a) and (c) showed the same number.
TIME_CHANGES = """
async ([selector, values]) => {
  const out = document.querySelector('#param-count');
  const text = () => out.querySelector('.trainable')?.innerText;
  const confirmed = v => selector.endsWith('label') || out.querySelector(`.count-box[data-r="${v}"]`);
  const results = [];
  for (const v of values) {
    const before = text();
    let first = null, firstText = null, painted = null;
    const done = new Promise(resolve => {
      const check = () => {
        const now = performance.now();
        if (first === null && text() !== before) {
          first = now; firstText = text();
          requestAnimationFrame(() => { painted = performance.now(); });
        }
        if (first !== null && confirmed(v)) { obs.disconnect(); resolve(now); }
      };
      const obs = new MutationObserver(check);
      obs.observe(out, {subtree: true, childList: true, characterData: true, attributes: true});
    });
    const t0 = performance.now();
    if (selector.endsWith('label')) {
      [...document.querySelectorAll(selector)].find(l => l.innerText.startsWith(v)).click();
    } else {
      const el = document.querySelector(selector);
      el.value = String(v);
      el.dispatchEvent(new Event('input', {bubbles: true}));
      el.dispatchEvent(new Event('change', {bubbles: true}));
    }
    const server = await Promise.race([done, new Promise(r => setTimeout(() => r(NaN), 5000))]);
    await new Promise(r => requestAnimationFrame(() => setTimeout(r, 0)));   // let the paint be noted
    results.push([first === null ? NaN : first - t0, painted === null ? NaN : painted - t0, server - t0,
                  firstText === text()]);
    await new Promise(r => setTimeout(r, 40));   // a drag sends a few events per frame, not a flood
  }
  return results;
}
"""

# Runs in the page: click Launch, and note the wall-clock time (ms since the epoch) of the click and of each
# new point drawn: the vertices of the train line's path, drawn in its colour (finetune/ui/plots.py COLORS).
LAUNCH_AND_WATCH = """
(colour) => {
  window.__plotTimes = {};
  const drawn = () => {
    const line = [...document.querySelectorAll('#loss-plot .mark-line path')]
        .find(p => (p.getAttribute('stroke') || '').toLowerCase() === colour);
    const d = line ? line.getAttribute('d') || '' : '';
    return d ? (d.match(/L/g) || []).length + 1 : 0;
  };
  // The chart still shows the previous run until the page switches: count from when it shows no line.
  let armed = drawn() === 0;
  const note = () => {
    const n = drawn(), now = performance.timeOrigin + performance.now();
    if (!armed) { armed = n === 0; return; }
    for (let i = 1; i <= n; i++) if (!(i in window.__plotTimes)) window.__plotTimes[i] = now;
  };
  if (window.__plotObserver) window.__plotObserver.disconnect();
  window.__plotObserver = new MutationObserver(note);
  window.__plotObserver.observe(document.querySelector('#loss-plot'),
                                {subtree: true, childList: true, attributes: true});
  window.__launchAt = performance.timeOrigin + performance.now();
  document.querySelector('#launch').click();
}
"""


def summary(values_ms: list[float]) -> dict:
    ok = sorted(v for v in values_ms if v == v)   # NaN: no change within 5 s
    p95 = ok[min(len(ok) - 1, round(0.95 * (len(ok) - 1)))] if ok else float("nan")
    return {"n": len(ok), "missed": len(values_ms) - len(ok), "median_ms": round(statistics.median(ok), 1),
            "p95_ms": round(p95, 1), "max_ms": round(ok[-1], 1)}


def slider_values(samples: int) -> list[int]:
    # Consecutive values always differ, so every event changes the count.
    return [8 + (i * 37) % 240 for i in range(samples)]


def timings(raw) -> dict:
    return {"shown": summary([r[0] for r in raw]), "painted": summary([r[1] for r in raw]),
            "server": summary([r[2] for r in raw]), "first_equals_server": sum(bool(r[3]) for r in raw)}


def time_slider(page, samples: int) -> dict:
    return timings(page.evaluate(TIME_CHANGES, ["#lora-r input[type=range]", slider_values(samples)]))


def time_ticks(page, samples: int) -> dict:
    names = ["k_proj", "v_proj"] * (samples // 2)   # each name twice in a row: untick, then tick again
    names = [n for pair in zip(names, names, strict=True) for n in pair][:samples]
    return timings(page.evaluate(TIME_CHANGES, ["#target-modules label", names]))


class MetricsTail(threading.Thread):
    """Notes the wall-clock time each metrics.jsonl record appears (polling every 2 ms)."""

    def __init__(self, path: Path):
        super().__init__(daemon=True)
        self.path, self.times, self.stop = path, [], threading.Event()

    def run(self):
        size = 0
        while not self.stop.is_set():
            try:
                text = self.path.read_text()
            except FileNotFoundError:
                text = ""
            if len(text) != size:
                now = time.time()
                size = len(text)
                complete = [line for line in text.split("\n")[:-1] if '"loss"' in line]
                self.times += [now] * (len(complete) - len(self.times))
            time.sleep(0.002)


def time_plot(page, runs_dir: Path, steps: int, samples: int, runs: int) -> dict:
    from finetune.ui.plots import COLORS

    for elem_id, value in (("lora-r", 16), ("max-steps", steps), ("batch-size", 1), ("grad-accum", 1)):
        page.locator(f"#{elem_id} input[type=number]").fill(str(value))
        page.locator(f"#{elem_id} input[type=number]").press("Enter")
    page.wait_for_function(f"document.querySelector('#run-file').innerText.includes('max_steps: {steps}\\n')")
    out, busy = [], None
    for n in range(runs):
        before = page.locator("#run-select input").input_value().split(" · ")[0]
        page.evaluate(LAUNCH_AND_WATCH, COLORS["train"])
        page.wait_for_function("b => { const v = document.querySelector('#run-select input').value;"
                               "       return v.includes('demo') && !v.startsWith(b + ' '); }", arg=before,
                               timeout=30_000)
        run_id = page.locator("#run-select input").input_value().split(" · ")[0]
        tail = MetricsTail(runs_dir / run_id / "metrics.jsonl")
        tail.start()
        status = runs_dir / run_id / "status.json"
        if n == runs - 1 and samples:   # in the last run, the count again: now the job competes for the CPU
            while not tail.times:
                time.sleep(0.1)
            busy = time_slider(page, samples)
        deadline = time.monotonic() + 900
        while json.loads(status.read_text()).get("state") != "completed":
            assert time.monotonic() < deadline, f"{run_id} did not complete"
            time.sleep(0.5)
        deadline = time.monotonic() + 30   # the page may lag behind the folder: give it time to draw them all
        time.sleep(1)
        while len(page.evaluate("window.__plotTimes")) < len(tail.times) and time.monotonic() < deadline:
            time.sleep(0.5)
        tail.stop.set()
        tail.join()
        shown, launched = page.evaluate("window.__plotTimes"), page.evaluate("window.__launchAt")
        lags = [shown[str(i + 1)] - t * 1000 for i, t in enumerate(tail.times) if str(i + 1) in shown]
        out.append({"run_id": run_id, "logged": len(tail.times), "drawn": len(shown),
                    "launch_to_first_record_s": round(tail.times[0] - launched / 1000, 2) if tail.times else None,
                    "launch_to_first_point_s": round((shown["1"] - launched) / 1000, 2) if "1" in shown else None,
                    "step_to_point": summary(lags) if lags else None})
    return {"runs": out, "count_while_training (last run)": busy}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=100)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--runs", type=int, default=3, help="demo runs launched one after another in one page")
    parser.add_argument("--plot-only", action="store_true", help="skip the idle slider and tick timings")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp, sync_playwright() as p:
        runs_dir = Path(tmp) / "runs"
        with serve_app(runs_dir) as url:
            browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=ARGS)
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.goto(url)
            page.wait_for_selector("#param-count .trainable")
            time_slider(page, 10)   # warm-up: first requests, JIT
            results = {} if args.plot_only else {"slider_to_count": time_slider(page, args.samples),
                                                 "tick_to_count": time_ticks(page, max(10, args.samples // 2))}
            results.update(time_plot(page, runs_dir, args.steps, 0 if args.plot_only else max(10, args.samples // 2),
                                     args.runs))
            browser.close()
    print(json.dumps(results, indent=1))
    if args.out:
        args.out.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
