"""The browser tests' rule (tests/browser_env.py, applied in tests/conftest.py): with no browser where
FINETUNE_CHROMIUM points, every test marked `browser` is skipped, and with FINETUNE_REQUIRE_BROWSER=1 every
one of them fails. Run as a separate pytest over the browser modules, with a browser path that does not exist."""

import os
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow   # a second pytest session collecting the browser modules

TESTS = Path(__file__).parents[1]
BROWSER_MODULES = sorted(str(p) for p in TESTS.rglob("test_*.py") if "pytest.mark.browser" in p.read_text())


def run_browser_tests(tmp_path, require: bool) -> list[ET.Element]:
    env = {**os.environ, "FINETUNE_CHROMIUM": str(tmp_path / "no-chromium"),
           "FINETUNE_REQUIRE_BROWSER": "1" if require else "0"}
    report = tmp_path / "report.xml"
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-m", "browser", f"--junitxml={report}",
                           *BROWSER_MODULES], cwd=TESTS.parent, env=env, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == (1 if require else 0), done.stdout[-3000:] + done.stderr[-3000:]
    cases = ET.parse(report).getroot().iter("testcase")
    return list(cases)


def test_the_browser_modules_are_found():
    assert len(BROWSER_MODULES) >= 8 and any(p.endswith("test_ui_browser.py") for p in BROWSER_MODULES)


def test_without_a_browser_every_browser_test_is_skipped(tmp_path):
    cases = run_browser_tests(tmp_path, require=False)
    assert len(cases) >= 20
    outcomes = [[child.tag for child in case] for case in cases]
    assert all(tags == ["skipped"] for tags in outcomes), outcomes
    assert all("no Chromium at" in case.find("skipped").get("message", "") for case in cases)


def test_with_the_browser_required_every_browser_test_fails(tmp_path):
    cases = run_browser_tests(tmp_path, require=True)
    assert len(cases) >= 20
    for case in cases:
        [problem] = [child for child in case if child.tag in ("error", "failure")]
        assert "FINETUNE_REQUIRE_BROWSER=1 but no Chromium at" in problem.get("message", ""), case.get("name")
    assert not any(case.find("skipped") is not None for case in cases)
