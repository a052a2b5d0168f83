"""Threat: input that costs the server far more than it costs the sender. Before the fix, the 334-byte alias
bomb below, sent to /count as lora.target_modules, made an error message of ~300 MB and hung the app for
minutes; 20,000 nested brackets raised RecursionError; a 5,000-digit integer raised ValueError (a traceback);
a duplicated key silently kept the last value. Each is now one line, from the parser, in well under 100 ms."""

import subprocess
import sys
import time

import pytest

from finetune.errors import RunFileError
from finetune.runfile import parse_run, parse_text
from finetune.runfile.validators import show


def alias_bomb(levels: int = 8) -> str:
    """`a: &a [lol x9]`, `b: &b [*a x9]`, ...: 9**8 (43 million) items once expanded."""
    lines = ["a: &a [" + ", ".join(["lol"] * 9) + "]"]
    for prev, name in zip("abcdefg"[:levels - 1], "bcdefgh"[:levels - 1], strict=True):
        lines.append(f"{name}: &{name} [" + ", ".join([f"*{prev}"] * 9) + "]")
    return "\n".join(lines) + "\n"


BOMB_AS_TARGETS = alias_bomb() + "lora: {target_modules: *h}\n"

REFUSED = {
    "alias bomb": (BOMB_AS_TARGETS, "line 2: aliases (*a) are not allowed in a run file"),
    "5 MB document": ("lora: {r: 8}\n# " + "x" * 5_000_000, "too large for a run file (over 1,000,000 bytes)"),
    "deep nesting": ("a: " + "[" * 20_000 + "]" * 20_000, "nested more than 16 levels deep"),
    "100k values": ("a: [" + ", ".join(f"w{i}" for i in range(100_000)) + "]", "more than 2,000 values"),
    "huge integer": ("lora: {r: " + "9" * 5_000 + "}", "an integer with 5000 digits; at most 20"),
    "duplicate section": ("lora: {r: 8}\nlora: {r: 64}\n", 'line 2: the key "lora" is given twice'),
    "duplicate key": ('{"lora": {"r": 8, "r": 64}}', 'the key "r" is given twice'),
}


@pytest.mark.parametrize("name", REFUSED)
def test_each_costly_input_is_one_line_in_under_100_ms(name):
    text, expected = REFUSED[name]
    parse_text("lora: {r: 8}")   # warm: the first call imports nothing further, but let it settle
    best = float("inf")
    for _ in range(3):   # the best of three: this machine is shared, and a refusal is what is timed
        start = time.perf_counter()
        with pytest.raises(RunFileError) as info:
            parse_run(text)
        best = min(best, time.perf_counter() - start)
    [problem] = info.value.problems
    assert problem.startswith("run file: ") and expected in problem, problem
    assert len(problem) < 200 and "\n" not in problem
    assert best < 0.1, f"{name}: refused in {best * 1000:.0f} ms"


def test_the_bomb_is_the_reported_334_byte_one():
    assert 300 <= len(alias_bomb().encode()) <= 400


def test_an_anchor_without_alias_is_harmless_and_json_still_parses():
    assert parse_text("lora: &l {r: 8}") == {"lora": {"r": 8}}
    assert parse_run('{"lora": {"r": 4, "target_modules": ["q_proj"]}}').lora.r == 4


def test_values_quoted_in_errors_are_cut_to_about_80_characters():
    long_name = "q" * 100_000
    with pytest.raises(RunFileError) as info:
        parse_run(f"lora: {{bias: {long_name}}}")
    assert len(info.value.problems[0]) < 250
    with pytest.raises(RunFileError) as info:   # a long list is cut too, and never walked to its end
        parse_run("lora: {r: [" + ", ".join(["x" * 50] * 1_500) + "]}")
    assert len(info.value.problems[0]) < 200
    assert len(show(list(range(10**6)))) <= 80 and show("x" * 1000).endswith('..."')
    assert show(["q_proj", "v_proj"]) == "['q_proj', 'v_proj']" and show(None) == "null"


def test_an_unknown_key_is_cut_and_a_flood_of_problems_is_capped():
    with pytest.raises(RunFileError) as info:
        parse_run("lora: {" + "k" * 50_000 + ": 1}")
    assert len(info.value.problems[0]) < 200
    many = "lora: {" + ", ".join(f"bad_key_{i}: 1" for i in range(500)) + "}"
    with pytest.raises(RunFileError) as info:
        parse_run(many)
    assert len(info.value.problems) == 31 and info.value.problems[-1] == "... and 470 more problems"


@pytest.mark.slow
def test_the_cli_refuses_a_bomb_file_with_exit_2_and_one_line(tmp_path):
    path = tmp_path / "bomb.yaml"
    path.write_text(BOMB_AS_TARGETS)
    big = tmp_path / "big.yaml"
    big.write_text("# " + "x" * 2_000_000)
    out = subprocess.run([sys.executable, "-m", "finetune", "count", str(path), str(big)], capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 2, out
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 2 and "aliases" in lines[0] and "too large" in lines[1], out.stderr
    assert "Traceback" not in out.stderr
