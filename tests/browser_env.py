"""Where the browser tests find Chromium, and the one rule for when it is missing (tests/conftest.py applies
it to every test marked `browser`): such a test is skipped, or fails when FINETUNE_REQUIRE_BROWSER=1, so a CI
job that is meant to drive a browser cannot pass by skipping them all.

Chromium is /usr/bin/chromium (apt-get install -y chromium) unless FINETUNE_CHROMIUM names another binary.
Nothing here imports Playwright at import time: conftest reads this module for every test session.
"""

import importlib.util
import os

import pytest

CHROMIUM = os.environ.get("FINETUNE_CHROMIUM", "/usr/bin/chromium")
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
REQUIRED = os.environ.get("FINETUNE_REQUIRE_BROWSER") == "1"


def missing() -> str | None:
    """Why the browser tests cannot run here, or None when they can."""
    if importlib.util.find_spec("playwright") is None:
        return "Playwright is not installed (pip install playwright)"
    if not os.path.exists(CHROMIUM):
        return f"no Chromium at {CHROMIUM} (apt-get install -y chromium, or set FINETUNE_CHROMIUM)"
    return None


def sync_api():
    """playwright.sync_api for a browser test module: without Playwright the module is skipped, or fails to
    import when the browser is required."""
    if REQUIRED:
        import playwright.sync_api

        return playwright.sync_api
    return pytest.importorskip("playwright.sync_api")
