"""Threat: a regular expression that backtracks for minutes. Before the fix, `(.|.)*Z` as lora.target_modules,
sent to /count with no sign-in, held the server at 93% CPU, and `GET /` and /count timed out for minutes
(CPython's re holds the GIL while it matches); `python -m finetune count` hung too. Now every user pattern
(target_modules, exclude_modules, modules_to_save, layers_pattern, rank_pattern, alpha_pattern) is matched
in a helper process within finetune.model.patterns.LIMIT_S, and refused in one line naming the field.

On the code before the fix these tests fail instead of hanging: a SIGALRM stops a match in this process's
main thread (re checks for signals as it goes), and what would freeze threads runs in a subprocess."""

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from finetune.errors import RunFileError
from finetune.runfile import RunConfig

ROOT = Path(__file__).resolve().parents[2]
LIMIT_S = 1.0                 # what the issue asks for (patterns.LIMIT_S; asserted below)
BOUND_S = LIMIT_S + 3.0       # a refusal's wall time, on a shared 2-core machine (patterns.WALL_S is 3 s)

HOSTILE = {
    "(.|.)*Z": "(.|.)*Z",                    # the issue's
    "(a+)+$": "(a+)+$",                      # the textbook ones: harmless on module names (no run of a's)
    "(x+x+)+y": "(x+x+)+y",
    "(a+)+ on names": "([a-z._0-9]+)+Z",     # the same two, made to bite on module names
    "(x+x+)+y on names": "(.*.*)*Z",
    "nested groups": "(((.*)*)*)*Z",
    "100k characters": "(.|.)*Z" + "|x" * 50_000,
}
HARMLESS = {"(a+)+$", "(x+x+)+y"}   # refused too, but as matching nothing
FIELDS = ["target_modules", "exclude_modules", "modules_to_save", "layers_pattern", "rank_pattern", "alpha_pattern"]


def lora_with(field: str, pattern: str) -> dict:
    """A lora section whose only problem is `pattern` in `field` (the rest of it is valid for the demo)."""
    return {"target_modules": {"target_modules": pattern},
            "exclude_modules": {"target_modules": ["q_proj", "v_proj"], "exclude_modules": pattern},
            "modules_to_save": {"target_modules": ["q_proj"], "modules_to_save": [pattern]},
            "layers_pattern": {"target_modules": ["q_proj"], "layers_to_transform": [0], "layers_pattern": pattern},
            "rank_pattern": {"target_modules": ["q_proj", "v_proj"], "rank_pattern": {pattern: 4}},
            "alpha_pattern": {"target_modules": ["q_proj", "v_proj"], "alpha_pattern": {pattern: 8}}}[field]


def demo_run(lora: dict) -> RunConfig:
    return RunConfig.from_dict({"model": {"name_or_path": "demo"}, "lora": lora})


@contextlib.contextmanager
def within(seconds: float):
    """Fail (instead of hanging) when the block is still running after `seconds`."""
    def stop(*_):
        raise TimeoutError(f"still running after {seconds:g} s")
    previous = signal.signal(signal.SIGALRM, stop)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


@pytest.fixture(autouse=True)
def fresh():
    """Every test matches its patterns anew: no answer from an earlier test's cache."""
    from finetune.model.architecture import inspect_model

    inspect_model("demo").memo.clear()
    with contextlib.suppress(ImportError):
        from finetune.model import patterns
        patterns.forget()


def refused(run: RunConfig) -> tuple[str, float]:
    from finetune.model.count import count_run

    started = time.perf_counter()
    with within(BOUND_S + 3), pytest.raises(RunFileError) as info:
        count_run(run)
    [problem] = info.value.problems
    return problem, time.perf_counter() - started


CASES = [pytest.param(field, name, marks=[] if field == "target_modules" or name == "(.|.)*Z" else pytest.mark.slow)
         for field in FIELDS for name in HOSTILE]


@pytest.mark.parametrize("field, name", CASES)
def test_each_hostile_pattern_is_refused_in_one_line_naming_the_field(field, name):
    problem, seconds = refused(demo_run(lora_with(field, HOSTILE[name])))
    assert problem.startswith(f"lora.{field}: "), problem
    assert len(problem) < 300 and "\n" not in problem
    if name not in HARMLESS:
        assert "took longer than 1 s to match this model's" in problem and "simplify the pattern" in problem
    assert seconds < BOUND_S, f"refused after {seconds:.1f} s"


def test_the_limit_is_the_one_the_issue_asks_for():
    from finetune.model import patterns

    assert patterns.LIMIT_S == LIMIT_S and patterns.RUN_LIMIT_S <= 2 * LIMIT_S and patterns.WALL_S <= BOUND_S


def test_a_refused_pattern_sent_again_is_refused_at_once():
    run = demo_run({"target_modules": "(.|.)*Z"})
    first, _ = refused(run)
    from finetune.model.architecture import inspect_model

    inspect_model("demo").memo.clear()   # the pattern cache alone answers
    again, seconds = refused(run)
    assert again == first and seconds < 0.1


def test_many_hostile_keys_are_refused_at_the_first():
    keys = {f"(.|.)*Z{i}": 4 for i in range(10)}
    problem, seconds = refused(demo_run({"target_modules": ["q_proj"], "rank_pattern": keys}))
    assert problem.startswith('lora.rank_pattern: "(.|.)*Z0" took longer than') and seconds < BOUND_S


def test_a_run_files_patterns_share_one_budget():
    from finetune.model import patterns

    names = ("model.layers.0.self_attn.q_proj",) * 3
    started = time.perf_counter()
    with within(BOUND_S + 3), patterns.budget(0.2), pytest.raises(patterns.TooCostly) as info:
        patterns.find("lora.rank_pattern", "(.|.)*Z", "(.|.)*Z", names)
    assert info.value.problems == ['lora.rank_pattern: "(.|.)*Z": the run file\'s patterns together took longer '
                                   "than 2 s to match this model's module names; simplify them"]
    assert time.perf_counter() - started < 0.2 + 2.0
    with pytest.raises(patterns.TooCostly, match="took longer than 1 s"):   # not remembered as its own verdict
        patterns.find("lora.rank_pattern", "(.|.)*Z", "(.|.)*Z", names)


@pytest.mark.parametrize("pattern, expected", [
    ("(", "missing ), unterminated subpattern at position 0"),
    ("(" * 5000 + ")" * 5000, "groups nested too deeply"),
    ("(?P<idx>x)", None),
])
def test_a_pattern_that_is_not_a_regex_is_one_line(pattern, expected):
    field = "target_modules" if expected else "layers_pattern"   # PEFT's layer regex already names idx
    problem, _ = refused(demo_run(lora_with(field, pattern)))
    assert problem.startswith(f"lora.{field}: ") and "is not a valid regular expression: " in problem, problem
    assert expected is None or problem.endswith(expected)


PLAIN = [r".*\.(q_proj|v_proj)", r"model.layers.\d+.self_attn.(q|k|v)_proj", r"(?i).*Q_PROJ", r".*(?<!k)_proj",
         r"model\.layers\.[01]\..*", r"(?:^|.*\.)(?P<x>mlp)\.(up|down)_proj", "lm_head", r"\w+\.\w+", "é|.*"]


@pytest.mark.parametrize("regex", PLAIN)
@pytest.mark.parametrize("how", ["fullmatch", "match"])
def test_ordinary_patterns_match_exactly_as_stdlib_re(regex, how):
    import re

    from finetune.model import patterns
    from finetune.model.architecture import inspect_model

    names = tuple(m.name for m in inspect_model("demo").modules)
    expected = [getattr(re, how)(regex, n) is not None for n in names]
    assert patterns.find("lora.target_modules", regex, regex, names, how) == expected
    if "(?P<x>" in regex:
        groups = [m.group("x") if (m := re.match(regex, n)) else None for n in names]
        assert patterns.find("lora.target_modules", regex, regex, names, "match", "x") == groups


def test_ordinary_patterns_in_every_field_count_as_their_lists_do():
    from finetune.model.count import count_run

    listed = count_run(demo_run({"target_modules": ["q_proj", "v_proj"], "rank_pattern": {"q_proj": 4},
                                 "alpha_pattern": {"v_proj": 32}}))
    regex = count_run(demo_run({"target_modules": r".*\.(q_proj|v_proj)", "rank_pattern": {r"self_attn\.q_.*": 4},
                                "alpha_pattern": {r".*v_proj": 32}}))
    assert (regex.trainable, regex.total, regex.modules) == (listed.trainable, listed.total, listed.modules)
    assert regex.adapter_bytes == listed.adapter_bytes
    layers = count_run(demo_run({"target_modules": ["q_proj"], "layers_to_transform": [1],
                                 "layers_pattern": ["lay.rs", "layers"], "modules_to_save": ["lm_head"]}))
    assert layers.modules["q_proj"]["layers"] == 1 and layers.modules["lm_head"]["full"]


@pytest.mark.parametrize("regex", [*HOSTILE.values(), "(a|a)" * 30 + "b", ".*" * 5 + "Z", r"(\w|\.)*Z",
                                   r"(.*\.)?((.|.)*Z)$", r"(a)\1", r"(?=.*)+x", "(?(1)a|b)"])
def test_no_hostile_pattern_is_deemed_cheap_enough_to_match_in_process(regex):
    from finetune.model.architecture import inspect_model
    from finetune.model.pattern_cost import cheap

    assert not cheap(regex, tuple(m.name for m in inspect_model("demo").modules))


def test_the_patterns_users_type_are_matched_in_process_in_under_10_ms():
    from finetune.model.architecture import inspect_model
    from finetune.model.pattern_cost import cheap

    names = tuple(m.name for m in inspect_model("demo").modules)
    for regex in [r".*\.(q_proj|v_proj)", r"model.layers.\d+.self_attn.(q|k|v)_proj", "lm_head", r"(.*\.)?(q_proj)$"]:
        assert cheap(regex, names), regex
    import re

    for regex in PLAIN:   # the bound is an upper bound: what it lets through is fast in fact
        if cheap(regex, names):
            started = time.perf_counter()
            [re.fullmatch(regex, n) for n in names]
            assert time.perf_counter() - started < 0.01


THREADS = """
import json, sys, threading, time
from finetune.model.count import count_run
from finetune.runfile import RunConfig
def run(lora):
    return RunConfig.from_dict({"model": {"name_or_path": "demo"}, "lora": lora})
count_run(run({"r": 8}))   # the skeleton is built before timing
hostile = threading.Thread(target=lambda: __import__("contextlib").suppress(Exception).__enter__() or
                           count_run(run({"target_modules": "(.|.)*Z"})), daemon=True)
hostile.start()
time.sleep(0.2)
times = []
for i in range(5):
    started = time.perf_counter()
    count_run(run({"target_modules": rf".*\\.(q|v)_proj|x{i}"}))
    times.append(time.perf_counter() - started)
print(json.dumps(times))
"""


def test_other_threads_count_while_a_hostile_pattern_is_matched():
    """The app counts in worker threads: one hostile pattern must not stall the others. (In a subprocess: a
    match holding the GIL in this process would freeze the test itself.)"""
    proc = subprocess.run([sys.executable, "-c", THREADS], cwd=ROOT, capture_output=True, text=True, timeout=60,
                          env=dict(os.environ, PYTHONPATH=str(ROOT)))
    times = json.loads(proc.stdout.splitlines()[-1])
    assert max(times) < 0.5, times


def helpers_alive() -> int:
    """This process's helper interpreters, from /proc."""
    alive = 0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError):
            if int(stat.read_text().rsplit(")", 1)[1].split()[1]) == os.getpid() and \
                    b"pattern_helper" in (stat.parent / "cmdline").read_bytes():
                alive += 1
    return alive


def test_concurrent_hostile_patterns_use_a_bounded_pool(monkeypatch):
    from finetune.model import patterns

    monkeypatch.setattr(patterns, "LIMIT_S", 0.3)
    names = tuple(f"model.layers.{i}.self_attn.q_proj" for i in range(4))
    answers: list = []

    def attack(i):
        try:
            patterns.find("lora.target_modules", "(.|.)*Z", f"(.|.)*Z{i}", names)
        except RunFileError as exc:
            answers.append(exc.problems[0])

    started = time.perf_counter()
    threads = [threading.Thread(target=attack, args=(i,)) for i in range(12)]
    for t in threads:
        t.start()
    most = 0
    while any(t.is_alive() for t in threads) and time.perf_counter() - started < 30:
        most = max(most, helpers_alive())
        time.sleep(0.05)
    # each one refused: too slow, or (on a busy machine) no helper freed within WALL_S
    assert len(answers) == 12 and all("took longer than 0.3 s" in a or "the server is busy" in a for a in answers)
    assert most <= patterns.MAX_HELPERS and helpers_alive() <= patterns.KEEP_IDLE
    # 12 x 0.3 s of CPU, MAX_HELPERS at a time at nice 10: seconds on a quiet machine, more on a busy one
    assert time.perf_counter() - started < 30


def test_a_helper_that_does_not_answer_in_time_is_replaced(monkeypatch):
    from finetune.model import patterns

    monkeypatch.setattr(patterns, "LIMIT_S", 30.0)   # the CPU timer would not stop it: the wall-time backstop must
    monkeypatch.setattr(patterns, "WALL_S", 0.5)
    names = ("model.layers.0.self_attn.q_proj",)
    with within(10), pytest.raises(patterns.TooCostly):
        patterns.find("lora.target_modules", "(.|.)*Z", "(.|.)*Z", names)
    assert patterns.find("lora.target_modules", ".*q_proj", ".*q_proj", names) == [True]


def test_cli_count_exits_2_with_one_error_line_in_bounded_time(tmp_path):
    def count(lora: dict) -> tuple[subprocess.CompletedProcess, float]:
        path = tmp_path / "run.json"
        path.write_text(json.dumps({"model": {"name_or_path": "demo"}, "lora": lora}))
        started = time.perf_counter()
        proc = subprocess.run([sys.executable, "-m", "finetune", "count", str(path)], cwd=ROOT, capture_output=True,
                              text=True, timeout=120)
        return proc, time.perf_counter() - started

    normal, baseline = count({"target_modules": r".*\.(q|v)_proj"})
    assert normal.returncode == 0, normal.stderr
    hostile, seconds = count({"target_modules": "(.|.)*Z"})
    assert hostile.returncode == 2
    [line] = hostile.stderr.strip().splitlines()
    assert line.startswith('error: lora.target_modules: "(.|.)*Z" took longer than 1 s'), line
    assert seconds < baseline + BOUND_S, (seconds, baseline)


def test_the_job_refuses_it_before_loading_anything(tmp_path):
    from finetune.train.job import setup

    path = tmp_path / "run.json"
    path.write_text(json.dumps({"model": {"name_or_path": "demo"}, "data": {"path": "demo"},
                                "lora": {"target_modules": "(.|.)*Z"},
                                "training": {"output_dir": str(tmp_path / "out")}}))
    started = time.perf_counter()
    with within(60), pytest.raises(RunFileError) as info:
        setup(str(path), resume=False)
    assert [p for p in info.value.problems if p.startswith("lora.target_modules: ")] == \
        ["lora.target_modules: \"(.|.)*Z\" took longer than 1 s to match this model's 58 module names; simplify "
         "the pattern"]
    assert time.perf_counter() - started < 30


@pytest.mark.slow
def test_the_app_answers_while_a_hostile_pattern_is_matched(tmp_path):
    """The issue's report, over HTTP: /count with (.|.)*Z (three in a row, each new) in one thread; meanwhile
    the page and an ordinary /count (a new regex each time, so a helper matches it) answer within a second."""
    import httpx
    from appserver import serve_app
    from gradio_client import Client
    from gradio_client.exceptions import AppError

    with serve_app(tmp_path / "runs") as url, httpx.Client(timeout=10) as http:
        api = Client(url, verbose=False, httpx_kwargs={"timeout": 60})
        api.predict("lora: {r: 8}", api_name="/count")   # the first count imports the counting code
        refusals: list = []

        def attack():
            for i in range(3):
                started = time.perf_counter()
                with contextlib.suppress(AppError):
                    api.predict(f"lora: {{target_modules: '(.|.)*Z{i}'}}", api_name="/count")
                    continue
                refusals.append(time.perf_counter() - started)

        attacker = threading.Thread(target=attack, daemon=True)
        attacker.start()
        time.sleep(0.3)
        page, counts, i = [], [], 0
        while attacker.is_alive() and i < 30:
            started = time.perf_counter()
            assert http.get(f"{url}/").status_code == 200
            page.append(time.perf_counter() - started)
            started = time.perf_counter()
            answer = http.post(f"{url}/gradio_api/run/count",
                               json={"data": [f"lora: {{target_modules: '.*\\.(q|v)_proj|x{i}'}}"]}).json()
            counts.append(time.perf_counter() - started)
            assert answer.get("data", [{}])[0].get("trainable") == 14336, answer   # r 16 on q and v
            i += 1
        attacker.join(3 * BOUND_S)
    assert len(refusals) == 3 and max(refusals) < BOUND_S, refusals
    assert page and max(page) < 1.0 and max(counts) < 1.0, (page, counts)
