"""The app in a real browser: the live count follows the sliders and ticks exactly, a bad setting blocks
Launch, presets reset what they do not set, and runs draw their loss curves: several in a row from one page,
one started through the HTTP API, after a reload and in a second browser; runs are compared, cancelled,
resumed and loaded back into the form.

A chart is checked by what a user sees: a screenshot of it, in which the pixels of the curve's colour are
counted (the frame, grid and labels are grey; the legend's symbol is a few dozen pixels). An empty chart,
with its axes and grid, has none: a canvas or an svg element alone proves nothing.

Headless Chromium from the system driven by Playwright; skipped when it is missing, failed when
FINETUNE_REQUIRE_BROWSER=1 (tests/browser_env.py).
The app runs in its own process with its runs in a temporary folder and the Hub offline.
"""

import json
import re
import time
import zipfile

import browser_env
import pytest
import yaml

sync_api = browser_env.sync_api()

from browser_page import (  # noqa: E402  (after the skip: it imports playwright)
    BEST,
    COUNT_TOASTS,
    CURVE_PX,
    EVAL,
    TRAIN,
    TRAIN_POINTS,
    X_LABELS,
    colour_pixels,
    expected_trainable,
    launch_from_form,
    open_page,
    selected_run,
    set_number,
    steps_of,
    wait_for_count,
    wait_for_curve,
    wait_for_line_while_running,
    wait_for_state,
)

pytestmark = [pytest.mark.slow, pytest.mark.browser]   # each starts a browser on the app


@pytest.fixture
def page(browser, app_url):   # browser, app_url and runs_dir: tests/conftest.py
    with open_page(browser, app_url) as page:
        yield page


def test_no_run_yet_offers_no_cancel(page):
    """Before any run exists there is nothing to cancel or resume: no (pink, disabled) buttons for it."""
    page.wait_for_function("document.querySelector('#run-progress').innerText.includes('No run yet')",
                           timeout=10_000)
    sync_api.expect(page.locator("#cancel")).to_be_hidden()
    sync_api.expect(page.locator("#resume")).to_be_hidden()


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


def test_a_run_streams_its_loss_reattaches_after_reload_cancels_and_resumes(page, browser, app_url, runs_dir, tmp_path):
    set_number(page, "max-steps", 500)      # long enough to still be running when we cancel it
    set_number(page, "batch-size", 1)
    set_number(page, "grad-accum", 1)
    page.wait_for_function("document.querySelector('#run-file').innerText.includes('max_steps: 500')")
    page.locator("#launch").click()
    page.wait_for_function("document.querySelector('#run-select input').value.includes('demo')", timeout=15_000)
    run_id = selected_run(page)

    page.wait_for_function(f"{TRAIN_POINTS} >= 2", timeout=180_000)   # the job starts in ~30 s on 2 cores
    wait_for_curve(page, least=100, while_text="running")   # drawn, not just in the DOM
    seen = page.evaluate(TRAIN_POINTS)

    page.reload()
    page.wait_for_function(f"{TRAIN_POINTS} >= {seen}", timeout=60_000)   # the whole curve, from the folder
    assert selected_run(page) == run_id
    wait_for_curve(page, least=100)

    other = browser.new_context().new_page()   # a second browser attaches to the same run
    other.goto(app_url)
    other.wait_for_function(f"{TRAIN_POINTS} >= {seen}", timeout=60_000)
    assert selected_run(other) == run_id
    other.context.close()

    page.locator("#cancel").click()
    wait_for_state(page, "cancelled", timeout=90, folder=runs_dir / run_id)
    download = page.locator("#adapter-download")
    download.wait_for(state="visible", timeout=10_000)   # a cancelled run keeps its adapter
    with page.expect_download() as info:
        download.click()
    target = tmp_path / "adapter.zip"
    info.value.save_as(target)
    assert "adapter_config.json" in zipfile.ZipFile(target).namelist()
    sync_api.expect(page.locator("#cancel")).to_be_hidden()

    # It saved a checkpoint when it stopped: Resume queues `train RUN --resume` in the same folder, and the
    # curve goes on from the checkpoint's step with no step logged twice.
    stopped_at = steps_of(runs_dir, run_id)[-1]
    page.locator("#resume").click()
    page.wait_for_function("document.querySelector('#run-progress').innerText.match(/running|queued/)",
                           timeout=30_000)
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and steps_of(runs_dir, run_id)[-1] <= stopped_at + 2:
        time.sleep(1)
    steps = steps_of(runs_dir, run_id)
    assert steps[-1] > stopped_at + 2 and len(steps) == len(set(steps)) and steps == sorted(steps)
    assert selected_run(page) == run_id
    page.locator("#cancel").click()
    wait_for_state(page, "cancelled", timeout=120)


def test_a_preset_resets_what_it_does_not_set(page):
    """QLoRA then Unsloth: Unsloth says nothing of quantization, optimizer or max_grad_norm, so they go back
    to the defaults instead of keeping QLoRA's 4-bit, paged AdamW and 0.3; "applied" is said once."""
    def pick(title):
        page.locator("#preset input").click()
        page.get_by_role("option").filter(has_text=title).click()

    pick("Dettmers")
    page.wait_for_function("document.querySelector('#run-file').innerText.includes('quantization: 4bit')",
                           timeout=30_000)
    page.evaluate(COUNT_TOASTS, "Preset unsloth applied")   # toasts vanish after a while: count as they come
    pick("Unsloth")
    page.wait_for_function("""() => { const t = document.querySelector('#run-file').innerText;
        return t.includes('quantization: none') && !t.includes('paged_adamw') && !t.includes('max_grad_norm: 0.3')
               && t.includes('gradient_checkpointing: true'); }""", timeout=30_000)
    sync_api.expect(page.locator("#quantization input[value='none']")).to_be_checked()
    sync_api.expect(page.locator("#lora-r input[type=number]")).to_have_value("16")
    page.wait_for_function("window.__toasts >= 1", timeout=15_000)
    time.sleep(1.5)
    assert page.evaluate("window.__toasts") == 1
    box = page.locator("#preset input")   # the longest preset title fits its box
    pick("blog post")
    page.wait_for_function("document.querySelector('#preset input').value.includes('Trainer recipe')")
    assert box.evaluate("e => e.scrollWidth <= e.clientWidth")


def test_three_runs_in_a_row_from_one_page_each_draw_their_curve(page, runs_dir):
    """The reported failure: in one page, run after run launched from the form, the chart stayed empty (its
    colour scale was built from the empty first data). Each run must draw while it trains and keep its
    curve when done, with whole-number steps on the axis, and the log box must end on the log's last line."""
    for r in (4, 8, 12):
        # 40 steps: a 12-step demo run now trains in about a second, less than the page's one-second poll, so
        # "drawn while it trains" could not be seen before the run completed.
        run_id = launch_from_form(page, r, steps=40)
        wait_for_line_while_running(page)   # drawn while it trains
        wait_for_state(page, "completed", timeout=300)
        assert selected_run(page) == run_id
        time.sleep(2.5)   # a few more polls: the curve must stay
        assert colour_pixels(page, "#loss-plot", TRAIN) >= CURVE_PX
        labels = page.evaluate(X_LABELS)
        assert labels and all(re.fullmatch(r"\d+", t) for t in labels), labels   # steps, not 0.0, 0.5, ...
        log = page.locator("#run-log textarea")
        page.wait_for_function("document.querySelector('#run-log textarea').value.includes('completed:')",
                               timeout=10_000)
        page.wait_for_function("() => { const t = document.querySelector('#run-log textarea');"
                               "        return t.scrollTop >= t.scrollHeight - t.clientHeight - 2; }", timeout=5_000)
        first_line = log.input_value().split("\n", 1)[0]
        full = (runs_dir / run_id / "train.log").read_text()
        assert full.startswith(first_line) or f"\n{first_line}\n" in full   # not cut mid-line


def test_a_run_started_through_the_api_draws_in_an_open_page(page, browser, app_url, runs_dir):
    """A page showing a finished run follows a run launched through /launch, and draws its train and eval
    loss, with a rule at its best evaluation; a run another page launches is listed within seconds but does
    not take the page over."""
    from gradio_client import Client

    run_text = ("model: {name_or_path: demo}\nlora: {r: 6}\ndata: {path: demo, eval_size: 16}\n"
                "training: {max_steps: 12, eval_steps: 3}\n")   # with eval loss: a second series
    page.wait_for_function("document.querySelector('#run-progress').innerText.trim() !== ''", timeout=20_000)
    api_run = Client(app_url, verbose=False).predict(run_text, api_name="/launch")
    page.wait_for_function("id => document.querySelector('#run-select input').value.startsWith(id + ' ')",
                           arg=api_run, timeout=10_000)
    wait_for_line_while_running(page)
    wait_for_state(page, "completed", timeout=300)
    assert colour_pixels(page, "#loss-plot", TRAIN) >= CURVE_PX
    # Eval loss at steps 3, 6, 9, 12 on the axis's 40 steps (plots.MIN_SPAN): a short line, 110-130 pixels of
    # its colour; the legend's symbol alone has 24. (150 was the whole count on a quiet run: no margin.)
    wait_for_curve(page, rgb=EVAL, least=80, timeout=10)
    legend = page.locator("#loss-plot .role-legend-label text").evaluate_all("els => els.map(e => e.textContent)")
    assert legend == ["train", "eval", "best eval"], legend
    wait_for_curve(page, rgb=BEST, least=120, timeout=10)   # a rule across the curves (the legend's symbol: ~30)
    evals = [(r["step"], r["eval_loss"]) for r in map(json.loads, (runs_dir / api_run / "metrics.jsonl")
                                                       .read_text().splitlines()) if "eval_loss" in r]
    best = min(evals, key=lambda e: e[1])   # the first of equals, as the Trainer keeps it
    marks = page.locator('#loss-plot .mark-symbol path[aria-label*="series: best eval"]') \
        .evaluate_all("els => els.map(e => e.getAttribute('aria-label'))")
    assert marks and all(f"step: {best[0]};" in m for m in marks), (best, evals, marks)

    other = browser.new_context(viewport={"width": 1400, "height": 1000}).new_page()
    other.goto(app_url)
    other.wait_for_selector("#param-count .trainable")
    theirs = launch_from_form(other, 5, steps=4)
    page.locator("#run-select input").click()   # listed in this page's selector...
    page.get_by_role("option").filter(has_text=theirs).wait_for(timeout=10_000)
    page.keyboard.press("Escape")
    assert selected_run(page) == api_run        # ...but this page stays on its run
    wait_for_state(other, "completed", timeout=300)
    other.context.close()


def api_run(client, run_text: str, timeout: float = 300) -> str:
    """Launch through /launch and wait until the run is completed; its id."""
    run_id = client.predict(run_text, api_name="/launch")
    deadline = time.monotonic() + timeout
    while (state := client.predict(run_id, api_name="/status")["state"]) != "completed":
        assert state != "failed" and time.monotonic() < deadline, f"{run_id}: {state}"
        time.sleep(1)
    return run_id


def test_compare_two_runs_and_load_one_into_the_form(page, app_url, runs_dir):
    """Two runs overlaid, one colour each, the diff naming the keys that differ; then one run's settings
    loaded back into the form. (Their learning rates differ by 100x, so the curves part: two runs that differ
    only in r draw nearly the same line, and the second hides the first.)"""
    from gradio_client import Client

    from finetune.model.count import count_run
    from finetune.runfile import load_run

    client = Client(app_url, verbose=False)
    runs = {r: api_run(client, f"model: {{name_or_path: demo}}\nlora: {{r: {r}}}\n"
                                f"training: {{max_steps: 10, learning_rate: {lr}, logging_steps: 1}}\n")
            for r, lr in ((4, 0.002), (8, 0.00002))}
    row = page.locator("#runs-table [role=row]").filter(has_text=runs[4]).first   # the runs table has each run
    row.wait_for(timeout=10_000)
    trainable = count_run(load_run(runs_dir / runs[4] / "run.yaml")).trainable
    assert f"{trainable:,}" in row.inner_text() and "completed" in row.inner_text()
    table = page.locator("#runs-table").inner_text()
    assert table.index(runs[8]) < table.index(runs[4])   # newest first
    for r in (4, 8):
        page.locator("#compare-runs input").click()
        page.get_by_role("option").filter(has_text=runs[r]).click()
    page.keyboard.press("Escape")
    page.wait_for_function("""() => { const t = document.querySelector('#config-diff').innerText;
        return t.includes('lora.r: 4 | 8') && t.includes('training.learning_rate: 0.002 | 2e-05'); }""",
                           timeout=15_000)
    assert "output_dir" not in page.locator("#config-diff").inner_text()
    wait_for_curve(page, "#compare-plot", TRAIN, least=CURVE_PX, timeout=20)   # run 1's colour
    wait_for_curve(page, "#compare-plot", EVAL, least=CURVE_PX, timeout=20)    # run 2's colour

    page.locator("#run-select input").click()
    page.get_by_role("option").filter(has_text=runs[4]).click()
    page.wait_for_function("id => document.querySelector('#run-progress').innerText.includes('completed')"
                           " && document.querySelector('#run-select input').value.startsWith(id)", arg=runs[4],
                           timeout=10_000)
    page.locator("#clone").click()
    sync_api.expect(page.locator("#lora-r input[type=number]")).to_have_value("4", timeout=15_000)
    page.wait_for_function("document.querySelector('#run-file').innerText.includes('max_steps: 10\\n')")
