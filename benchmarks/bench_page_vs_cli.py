"""Training speed of a run launched from the page (the app serving, a browser watching its loss curve)
against the same run from the CLI, as tokens per second.

    python benchmarks/bench_page_vs_cli.py [--steps 60] [--reps 2] [--no-browser]

Each repetition runs the demo run (finetune/demo/run.yaml, max_steps --steps) twice, alternating which goes
first so that a busy spell slows both alike: once launched with the page's Launch button in headless
Chromium, the page left open on the run's live curve until it completes, and once as
`python -m finetune train` in a terminal. tokens/s is the run's own figure (metrics.jsonl, the median over
its logged steps, the first one left out). The goal: the page's run at >= 0.95x the CLI's. --no-browser
launches through the HTTP API instead, with no page open (the app's share alone).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]   # the app-server harness lives with the tests

from appserver import serve_app  # noqa: E402

ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]


def tokens_per_second(folder: Path) -> float:
    records = [json.loads(line) for line in (folder / "metrics.jsonl").read_text().splitlines() if line.strip()]
    speeds = [r["tokens_per_second"] for r in records if r.get("tokens_per_second")][1:]
    return statistics.median(speeds)


def wait_done(folder: Path, timeout: float = 1800) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            status = json.loads((folder / "status.json").read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            status = {}
        if status.get("state") in ("completed", "failed", "cancelled"):
            return status
        time.sleep(0.5)
    raise TimeoutError(f"{folder} did not finish")


def from_page(runs: Path, steps: int, browser: bool) -> tuple[float, Path]:
    run_text = (ROOT / "finetune" / "demo" / "run.yaml").read_text().replace("max_steps: 200", f"max_steps: {steps}")
    with serve_app(runs) as url:
        if not browser:
            from gradio_client import Client

            run_id = Client(url, verbose=False).predict(run_text, api_name="/launch")
            folder = runs / run_id
            wait_done(folder)
            return tokens_per_second(folder), folder
        from playwright.sync_api import sync_playwright

        with sync_playwright() as p:
            chromium = p.chromium.launch(executable_path="/usr/bin/chromium", args=ARGS)
            page = chromium.new_page(viewport={"width": 1400, "height": 1000})
            page.goto(url)
            page.wait_for_selector("#param-count .trainable")
            page.locator("#max-steps input").fill(str(steps))
            page.locator("#max-steps input").press("Enter")
            page.wait_for_function(f"document.querySelector('#run-file').innerText.includes('max_steps: {steps}')")
            page.locator("#launch").click()
            page.wait_for_function("document.querySelector('#run-select input').value.includes('demo')",
                                   timeout=60_000)
            run_id = page.locator("#run-select input").input_value().split(" · ")[0]
            folder = runs / run_id
            wait_done(folder)   # the page stays open on the live curve all along
            chromium.close()
    return tokens_per_second(folder), folder


def from_cli(run_yaml: Path, out: Path) -> float:
    run = yaml.safe_load(run_yaml.read_text())
    run["training"]["output_dir"] = str(out)
    path = out.with_suffix(".yaml")
    path.write_text(yaml.safe_dump(run))
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", PYTHONPATH=str(ROOT))
    subprocess.run([sys.executable, "-m", "finetune", "train", str(path)], cwd=ROOT, env=env, check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return tokens_per_second(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--reps", type=int, default=2)
    parser.add_argument("--no-browser", action="store_true", help="launch through the API, no page open")
    args = parser.parse_args()
    page, cli = [], []
    with tempfile.TemporaryDirectory(prefix="bench-page-") as tmp:
        tmp = Path(tmp)
        for rep in range(args.reps):
            if rep % 2 == 0:
                speed, folder = from_page(tmp / f"runs{rep}", args.steps, not args.no_browser)
                page.append(speed)
                cli.append(from_cli(folder / "run.yaml", tmp / f"cli{rep}"))
            else:   # the CLI first: the same settings, taken from the last page run
                cli.append(from_cli(folder / "run.yaml", tmp / f"cli{rep}"))
                page.append(from_page(tmp / f"runs{rep}", args.steps, not args.no_browser)[0])
            print(f"rep {rep + 1}: page {page[-1]:,.0f} tokens/s, CLI {cli[-1]:,.0f} tokens/s, "
                  f"ratio {page[-1] / cli[-1]:.2f}", flush=True)
    ratios = [a / b for a, b in zip(page, cli, strict=True)]
    print(f"{'API, no page' if args.no_browser else 'page'} / CLI tokens/s over {args.reps} pairs of "
          f"{args.steps} steps: median ratio {statistics.median(ratios):.2f} (each: "
          f"{', '.join(f'{r:.2f}' for r in ratios)}; goal >= 0.95)")


if __name__ == "__main__":
    main()
