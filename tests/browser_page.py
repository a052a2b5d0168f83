"""What the browser tests read off the page: the count, the selected run, the chart's curve as pixels
of its colour (a screenshot: an empty chart, with its axes and grid, has none), the train line's stroke
while a run trains, the run's state, and launching from the form (tests/ui/test_ui_browser.py); and how
they open it: Chromium, and a page of the app in a context of its own."""

import contextlib
import io
import json
import time
from pathlib import Path

from browser_env import ARGS, CHROMIUM
from playwright import sync_api

TRAIN_POINTS = "document.querySelectorAll('#loss-plot .mark-symbol path[aria-label*=\"series: train\"]').length"
TRAIN, EVAL = (31, 119, 180), (255, 127, 14)   # finetune/ui/plots.py COLORS (compare: run 1, run 2)
BEST = (44, 160, 44)   # COLORS["best eval"], the rule at the best evaluation
CURVE_PX = 300   # a 2-pixel line across a few steps; the legend's symbol alone is under 60
X_LABELS = """() => [...document.querySelectorAll('#loss-plot g.role-axis')]
    .filter(g => (g.getAttribute('aria-label') || '').startsWith('X-axis'))
    .flatMap(g => [...g.querySelectorAll('.role-axis-label text')].map(t => t.textContent))"""


@contextlib.contextmanager
def launch_browser():
    """Headless Chromium from the system (tests/browser_env.py); tests/conftest.py's `browser` fixture."""
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            yield browser
        finally:
            browser.close()


@contextlib.contextmanager
def open_page(browser, url: str, width: int = 1400, height: int = 1000, ready: str = "#param-count .trainable",
              timeout: float | None = None, default_timeout: float | None = None):
    """The app at `url` in a browser context of its own (a fresh form; closed at the end), once `ready` is on
    the page: within `timeout` s, or Playwright's default. `default_timeout` (s) replaces that default first."""
    context = browser.new_context(viewport={"width": width, "height": height})
    try:
        page = context.new_page()
        if default_timeout is not None:
            page.set_default_timeout(default_timeout * 1000)
        page.goto(url)
        page.wait_for_selector(ready, timeout=None if timeout is None else timeout * 1000)
        yield page
    finally:
        context.close()


def wait_for_run_shown(page, timeout: float = 20) -> None:
    """Waits until #run-progress shows something: a fresh page selects its run (the newest), or says there is
    none, just after it loads, so what it shows before that is not yet the page's."""
    page.wait_for_function("document.querySelector('#run-progress').innerText.trim() !== ''",
                           timeout=timeout * 1000)


def expected_trainable(run: dict | None = None, **lora) -> str:
    from finetune.model.count import count_run
    from finetune.runfile import RunConfig

    return f"{count_run(RunConfig.from_dict(run or {'lora': lora})).trainable:,}"


def wait_for_count(page, text: str, timeout: float = 20) -> None:
    try:
        page.wait_for_function("t => document.querySelector('#param-count .trainable')?.innerText === t", arg=text,
                               timeout=timeout * 1000)
    except sync_api.TimeoutError:
        shown = page.locator("#param-count").inner_text(), page.locator("#form-errors").inner_text()
        raise AssertionError(f"#param-count: want {text} trainable, the page shows {shown}") from None


def set_number(page, elem_id: str, value) -> None:
    box = page.locator(f"#{elem_id} input")
    box.fill(str(value))
    box.press("Enter")


def selected_run(page) -> str:
    return page.locator("#run-select input").input_value().split(" · ")[0]


def colour_pixels(page, selector: str, rgb, tolerance: int = 60) -> int:
    """How many pixels of the element's screenshot are within `tolerance` of the colour `rgb`."""
    from PIL import Image

    image = Image.open(io.BytesIO(page.locator(selector).screenshot())).convert("RGB")
    pixels = image.get_flattened_data() if hasattr(image, "get_flattened_data") else image.getdata()
    return sum(1 for px in pixels if sum(abs(a - b) for a, b in zip(px, rgb, strict=True)) <= tolerance)


def wait_for_curve(page, selector: str = "#loss-plot", rgb=TRAIN, least: int = CURVE_PX, timeout: float = 60,
                   while_text: str | None = None) -> int:
    """Screenshots `selector` until the curve of colour `rgb` has `least` pixels; returns the count.
    With `while_text`, only screenshots taken while #run-progress shows it count."""
    deadline, seen = time.monotonic() + timeout, 0
    while time.monotonic() < deadline:
        progress = page.locator("#run-progress").inner_text()
        seen = colour_pixels(page, selector, rgb)
        if seen >= least and (while_text is None or while_text in progress):
            return seen
        time.sleep(0.5)
    raise AssertionError(f"{selector}: {seen} pixels of the curve's colour {rgb} after {timeout:g} s "
                         f"(want {least}); progress: {page.locator('#run-progress').inner_text()!r}")


def wait_for_line_while_running(page, least_points: int = 2, timeout: float = 300) -> None:
    """Waits, polling in the page on every frame, until the train line is stroked in its colour through at
    least `least_points` steps while #run-progress says running. A 12-step demo run trains in about 2 s:
    screenshots every second could miss that window, and an unstroked line (the reported bug) fails here.
    Callers then count the line's pixels in a screenshot once the run is done."""
    colour = "#" + "".join(f"{c:02x}" for c in TRAIN)
    try:
        page.wait_for_function("""c => {
            const line = document.querySelector('#loss-plot .mark-line path[aria-label*="series: train"]');
            const running = document.querySelector('#run-progress').innerText.includes('running');
            return running && line && line.getAttribute('stroke') === c.colour
                   && ((line.getAttribute('d') || '').match(/L/g) || []).length >= c.least - 1;
        }""", arg={"colour": colour, "least": least_points}, timeout=timeout * 1000, polling="raf")
    except sync_api.TimeoutError:
        raise AssertionError(f"#loss-plot: no stroked train line through {least_points} steps while running; "
                             f"progress: {page.locator('#run-progress').inner_text()!r}") from None


def wait_for_state(page, state: str, timeout: float = 300, folder: Path | None = None) -> None:
    """Waits until #run-progress shows `state`; on a timeout, says what the page and the run folder show."""
    try:
        page.wait_for_function("s => document.querySelector('#run-progress').innerText.includes(s)", arg=state,
                               timeout=timeout * 1000)
    except sync_api.TimeoutError:
        shown = page.locator("#run-progress").inner_text()
        status = (folder / "status.json").read_text() if folder and (folder / "status.json").exists() else ""
        log = (folder / "train.log").read_text()[-1500:] if folder and (folder / "train.log").exists() else ""
        raise AssertionError(f"#run-progress never showed {state!r} in {timeout:g} s: it shows {shown!r}\n"
                             f"status.json: {status}\ntrain.log ends: {log}") from None


def steps_of(runs_dir: Path, run_id: str) -> list[int]:
    lines = (runs_dir / run_id / "metrics.jsonl").read_text().splitlines()
    return [r["step"] for r in map(json.loads, lines) if "loss" in r]

# Counts the toasts with a given text as they are added to the page (window.__toasts).
COUNT_TOASTS = """text => {
    window.__toasts = 0;
    new MutationObserver(changes => {
        for (const change of changes) for (const node of change.addedNodes) {
            if (node.nodeType !== 1) continue;
            const found = node.matches('.toast-message-text') ? [node] : [...node.querySelectorAll('.toast-message-text')];
            window.__toasts += found.filter(e => e.textContent.includes(text)).length;
        }
    }).observe(document.body, {childList: true, subtree: true});
}"""


def launch_from_form(page, r: int, steps: int) -> str:
    """Set r and max_steps in the form, press Launch, and return the new run's id once the page shows it."""
    wait_for_run_shown(page, timeout=20)
    before = selected_run(page)
    page.locator("#lora-r input[type=number]").fill(str(r))
    page.locator("#lora-r input[type=number]").press("Enter")
    set_number(page, "max-steps", steps)
    page.wait_for_function(f"""() => {{ const t = document.querySelector('#run-file').innerText;
        return t.includes('max_steps: {steps}\\n') && t.includes('  r: {r}\\n'); }}""", timeout=15_000)
    page.locator("#launch").click()
    page.wait_for_function("a => { const v = document.querySelector('#run-select input').value;"
                           "       return v.includes(a.name) && !v.startsWith(a.before + ' '); }",
                           arg={"before": before, "name": f"-demo-r{r} "}, timeout=20_000)
    return selected_run(page)
