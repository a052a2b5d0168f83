"""The app in a real browser: the live count follows the sliders and ticks exactly, a bad setting blocks
Launch, and a launched run streams its loss curve, survives a reload and a second browser, and cancels.

Headless Chromium from the system (/usr/bin/chromium) driven by Playwright; skipped when it is missing.
The app runs in its own process with its runs in a temporary folder and the Hub offline.
"""

import os
import zipfile

import pytest
import yaml

sync_api = pytest.importorskip("playwright.sync_api")

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
TRAIN_POINTS = "document.querySelectorAll('#loss-plot .mark-symbol path[aria-label*=\"series: train\"]').length"

if not os.path.exists(CHROMIUM) and os.environ.get("FINETUNE_REQUIRE_BROWSER") == "1":
    raise RuntimeError(f"FINETUNE_REQUIRE_BROWSER=1 but there is no Chromium at {CHROMIUM}")
pytestmark = pytest.mark.skipif(not os.path.exists(CHROMIUM), reason=f"no Chromium at {CHROMIUM} "
                                "(apt-get install -y chromium)")


@pytest.fixture(scope="module")
def app_url(tmp_path_factory):
    from appserver import serve_app

    with serve_app(tmp_path_factory.mktemp("ui") / "runs") as url:
        yield url


@pytest.fixture(scope="module")
def browser():
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield b
        b.close()


@pytest.fixture
def page(browser, app_url):
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    page = context.new_page()
    page.goto(app_url)
    page.wait_for_selector("#param-count .trainable")
    yield page
    context.close()


def expected_trainable(run: dict | None = None, **lora) -> str:
    from finetune.runfile import RunConfig
    from finetune.model.count import count_run

    return f"{count_run(RunConfig.from_dict(run or {'lora': lora})).trainable:,}"


def wait_for_count(page, text: str) -> None:
    page.wait_for_function("t => document.querySelector('#param-count .trainable')?.innerText === t", arg=text,
                           timeout=10_000)


def set_number(page, elem_id: str, value) -> None:
    box = page.locator(f"#{elem_id} input")
    box.fill(str(value))
    box.press("Enter")


def selected_run(page) -> str:
    return page.locator("#run-select input").input_value().split(" · ")[0]


def test_the_count_follows_the_r_slider_and_the_module_ticks(page):
    assert page.locator("#param-count .trainable").inner_text() == expected_trainable()

    page.locator("#lora-r input[type=range]").fill("24")
    wait_for_count(page, expected_trainable(r=24))

    page.locator("#target-modules label").filter(has_text="k_proj").click()
    wait_for_count(page, expected_trainable(r=24, target_modules=["q_proj", "v_proj", "o_proj", "gate_proj",
                                                                   "up_proj", "down_proj"]))
    sync_api.expect(page.locator("#all-linear input")).not_to_be_checked()  # unticking a module leaves all-linear
    page.wait_for_function("document.querySelector('#run-file').innerText.includes('r: 24')")
    assert page.locator("#param-count").inner_text().count("%") == 1


def test_the_module_list_follows_the_model(page, tmp_path):
    folder = tmp_path / "tiny-gpt2"    # a model folder with just a config.json is enough to count
    folder.mkdir()
    (folder / "config.json").write_text('{"model_type": "gpt2", "n_embd": 32, "n_layer": 2, "n_head": 2, '
                                        '"vocab_size": 100, "n_positions": 64}')
    box = page.locator("#model input")
    box.fill(str(folder))
    box.press("Enter")
    page.wait_for_function("document.querySelector('#target-modules').innerText.includes('c_attn')", timeout=30_000)
    wait_for_count(page, expected_trainable({"model": {"name_or_path": str(folder)}}))
    assert "q_proj" not in page.locator("#target-modules").inner_text()

    box.fill("someone/not-a-model")     # the Hub is offline in this test: a clear line, and no Launch
    box.press("Enter")
    page.wait_for_function("document.querySelector('#form-errors').innerText.includes('model.name_or_path')",
                           timeout=60_000)
    sync_api.expect(page.locator("#launch")).to_be_disabled()


def test_a_preset_and_a_loaded_run_file_fill_the_form(page, tmp_path):
    from finetune.runfile.presets import load_preset

    page.locator("#preset input").click()
    page.get_by_role("option").filter(has_text="Dettmers").click()     # the QLoRA preset
    wait_for_count(page, expected_trainable(load_preset("qlora")))
    # The slider is its own update, which may land just after the count's: wait for it too.
    sync_api.expect(page.locator("#lora-r input[type=number]")).to_have_value("64", timeout=30_000)
    page.wait_for_function("document.querySelector('#run-file').innerText.includes('quantization: 4bit')")

    run = {"lora": {"r": 8, "target_modules": ["q_proj", "v_proj"], "rank_pattern": {"q_proj": 4}},
           "training": {"max_steps": 7}}
    path = tmp_path / "mine.yaml"
    path.write_text(yaml.safe_dump(run))
    with page.expect_file_chooser() as chooser:
        page.locator("#load-run").click()
    chooser.value.set_files(path)
    wait_for_count(page, expected_trainable(run))          # the file replaces the preset, defaults elsewhere
    sync_api.expect(page.locator("#target-modules input:checked")).to_have_count(2)
    page.wait_for_function("document.querySelector('#run-file').innerText.includes('q_proj: 4')")
    assert "quantization: none" in page.locator("#run-file").inner_text()
    assert "Traceback" not in page.content()


def test_quick_successive_edits_are_all_kept(page):
    for elem_id, value in (("max-steps", 123), ("batch-size", 3), ("grad-accum", 5)):
        box = page.locator(f"#{elem_id} input")
        box.fill(str(value))
        box.press("Enter")     # no waiting in between: the events overlap on the server
    page.locator("#lora-r input[type=range]").fill("40")
    page.wait_for_function("""() => { const t = document.querySelector('#run-file').innerText;
        return ['r: 40', 'max_steps: 123', 'per_device_train_batch_size: 3', 'gradient_accumulation_steps: 5']
               .every(s => t.includes(s)); }""", timeout=10_000)
    wait_for_count(page, expected_trainable(r=40))


def test_an_invalid_setting_shows_its_error_and_disables_launch(page):
    assert page.locator("#launch").is_enabled()
    page.locator("#advanced-lora").get_by_text("Advanced LoRA").click()
    regex = page.locator("#target-regex textarea, #target-regex input").first
    regex.fill(r".*\.nothing_here")
    regex.press("Enter")
    page.wait_for_function("document.querySelector('#form-errors').innerText.includes('lora.target_modules')",
                           timeout=10_000)
    assert "Traceback" not in page.locator("#form-errors").inner_text()
    sync_api.expect(page.locator("#launch")).to_be_disabled()

    regex.fill("")
    regex.press("Enter")
    page.wait_for_function("!document.querySelector('#launch').disabled", timeout=10_000)


def test_a_run_streams_its_loss_reattaches_after_reload_and_cancels(page, browser, app_url, tmp_path):
    set_number(page, "max-steps", 500)      # long enough to still be running when we cancel it
    set_number(page, "batch-size", 1)
    set_number(page, "grad-accum", 1)
    page.wait_for_function("document.querySelector('#run-file').innerText.includes('max_steps: 500')")
    page.locator("#launch").click()
    page.wait_for_function("document.querySelector('#run-select input').value.includes('demo')", timeout=15_000)
    run_id = selected_run(page)

    page.wait_for_function(f"{TRAIN_POINTS} >= 2", timeout=180_000)   # the job starts in ~30 s on 2 cores
    assert "running" in page.locator("#run-progress").inner_text()
    seen = page.evaluate(TRAIN_POINTS)

    page.reload()
    page.wait_for_function(f"{TRAIN_POINTS} >= {seen}", timeout=20_000)   # the whole curve, from the folder
    assert selected_run(page) == run_id

    other = browser.new_context().new_page()   # a second browser attaches to the same run
    other.goto(app_url)
    other.wait_for_function(f"{TRAIN_POINTS} >= {seen}", timeout=20_000)
    assert selected_run(other) == run_id
    other.context.close()

    page.locator("#cancel").click()
    page.wait_for_function("document.querySelector('#run-progress').innerText.includes('cancelled')",
                           timeout=90_000)
    download = page.locator("#adapter-download")
    download.wait_for(state="visible", timeout=10_000)   # a cancelled run keeps its adapter
    with page.expect_download() as info:
        download.click()
    target = tmp_path / "adapter.zip"
    info.value.save_as(target)
    assert "adapter_config.json" in zipfile.ZipFile(target).namelist()
    sync_api.expect(page.locator("#cancel")).to_be_disabled()
