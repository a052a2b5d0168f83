"""The page shows the run (issue 20): on a 1366x768 screen, a run launched from the form shows its progress line
and its loss curve at once, without scrolling, and the live count with the memory verdict stays in view while
the user moves the form's sliders (the column beside the form is sticky: finetune/ui/layout.py).

"In view" is what a user sees: the element's box lies inside the window, the element at its centre is its own
(nothing covers it), and for the chart, a screenshot of the window itself (not of the element, which
Playwright would scroll to) holds the curve's pixels. Headless Chromium, the app in its own process.
"""

import contextlib
import io

import browser_env
import pytest

sync_api = browser_env.sync_api()

from browser_page import (  # noqa: E402  (after the skip: it imports playwright)
    CURVE_PX,
    TRAIN,
    TRAIN_POINTS,
    expected_trainable,
    open_page,
    selected_run,
    wait_for_count,
    wait_for_run_shown,
)

pytestmark = [pytest.mark.slow, pytest.mark.browser]

WIDTH, HEIGHT = 1366, 768
# The element's box in the window, and whether the element at the box's centre is it or inside it.
IN_VIEW = """sel => {
    const e = document.querySelector(sel);
    if (!e) return null;
    const r = e.getBoundingClientRect();
    const hit = document.elementFromPoint(r.left + r.width / 2, r.top + r.height / 2);
    return {top: r.top, bottom: r.bottom, left: r.left, right: r.right, width: r.width, height: r.height,
            own: !!hit && (hit === e || e.contains(hit))};
}"""
CHART = "#loss-plot svg.marks"   # the chart's drawn area (Vega's svg: axes, grid, lines)


@pytest.fixture
def page(browser, app_url):   # browser, app_url and runs_dir: tests/conftest.py
    with open_page(browser, app_url, WIDTH, HEIGHT, timeout=60) as page:
        wait_for_run_shown(page, timeout=60)
        yield page


def assert_in_view(page, selector: str) -> dict:
    box = page.evaluate(IN_VIEW, selector)
    assert box is not None, f"{selector}: not on the page"
    inside = (box["width"] > 0 and box["height"] > 0 and box["top"] >= 0 and box["bottom"] <= HEIGHT
              and box["left"] >= 0 and box["right"] <= WIDTH)
    assert inside, f"{selector} is not inside the {WIDTH}x{HEIGHT} window: {box}"
    assert box["own"], f"{selector}: something else is drawn over its centre: {box}"
    return box


def curve_pixels_in_window(page, box: dict) -> int:
    """Pixels of the train curve's colour in the window's own screenshot, inside `box` (no scrolling)."""
    from PIL import Image

    clip = {"x": box["left"], "y": box["top"], "width": box["width"], "height": box["height"]}
    image = Image.open(io.BytesIO(page.screenshot(clip=clip))).convert("RGB")
    pixels = image.get_flattened_data() if hasattr(image, "get_flattened_data") else image.getdata()
    return sum(1 for px in pixels if sum(abs(a - b) for a, b in zip(px, TRAIN, strict=True)) <= 60)


def scrolled(page) -> int:
    return page.evaluate("window.scrollY")


def wait_for_points(page, least: int, folder, timeout: float = 240) -> None:
    """Waits until the chart holds `least` train points; a run that ends before says what it shows."""
    with contextlib.suppress(sync_api.TimeoutError):   # said below, with what the page and the folder show
        page.wait_for_function(f"""() => {TRAIN_POINTS} >= {least}
            || /failed|broken|cancelled/.test(document.querySelector('#run-progress').innerText)""",
                               timeout=timeout * 1000)
    if page.evaluate(TRAIN_POINTS) < least:
        log = (folder / "train.log").read_text()[-1500:] if (folder / "train.log").exists() else ""
        raise AssertionError(f"#loss-plot: fewer than {least} train points; progress: "
                             f"{page.locator('#run-progress').inner_text()!r}\ntrain.log ends: {log}")


def test_the_count_and_the_verdict_stay_in_view_while_the_sliders_move(page):
    assert_in_view(page, "#param-count")
    for slider in ("#lora-r", "#lora-dropout", "#target-modules", "#batch-size"):   # down the form
        page.evaluate("sel => document.querySelector(sel).scrollIntoView({block: 'center'})", slider)
        page.wait_for_timeout(300)
        assert_in_view(page, slider)
        assert_in_view(page, "#param-count .trainable")
        assert_in_view(page, "#memory-verdict")

    page.evaluate("document.querySelector('#lora-r').scrollIntoView({block: 'center'})")
    at = scrolled(page)
    assert at > 0   # the sliders are below the page's top: the column has followed them
    page.locator("#lora-r input[type=range]").fill("24")
    wait_for_count(page, expected_trainable(r=24))
    assert scrolled(page) == at
    assert_in_view(page, "#lora-r")
    assert_in_view(page, "#param-count .trainable")
    assert_in_view(page, "#memory-verdict")


def test_a_launched_run_shows_its_progress_and_curve_without_scrolling(page, runs_dir):
    assert scrolled(page) == 0
    assert_in_view(page, "#launch")
    before = selected_run(page)
    page.locator("#launch").click()
    page.wait_for_function("b => { const v = document.querySelector('#run-select input').value;"
                           "       return v.includes('demo') && (!b || !v.startsWith(b + ' ')); }", arg=before,
                           timeout=60_000)
    folder = runs_dir / selected_run(page)
    wait_for_points(page, 2, folder)   # the job starts in ~30 s on 2 busy cores

    # Still at the top of the page: the progress line and the chart are in the window as the run trains.
    page.wait_for_timeout(1500)   # a few polls: the chart has its x range and the data drawn again
    assert scrolled(page) == 0
    progress = page.locator("#run-progress").inner_text()
    assert any(state in progress for state in ("running", "completed")), progress
    assert_in_view(page, "#run-progress")
    chart = assert_in_view(page, CHART)
    wait_for_points(page, 8, folder)
    page.wait_for_timeout(1500)
    seen = curve_pixels_in_window(page, chart)
    assert seen >= CURVE_PX, f"{CHART}: {seen} pixels of the train curve in the window (want {CURVE_PX})"
    assert scrolled(page) == 0
    assert page.evaluate("document.querySelector('#understand').scrollTop") == 0
