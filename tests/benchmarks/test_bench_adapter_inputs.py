"""benchmarks/bench_adapter_inputs.py runs through on the CPU: both sides timed, fewer bytes kept as is, and the
same loss and gradients to the bit."""

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_both_sides_run_and_give_the_same_bits():
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "bench_adapter_inputs.py"), "--steps", "1",
                           "--reps", "2", "--batch", "1", "--length", "32"],
                          capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    out = done.stdout
    kept = {side: float(m) for side, m in re.findall(r"^  (peft|as is)\s+[\d.]+ ms/step, kept\s+([\d.]+) MiB", out,
                                                     re.M)}
    assert kept.keys() == {"peft", "as is"} and kept["as is"] < kept["peft"], out
    assert out.rstrip().endswith("same loss and gradients to the bit: True"), out
