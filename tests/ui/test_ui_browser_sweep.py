"""In a real browser: a sweep from the page (finetune/ui/sweep_view.py). Two values of lora.r on the form's demo
run become two queued runs, trained in turn; the sweep's table ranks both once they complete, the compare view
shows them with the setting that differs, and "Load best into form" puts the best run's r into the form.

Headless Chromium from the system, as tests/ui/test_ui_browser.py; the app in its own process, the Hub offline.
"""


import browser_env
import pytest

sync_api = browser_env.sync_api()

from browser_page import open_page, set_number  # noqa: E402  (after the skip: it imports playwright)

pytestmark = [pytest.mark.slow, pytest.mark.browser]

# Gradio 6's Dataframe draws its body rows as divs with role=row; an empty cell (best eval loss, with no
# evaluation split) has no text, so a row reads: rank, run, values, state, final loss, tokens/s, steps.
ROWS = ("[...document.querySelectorAll('#sweep-table div[role=row]')]"
        ".map(r => r.innerText.split('\\n').map(s => s.trim()).filter(Boolean))")


def test_a_sweep_from_the_page_trains_each_value_ranks_them_and_loads_the_best(browser, app_url, tmp_path):
    with open_page(browser, app_url, 1366, 900, timeout=60) as page:   # browser, app_url: tests/conftest.py
        set_number(page, "max-steps", 6)
        page.wait_for_function("document.querySelector('#run-file')?.innerText.includes('max_steps: 6\\n')",
                               timeout=15_000)
        page.locator("#sweep").click()   # the accordion
        values = page.locator("#sweep-values1 textarea, #sweep-values1 input").first
        values.fill("2,3")
        values.press("Tab")
        page.locator("#sweep-launch").click()
        # Both runs complete, one after the other, and the table ranks them (1 and 2), each naming its r.
        page.wait_for_function(f"""() => {{ const rows = {ROWS};
            return rows.length === 2 && rows.every(r => r.includes('completed')); }}""", timeout=300_000)
        rows = page.evaluate(ROWS)
        page.locator("#sweep").screenshot(path=str(tmp_path / "sweep.png"))
        assert [r[0] for r in rows] == ["1", "2"], rows
        assert sorted(r[2] for r in rows) == ["lora.r=2", "lora.r=3"], rows
        losses = [float(r[4]) for r in rows]
        assert losses == sorted(losses), rows   # ranked by final train loss (the demo run has no eval split)
        # The compare view follows the sweep: its runs chosen, their curves overlaid, the setting that differs.
        page.wait_for_function("document.querySelector('#config-diff')?.innerText.includes('lora.r')",
                               timeout=20_000)
        assert "2 | 3" in page.locator("#config-diff").inner_text()
        best_r = rows[0][2].split("=")[1]
        page.wait_for_function("!document.querySelector('#sweep-best').disabled", timeout=20_000)
        page.locator("#sweep-best").click()
        page.wait_for_function("r => document.querySelector('#run-file')?.innerText.includes('  r: ' + r + '\\n')",
                               arg=best_r, timeout=20_000)
