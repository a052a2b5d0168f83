"""The "will it fit?" panel in a real browser: an 8B 16-bit LoRA on a T4 is told it does not fit and is offered
4-bit; one click applies it through the form (the quantization radio changes) and the verdict turns to fits.
The panel shows the same bytes as `count --json`'s "memory".

Headless Chromium (/usr/bin/chromium) driven by Playwright, the app in its own process (tests/appserver.py).
"""

import json
import os
import sys
from pathlib import Path

import pytest

sync_api = pytest.importorskip("playwright.sync_api")

sys.path.insert(0, str(Path(__file__).parent))
from tiny_configs import FULL  # noqa: E402

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(not os.path.exists(CHROMIUM), reason=f"no Chromium at {CHROMIUM}")]


@pytest.fixture(scope="module")
def app_url(tmp_path_factory):
    from appserver import serve_app

    with serve_app(tmp_path_factory.mktemp("ui-memory") / "runs") as url:
        yield url


@pytest.fixture(scope="module")
def page(app_url):
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        context = browser.new_context(viewport={"width": 1400, "height": 1000})
        page = context.new_page()
        page.goto(app_url)
        page.wait_for_selector("#memory-estimate #memory-verdict")
        yield page
        browser.close()


def verdict(page) -> str:
    return page.locator("#memory-verdict").inner_text()


def pick_gpu(page, label: str) -> None:
    page.locator("#gpu-picker input").click()
    page.get_by_role("option").filter(has_text=label).click()


def test_the_demo_fits_and_the_panel_matches_the_cli(page):
    from finetune.demo import RUN_FILE
    from finetune.model.memory import count_json
    from finetune.runfile import load_run

    pick_gpu(page, "T4")
    page.wait_for_function("document.querySelector('#memory-verdict')?.innerText.includes('T4')")
    assert "fits" in verdict(page) and "does not fit" not in verdict(page)
    sync_api.expect(page.locator("#apply-fix")).to_be_hidden()
    shown = int(page.locator("#memory-estimate .mem-box").get_attribute("data-total"))
    # The page opens on the demo run; the CLI, on this GPU-less machine, assumes a bf16 GPU, as the T4's
    # fp16 takes the same bytes.
    assert shown == count_json(load_run(RUN_FILE), "x")["memory"]["total"]


def test_an_8b_16bit_lora_on_a_t4_is_offered_4bit_in_one_click(page, tmp_path_factory):
    folder = tmp_path_factory.mktemp("llama3-8b")
    (folder / "config.json").write_text(json.dumps(FULL["Meta-Llama-3-8B"][0]))
    box = page.locator("#model input")
    box.fill(str(folder))
    box.press("Enter")
    page.wait_for_function("document.querySelector('#target-modules').innerText.includes('14336')",
                           timeout=60_000)
    pick_gpu(page, "T4")
    page.wait_for_function("document.querySelector('#memory-verdict')?.innerText.includes('does not fit')",
                           timeout=30_000)
    text = verdict(page)
    assert "T4" in text and "4-bit" in text
    fix = page.locator("#apply-fix")
    sync_api.expect(fix).to_be_visible()
    assert "4-bit" in fix.inner_text()
    sync_api.expect(page.locator("#quantization input[value=none]")).to_be_checked()

    fix.click()
    sync_api.expect(page.locator("#quantization input[value='4bit']")).to_be_checked(timeout=30_000)
    page.wait_for_function("!document.querySelector('#memory-verdict')?.innerText.includes('does not fit')",
                           timeout=30_000)
    assert verdict(page).split(":")[1].strip().startswith("fits")
    sync_api.expect(fix).to_be_hidden()
    page.wait_for_function("document.querySelector('#run-file').innerText.includes('quantization: 4bit')")
    assert "Traceback" not in page.content()
