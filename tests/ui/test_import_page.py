"""The page's "Load a run file" takes an Axolotl config and a PEFT adapter_config.json too (imported as
`python -m finetune import` does), in a real browser."""

import json

import browser_env
import pytest
import yaml

sync_api = browser_env.sync_api()

from browser_page import launch_browser  # noqa: E402  (after the skip: it imports playwright)

pytestmark = [pytest.mark.slow, pytest.mark.browser]


def load(page, path):
    with page.expect_file_chooser() as chooser:
        page.locator("#load-run").click()
    chooser.value.set_files(path)


def test_axolotl_and_peft_configs_fill_the_form(tmp_path):
    from appserver import serve_app

    axolotl = tmp_path / "lora.yml"
    axolotl.write_text(yaml.safe_dump({"base_model": "demo", "adapter": "lora", "lora_r": 24, "lora_alpha": 48,
                                       "lora_target_modules": ["q_proj", "v_proj"], "sequence_len": 96,
                                       "micro_batch_size": 3, "flash_attention": True}))
    adapter = tmp_path / "adapter_config.json"
    adapter.write_text(json.dumps({"peft_type": "LORA", "task_type": "CAUSAL_LM", "r": 12, "lora_alpha": 6,
                                   "target_modules": ["k_proj", "o_proj"], "megatron_core": "megatron.core"}))
    with serve_app(tmp_path / "runs") as url, launch_browser() as browser:
        page = browser.new_page()
        page.goto(url)
        page.wait_for_selector("#param-count .trainable")
        load(page, axolotl)
        page.wait_for_function("document.querySelector('#run-file').innerText.includes('lora_alpha: 48')",
                               timeout=60_000)
        text = page.locator("#run-file").inner_text()
        assert "r: 24" in text and "max_length: 96" in text and "per_device_train_batch_size: 3" in text
        sync_api.expect(page.get_by_text("flash_attention: not carried over")).to_be_visible(timeout=30_000)
        load(page, adapter)
        page.wait_for_function("document.querySelector('#run-file').innerText.includes('lora_alpha: 6')",
                               timeout=60_000)
        sync_api.expect(page.locator("#target-modules input:checked")).to_have_count(2)
        assert "Traceback" not in page.content()
