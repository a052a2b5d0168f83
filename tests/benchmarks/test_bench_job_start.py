"""benchmarks/bench_job_start.py runs through: a warm and a cold job through the app's JobManager, each
completed, and the process standing in for the app never imports torch."""

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_a_warm_and_a_cold_job_complete_and_the_app_process_stays_torch_free():
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "bench_job_start.py"), "--reps", "1",
                           "--steps", "2"], capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    out = done.stdout
    assert "rep 1: warm" in out and "rep 1: cold" in out and "warm process ready after" in out
    assert "torch imported False, CUDA initialised False" in out
