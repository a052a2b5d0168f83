"""The "will it fit?" panel in a real browser: an 8B 16-bit LoRA on a T4 is told it does not fit and is offered
4-bit; one click applies it through the form (the quantization radio changes) and the verdict turns to fits.
The panel shows the same bytes as `count --json`'s "memory".

Headless Chromium (/usr/bin/chromium) driven by Playwright, the app in its own process (tests/appserver.py).
"""

import json
import sys
from pathlib import Path

import browser_env
import pytest

sync_api = browser_env.sync_api()

from browser_page import open_page  # noqa: E402  (after the skip: it imports playwright)

sys.path.insert(0, str(Path(__file__).parents[1]))
from tiny_configs import FULL  # noqa: E402

pytestmark = [pytest.mark.slow, pytest.mark.browser]


@pytest.fixture
def page(browser, app_url):   # browser and app_url: tests/conftest.py
    """A fresh page (and so a fresh form) for each test."""
    with open_page(browser, app_url, ready="#memory-estimate #memory-verdict") as page:
        yield page


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
    assert verdict(page).startswith("Fits the T4")
    sync_api.expect(page.locator("#apply-fix")).to_be_hidden()
    shown = int(page.locator("#memory-estimate .mem-box").get_attribute("data-total"))
    # The page opens on the demo run; the CLI, on this GPU-less machine, assumes a bf16 GPU, as the T4's
    # fp16 takes the same bytes.
    assert shown == count_json(load_run(RUN_FILE), "x")["memory"]["total"]

    # The GPU picked is the page's, not the run file's: a preset leaves it as it is.
    pick_gpu(page, "A100 80")
    page.wait_for_function("document.querySelector('#memory-verdict')?.innerText.includes('A100 80')")
    page.locator("#preset input").click()
    page.get_by_role("option").filter(has_text="Dettmers").click()     # the QLoRA preset: 4-bit
    page.wait_for_function("document.querySelector('#run-file').innerText.includes('quantization: 4bit')",
                           timeout=30_000)
    assert "A100 80" in verdict(page)
    pick_gpu(page, "T4")
    page.wait_for_function("document.querySelector('#memory-verdict')?.innerText.includes('T4')")


def test_the_api_and_the_cli_give_the_same_breakdown(app_url, tmp_path):
    from gradio_client import Client

    folder = tmp_path / "llama3-8b"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps(FULL["Meta-Llama-3-8B"][0]))
    run = json.dumps({"model": {"name_or_path": str(folder), "quantization": "4bit"},
                      "training": {"gradient_checkpointing": True}})
    path = tmp_path / "run.json"
    path.write_text(run)
    from finetune.cli import count_one

    got = Client(app_url, verbose=False).predict(run, api_name="/count")
    assert got["memory"] == count_one(str(path))["memory"]
    assert set(got["memory"]) == {"weights", "trainable", "gradients", "optimizer", "activations", "overhead",
                                  "total"}


def test_an_8b_16bit_lora_on_a_t4_is_offered_4bit_in_one_click(page, tmp_path_factory):
    folder = tmp_path_factory.mktemp("llama3-8b")
    (folder / "config.json").write_text(json.dumps(FULL["Meta-Llama-3-8B"][0]))
    box = page.locator("#model input")
    box.fill(str(folder))
    box.press("Enter")
    page.wait_for_function("document.querySelector('#target-modules').innerText.includes('14336')",
                           timeout=60_000)
    pick_gpu(page, "T4")
    page.wait_for_function("document.querySelector('#memory-verdict')?.innerText.includes('Does not fit')",
                           timeout=30_000)
    text = verdict(page)
    assert "T4" in text and "4-bit" in text
    fix = page.locator("#apply-fix")
    sync_api.expect(fix).to_be_visible()
    assert "4-bit" in fix.inner_text()
    sync_api.expect(page.locator("#quantization input[value=none]")).to_be_checked()

    fix.click()
    sync_api.expect(page.locator("#quantization input[value='4bit']")).to_be_checked(timeout=30_000)
    page.wait_for_function("!document.querySelector('#memory-verdict')?.innerText.includes('Does not fit')",
                           timeout=30_000)
    assert verdict(page).startswith("Fits the T4")
    sync_api.expect(fix).to_be_hidden()
    page.wait_for_function("document.querySelector('#run-file').innerText.includes('quantization: 4bit')")
    assert "Traceback" not in page.content()
