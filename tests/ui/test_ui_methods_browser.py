"""In a real browser (issue 17): a DPO run launched from the form (the dpo preset on the demo data) draws its
reward margin beside the loss while it trains, and a GRPO run (the grpo preset, shortened) its rewards; the Method
section shows only the chosen method's settings, and GRPO's rewards table.

Headless Chromium from the system, as tests/ui/test_ui_browser.py; the app in its own process, the Hub offline. A
line is checked as the user sees it: stroked in its colour while the run is `running` (polled in the page on
every frame: a short run could finish between two screenshots), then its pixels in a screenshot.
"""


import browser_env
import pytest

sync_api = browser_env.sync_api()

from browser_page import (  # noqa: E402
    colour_pixels,
    open_page,
    selected_run,
    set_number,
    wait_for_run_shown,
    wait_for_state,
)

from finetune.ui.plots import PALETTE  # noqa: E402

pytestmark = [pytest.mark.slow, pytest.mark.browser]

FIRST = tuple(int(PALETTE[0][i:i + 2], 16) for i in (1, 3, 5))   # the method chart's first series
CURVE_PX = 200   # a 2-pixel line across 30 or 40 steps; the legend symbol alone is under 60


@pytest.fixture
def page(browser, app_url):   # browser, app_url: tests/conftest.py
    with open_page(browser, app_url, 1366, 900, timeout=120, default_timeout=60) as page:
        wait_for_run_shown(page, timeout=60)
        yield page


def pick_preset(page, words: str, method: str) -> None:
    page.locator("#preset input").click()
    page.get_by_role("option").filter(has_text=words).click()
    page.wait_for_function("m => document.querySelector('#run-file').innerText.includes('name: ' + m)", arg=method,
                           timeout=60_000)


def launch(page, fields: dict[str, int]) -> str:
    """Set the form's numbers (by element id), press Launch and return the new run's id once it is shown."""
    before = selected_run(page)
    for elem_id, value in fields.items():
        set_number(page, elem_id, value)
    page.wait_for_function("v => v.every(t => document.querySelector('#run-file').innerText.includes(t))",
                           arg=[f"max_steps: {fields['max-steps']}\n", f"logging_steps: {fields['logging-steps']}\n"],
                           timeout=60_000)
    page.wait_for_function("!document.querySelector('#launch').disabled", timeout=60_000)
    page.locator("#launch").click()
    page.wait_for_function("b => { const v = document.querySelector('#run-select input').value;"
                           "       return v !== '' && !v.startsWith(b + ' '); }", arg=before, timeout=60_000)
    return selected_run(page)


def wait_for_method_line(page, series: str, least_points: int = 2, timeout: float = 400) -> None:
    """Until #method-plot's line of `series` is stroked in the chart's first colour through `least_points` steps
    while #run-progress says running."""
    try:
        page.wait_for_function("""a => {
            const line = document.querySelector(`#method-plot .mark-line path[aria-label*="series: ${a.series};"]`)
                      || document.querySelector(`#method-plot .mark-line path[aria-label$="series: ${a.series}"]`);
            const running = document.querySelector('#run-progress').innerText.includes('running');
            return running && line && line.getAttribute('stroke') === a.colour
                   && ((line.getAttribute('d') || '').match(/L/g) || []).length >= a.least - 1;
        }""", arg={"series": series, "colour": PALETTE[0], "least": least_points}, timeout=timeout * 1000,
            polling="raf")
    except sync_api.TimeoutError:
        paths = page.evaluate("[...document.querySelectorAll('#method-plot .mark-line path')]"
                              ".map(p => [p.getAttribute('aria-label'), p.getAttribute('stroke')])")
        raise AssertionError(f"#method-plot: no stroked {series} line through {least_points} steps while running; "
                             f"lines {paths}; progress {page.locator('#run-progress').inner_text()!r}") from None


def test_a_dpo_run_from_the_form_draws_its_margin_while_it_trains(page, app_url, tmp_path):
    assert not page.locator("#method-plot").is_visible()   # no run: no method chart
    pick_preset(page, "Rafailov", "dpo")
    assert page.locator("#method-beta").is_visible() and page.locator("#method-loss-type").is_visible()
    assert not page.locator("#num-generations").is_visible() and not page.locator("#rewards-box").is_visible()
    page.locator("#configure").screenshot(path=str(tmp_path / "dpo-form.png"))
    launch(page, {"max-steps": 40, "grad-accum": 1, "logging-steps": 1})   # ~5 s of training: polled while it runs
    wait_for_method_line(page, "rewards/margins")
    wait_for_state(page, "completed", timeout=400)
    page.wait_for_timeout(3000)   # the last poll's data
    page.locator("#understand").screenshot(path=str(tmp_path / "dpo-run.png"))
    page.locator("#method-plot").screenshot(path=str(tmp_path / "dpo-method-plot.png"))
    seen = colour_pixels(page, "#method-plot", FIRST)
    assert seen >= CURVE_PX, f"{seen} pixels of the margin's colour"
    assert "rewards/accuracies" in page.locator("#method-plot").inner_text() or \
        page.locator("#method-plot .mark-line path").count() == 2
    print(f"DPO: {seen} px; screenshots in {tmp_path}")


def test_a_grpo_run_draws_its_reward_while_it_trains(page, app_url, tmp_path):
    pick_preset(page, "Shao", "grpo")
    assert page.locator("#rewards-box").is_visible() and page.locator("#num-generations").is_visible()
    assert "helper" in page.locator("#rewards").inner_text()
    assert page.locator("#method-loss-type").is_visible()   # grpo takes a loss_type too (dapo)
    page.locator("#rewards-box").screenshot(path=str(tmp_path / "grpo-rewards.png"))
    launch(page, {"max-steps": 30, "logging-steps": 1, "max-completion-length": 12})
    wait_for_method_line(page, "reward")
    wait_for_state(page, "completed", timeout=400)
    page.wait_for_timeout(3000)
    page.locator("#understand").screenshot(path=str(tmp_path / "grpo-run.png"))
    page.locator("#method-plot").screenshot(path=str(tmp_path / "grpo-method-plot.png"))
    seen = colour_pixels(page, "#method-plot", FIRST)
    assert seen >= CURVE_PX, f"{seen} pixels of the reward's colour"
    print(f"GRPO: {seen} px; screenshots in {tmp_path}")
