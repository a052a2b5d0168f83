"""Shared test set-up: no test touches the network (the Hub code paths are tested up to that boundary); the
fixtures that tests in several modules share."""

import os
import sys

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
# The on-disk skeleton cache (finetune/model/skeleton_cache.py): a fresh one per test session, never the user's.
if "FINETUNE_CACHE_DIR" not in os.environ:
    import atexit
    import shutil
    import tempfile

    os.environ["FINETUNE_CACHE_DIR"] = tempfile.mkdtemp(prefix="finetune-test-cache-")
    atexit.register(shutil.rmtree, os.environ["FINETUNE_CACHE_DIR"], True)


import pytest


@pytest.fixture(scope="session")
def plain_model_dir(tmp_path_factory):
    """A tiny random Llama (about 70k parameters) whose tokenizer has no chat template: a "base" model, saved
    as a local folder like a Hub download. Its tokenizer is the demo's, so both see the same words."""
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    from finetune.demo import MODEL_DIR

    folder = tmp_path_factory.mktemp("plain-model")
    tokenizer = AutoTokenizer.from_pretrained(MODEL_DIR)
    tokenizer.chat_template = None
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
                         tie_word_embeddings=True, pad_token_id=tokenizer.pad_token_id,
                         bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id)
    LlamaForCausalLM(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    (folder / "chat_template.jinja").unlink(missing_ok=True)
    return folder


@pytest.fixture
def write_jsonl(tmp_path):
    """write_jsonl(rows, name="data.jsonl") -> path: a JSONL file of the given dicts (or raw lines, as str)."""
    import json

    def write(rows, name="data.jsonl"):
        path = tmp_path / name
        path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows),
                        encoding="utf-8")
        return path

    return write


@pytest.fixture(scope="module")
def built_page(tmp_path_factory):
    """The app's page built on a job manager of its own, with no server and no browser: what handler tests
    call. A module's tests share one (building a page takes a second or two)."""
    from types import SimpleNamespace

    from finetune.jobs import JobManager
    from finetune.ui import build_page

    jobs = JobManager(tmp_path_factory.mktemp("runs"))
    demo, ui = build_page(jobs)
    yield SimpleNamespace(demo=demo, ui=ui, jobs=jobs)
    jobs.shutdown()


@pytest.fixture
def form(built_page):
    """A fresh copy of the built page's opening form state, as its handlers take it: (values, extra, model info)."""
    import copy

    ui = built_page.ui
    return copy.deepcopy(ui.values.value), {}, copy.deepcopy(ui.model_info.value)


@pytest.fixture(scope="module")
def runs_dir(tmp_path_factory, request):
    """The runs folder of the module's app (app_url), in a folder named after the module (the app's log is there)."""
    return tmp_path_factory.mktemp(request.module.__name__.rpartition(".")[2]) / "runs"


@pytest.fixture(scope="module")
def app_env():
    """Environment the module's app gets on top of tests/appserver.py's; a module overrides this to add some."""
    return {}


@pytest.fixture(scope="module")
def app_url(runs_dir, app_env):
    """The app in its own process on a free local port (tests/appserver.py), one per test module."""
    from appserver import serve_app

    with serve_app(runs_dir, env=app_env) as url:
        yield url


@pytest.fixture(scope="module")
def browser():
    """Headless Chromium, one per module (tests/browser_page.py); each test opens its own context on it."""
    from browser_page import launch_browser  # imports Playwright: only a `browser` test that can run gets here

    with launch_browser() as b:
        yield b


# A stand-in for a job hung where no signal handler runs: it ignores SIGTERM (the real job always stops on it).
HUNG_JOB = [sys.executable, "-c", "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
            "print('hung', flush=True); time.sleep(120)"]


@pytest.fixture
def job_managers(tmp_path):
    """job_managers(hung=False, **kw) -> a JobManager on tmp_path/"runs" (one slot, polled every 0.2 s unless kw
    says otherwise), whose jobs are HUNG_JOB with `hung`. At the end the managers stop and every job they left
    running is killed."""
    import signal

    from finetune.jobs import JobManager
    from finetune.jobs.process import is_job_process, signal_job
    from finetune.train.runfolder import RunFolder

    made = []

    def make(hung: bool = False, **kw):
        if hung:
            kw["command"] = HUNG_JOB
        manager = JobManager(tmp_path / "runs", **{"slots": 1, "poll_interval": 0.2, **kw})
        made.append(manager)
        return manager

    yield make
    for manager in made:
        manager.shutdown()
    for path in (tmp_path / "runs").iterdir():
        folder = RunFolder(path)
        pid = folder.read_status().get("pid") if path.is_dir() else None
        if pid and is_job_process(pid, folder):
            signal_job(pid, signal.SIGKILL)


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item):
    """A `browser` test without its browser is skipped, or fails with FINETUNE_REQUIRE_BROWSER=1
    (tests/browser_env.py), before its fixtures start an app for a browser that cannot come."""
    if item.get_closest_marker("browser") is None:
        return
    import browser_env

    if (reason := browser_env.missing()) is not None:
        if browser_env.REQUIRED:
            pytest.fail(f"FINETUNE_REQUIRE_BROWSER=1 but {reason}", pytrace=False)
        pytest.skip(reason)
