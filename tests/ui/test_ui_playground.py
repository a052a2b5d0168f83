"""The Playground in a real browser, and its HTTP endpoints: a prompt gets the base model's and the adapter's
answers side by side (they differ: the adapter says its trained phrase), and /generate and /push answer
through gradio_client. The app runs in its own process (tests/appserver.py) with the Hub offline."""


import browser_env
import pytest
from adapter_run import PHRASE, QUESTIONS, copy_run, fixed_phrase_run

sync_api = browser_env.sync_api()


pytestmark = [pytest.mark.slow, pytest.mark.browser]


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    from appserver import serve_app

    run = fixed_phrase_run(tmp_path_factory)
    runs_dir = tmp_path_factory.mktemp("playground") / "runs"
    copy_run(run, runs_dir)
    with serve_app(runs_dir) as url:
        yield url, run.name


def answer(page, elem_id: str) -> str:
    return page.locator(f"#{elem_id} textarea").input_value()


def test_a_prompt_gets_both_answers_side_by_side(served, browser):   # browser: tests/conftest.py
    url, run_id = served
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    try:
        page.goto(url)
        page.wait_for_function("id => (document.querySelector('#playground-run input')?.value || '').startsWith(id)",
                               arg=run_id, timeout=30_000)
        page.locator("#playground-prompt textarea").fill(QUESTIONS[0])
        page.locator("#playground-go").click()
        # Worker start and model load come first (tens of seconds on a busy 2-core machine).
        page.wait_for_function("() => (document.querySelector('#playground-status')?.innerText || '').startsWith('Done')",
                               timeout=180_000)
        base, adapter = answer(page, "answer-base"), answer(page, "answer-adapter")
        assert adapter == PHRASE
        assert base and base != adapter
    finally:
        page.close()


def test_generate_and_push_endpoints(served):
    from gradio_client import Client
    from gradio_client.exceptions import AppError

    url, run_id = served
    client = Client(url, verbose=False)
    answers = client.predict(run_id, QUESTIONS[1], 24, 0.0, api_name="/generate")
    assert answers["adapter"] == PHRASE and answers["base"] != PHRASE
    with pytest.raises(AppError, match="no run"):
        client.predict("no-such-run", "hi", 8, 0.0, api_name="/generate")
    with pytest.raises(AppError, match="max_new_tokens: must be a whole number"):
        client.predict(run_id, "hi", 0, 0.0, api_name="/generate")
    # The Hub is unreachable here (offline): the push fails at that boundary, in one line.
    with pytest.raises(AppError, match="push to alice/mouse failed: huggingface_hub is in offline mode"):
        client.predict(run_id, "alice/mouse", False, api_name="/push")
    with pytest.raises(AppError, match='repo_id: must be "owner/name"'):
        client.predict(run_id, "mouse", False, api_name="/push")
