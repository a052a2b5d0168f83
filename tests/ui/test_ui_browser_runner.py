"""In a real browser: the Train on choice beside Launch (finetune/ui/runner_view.py). Choosing a Hugging Face Jobs
flavour points the memory verdict at its GPU, says what the run may cost, and puts `runner: hf_jobs` in the run
file; launched where the Hub cannot be reached, the run fails with one line saying so, not a traceback.

Headless Chromium from the system, as tests/ui/test_ui_browser.py; the app in its own process, the Hub offline.
"""

import browser_env
import pytest

sync_api = browser_env.sync_api()

from browser_page import open_page  # noqa: E402  (after the skip: it imports playwright)

pytestmark = [pytest.mark.slow, pytest.mark.browser]


@pytest.fixture(scope="module")
def app_env():   # for tests/conftest.py's app_url
    # A token that looks like a login: the follower gets as far as asking the (unreachable) Hub to start the job.
    return {"HF_TOKEN": "hf_not_a_real_token"}


def test_choosing_a_jobs_flavour_judges_its_gpu_prices_the_run_and_launches_there(browser, app_url, tmp_path):
    with open_page(browser, app_url, 1366, 900, timeout=60) as page:   # browser, app_url: tests/conftest.py
        assert page.locator("#runner-note").inner_text().strip() == ""   # this machine: nothing to pay
        page.locator("#runner-flavor input").click()
        page.get_by_role("option").filter(has_text="l40sx1").click()
        page.wait_for_function("document.querySelector('#runner-note')?.innerText.includes('l40sx1')",
                               timeout=20_000)
        note = page.locator("#runner-note").inner_text()
        assert "$1.80/h" in note and "At most $3.60 before its 2 h 00 min timeout" in note, note
        verdict = page.locator("#memory-verdict").inner_text()
        assert verdict.startswith("Fits the Nvidia L40S 48 GB on Hugging Face Jobs"), verdict
        page.wait_for_function("document.querySelector('#run-file')?.innerText.includes('flavor: l40sx1')",
                               timeout=20_000)
        page.locator("#runner-note").screenshot(path=str(tmp_path / "runner-note.png"))
        page.locator("#launch").click()
        page.wait_for_function("document.querySelector('#run-progress')?.innerText.includes('failed')",
                               timeout=120_000)
        progress = page.locator("#run-progress").inner_text()
        assert "Hugging Face did not start the job" in progress and "Traceback" not in progress, progress
