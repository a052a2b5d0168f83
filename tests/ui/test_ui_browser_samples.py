"""In a real browser: a demo run with an evaluation split shows its samples under the curve while it trains,
prompt by prompt, and every evaluation's answer once it is done (finetune/ui/samples_view.py).

Headless Chromium from the system, as tests/ui/test_ui_browser.py; the app in its own process, the Hub offline.
"""


import browser_env
import pytest

sync_api = browser_env.sync_api()

from browser_page import open_page, wait_for_run_shown, wait_for_state  # noqa: E402  (after the skip: it imports playwright)

pytestmark = [pytest.mark.slow, pytest.mark.browser]

RUN = """model: {name_or_path: demo}
lora: {r: 4}
data: {path: demo, eval_size: 8}
training: {max_steps: 24, eval_steps: 4, logging_steps: 2}
samples: {prompts: ["Say hello", "What is <b>2+2</b>?"], max_new_tokens: 6}
"""
SAMPLE_STEPS = "[...document.querySelectorAll('#run-samples .sample')].map(b => b.innerText.match(/step \\d+/g))"


def test_samples_appear_while_the_run_trains_and_keep_every_evaluation(browser, app_url, tmp_path):
    from gradio_client import Client

    with open_page(browser, app_url, 1366, 900, timeout=60) as page:   # browser, app_url: tests/conftest.py
        wait_for_run_shown(page, timeout=30)
        assert not page.locator("#run-samples").is_visible()   # no run, no samples
        run_id = Client(app_url, verbose=False).predict(RUN, api_name="/launch")   # an idle page follows it
        page.wait_for_function("id => document.querySelector('#run-select input').value.startsWith(id + ' ')",
                               arg=run_id, timeout=30_000)
        page.wait_for_selector("#run-samples .sample", timeout=300_000)
        during = page.locator("#run-progress").inner_text()
        wait_for_state(page, "completed", timeout=300)
        page.wait_for_function(f"() => ({SAMPLE_STEPS}).every(s => s && s.includes('step 24'))", timeout=20_000)
        page.locator("#run-samples").screenshot(path=str(tmp_path / "samples.png"))
        blocks = page.locator("#run-samples .sample")
        assert blocks.count() == 2                               # one per prompt
        assert "What is <b>2+2</b>?" in blocks.nth(1).inner_text()   # shown as text, not markup
        steps = page.evaluate(SAMPLE_STEPS)
        assert steps[0] == [f"step {s}" for s in (4, 8, 12, 16, 20, 24)], steps   # oldest first
        assert "running" in during or "completed" in during
