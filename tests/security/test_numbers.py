"""Threat: a number the checks let through that breaks what comes after them. Before the fix an integer field
took any float with an integral value, however large: `training.max_steps: 1e100` passed /count and /launch,
the job wrote a 101-digit integer into run.yaml and then refused its own run.yaml (the run "ended without a
final status"), and /status failed in Gradio with "Integer exceeds 64-bit range"; `per_device_train_batch_size:
1e15` passed too. Now every integer field has bounds a real run can use, whatever the notation, and what the
checks accept is a real int that survives the job's round trip through run.yaml."""

import dataclasses
import math

import pytest

from finetune.errors import RunFileError
from finetune.runfile import SECTIONS, RunConfig, load_run, parse_run
from finetune.runfile.allowlist import ALLOWED
from finetune.runfile.validators import Invalid

# Settings some integer fields need beside them to be checked alone (layers_to_transform wants named targets).
CONTEXT = {"lora.layers_to_transform": {"lora": {"target_modules": ["q_proj"]}},
           "training.zero_stage": {"training": {"strategy": "deepspeed", "devices": 2}},
           "training.early_stopping_patience": {"data": {"eval_size": 4}},
           **{key: {"method": {"name": "grpo", "rewards": [{"type": "contains", "text": "x"}]}}
              for key in ("method.num_generations", "method.max_completion_length")}}
DICT_FIELDS = {"lora.rank_pattern"}   # {module: value}: each value is what is checked


def accepts(check, value) -> bool:
    try:
        check(value)
    except Invalid:
        return False
    return True


def whole_only(check) -> bool:
    """Whether a check takes a whole number (the first of a few that it takes) but not that number + 0.5."""
    n = next((n for n in (2, 8, 64, 1024) if accepts(check, n)), None)
    return n is not None and not accepts(check, n + 0.5)


def integer_fields() -> dict[str, object]:
    """Every run-file field whose check takes whole numbers only, found by what the checks do (n passes,
    n + 0.5 does not), so a new integer field is covered without being listed here."""
    found = {}
    for section, cls in SECTIONS.items():
        for f in dataclasses.fields(cls):
            check, name = f.metadata["check"], f"{section}.{f.name}"
            if whole_only((lambda v, c=check: c({"q_proj": v})) if name in DICT_FIELDS else check):
                found[name] = check
    return found


def integer_keys() -> list[str]:
    """The passthrough training keys (allowlist.py) whose checks take whole numbers only."""
    return [k for k, check in ALLOWED.items() if whole_only(check)]


INTS = integer_fields()
EXTRA_INTS = integer_keys()


def one(name: str, value) -> dict:
    section, key = name.split(".")
    raw = {s: dict(v) for s, v in CONTEXT.get(name, {}).items()}
    raw.setdefault(section, {})[key] = {"q_proj": value} if name in DICT_FIELDS else value
    return raw


def refused_alone(name: str, value) -> str:
    with pytest.raises(RunFileError) as info:
        RunConfig.from_dict(one(name, value))
    [problem] = info.value.problems
    assert problem.startswith(f"{name}: ") and "\n" not in problem, problem
    return problem


def resolved(run: RunConfig, name: str):
    section, key = name.split(".")
    value = run.training_extra[key] if section == "training" and key in run.training_extra else \
        getattr(getattr(run, section), key)
    value = value["q_proj"] if name in DICT_FIELDS else value
    return value[0] if isinstance(value, list) else value


def test_the_integer_fields_are_found():
    assert {"lora.r", "training.max_steps", "training.per_device_train_batch_size", "training.seed",
            "data.max_length", "training.zero_stage", "training.devices", "lora.layers_to_transform",
            "lora.rank_pattern", "training.save_total_limit"} <= set(INTS)
    assert {"dataloader_num_workers", "ddp_timeout", "per_device_eval_batch_size"} <= set(EXTRA_INTS)


TOO_BIG = [1e100, -1e100, 2**70, -(2**70), "1e100", 10**19]
NOT_WHOLE = [1.5, "1.5", "12.5", True, False, math.nan, math.inf, -math.inf, "nan", "inf", "twelve", [], {}]


@pytest.mark.parametrize("value", TOO_BIG + NOT_WHOLE, ids=repr)
@pytest.mark.parametrize("name", sorted(INTS))
def test_every_integer_field_refuses_what_is_not_a_whole_number_in_range(name, value):
    refused_alone(name, value)


@pytest.mark.parametrize("value", TOO_BIG + NOT_WHOLE, ids=repr)
@pytest.mark.parametrize("key", EXTRA_INTS)
def test_every_integer_passthrough_key_refuses_it_too(key, value):
    refused_alone(f"training.{key}", value)


@pytest.mark.parametrize("name", sorted(INTS))
def test_every_integer_field_says_its_upper_bound_in_its_documentation(name):
    from finetune.runfile import field_help

    check = INTS[name]
    while not hasattr(check, "le"):   # OrNull, IntOrList, DictOf, Devices hold the Int inside
        check = getattr(check, "inner", None) or getattr(check, "item", None) or getattr(check, "value_check", None) \
            or getattr(check, "count", None) or getattr(check, "choices", None)
        if isinstance(check, tuple):   # a Choice of numbers says them all
            return
    assert check.le is not None and f"{check.le:,}" in field_help(*name.split(".")), name


def largest(name: str) -> int:
    """The largest value a field takes (its bound), found by asking its check."""
    check = INTS.get(name) or ALLOWED[name.split(".")[1]]
    wrap = (lambda v: {"q_proj": v}) if name in DICT_FIELDS else (lambda v: v)
    hi = max(n for n in (2**k for k in range(80)) if accepts(check, wrap(n)))
    step = hi
    while step:   # binary search between hi and 2 * hi
        if accepts(check, wrap(hi + step)):
            hi += step
        step //= 2
    return hi


def test_real_bounds_hold_where_the_issue_names_them():
    assert largest("training.max_steps") == 10_000_000
    assert largest("training.per_device_train_batch_size") == 65_536
    assert largest("training.seed") == 2**32 - 1
    assert largest("lora.r") == 4096
    for name in INTS:
        assert largest(name) < 2**63, name   # what /status and JSON readers take as an integer


@pytest.mark.parametrize("name", sorted(INTS) + [f"training.{k}" for k in EXTRA_INTS])
def test_a_whole_number_in_any_notation_becomes_an_int(name):
    top = largest(name)
    low = next(n for n in (2, 8, 64, 1024) if accepts(INTS.get(name) or ALLOWED[name.split(".")[1]],
                                                     {"q_proj": n} if name in DICT_FIELDS else n))
    for value, n in ((float(top), top), (f"{top:.12e}", top), (str(top), top), (f" {top} ", top), (float(low), low),
                     (str(low), low)):
        run = RunConfig.from_dict(one(name, value))
        got = resolved(run, name)
        assert type(got) is int and got == n, (name, value, got)


def test_yaml_notations_resolve_to_ints_in_run_yaml():
    run = parse_run("training: {max_steps: 1e3, seed: -0.0, save_steps: 2.0, per_device_train_batch_size: '4',"
                    " dataloader_num_workers: 2.0, devices: 2.0, strategy: deepspeed, zero_stage: 3.0}\n"
                    "data: {eval_size: 1.0e+2}")
    t = run.training
    assert (t.max_steps, t.seed, t.save_steps, t.per_device_train_batch_size, t.devices, t.zero_stage) == \
        (1000, 0, 2, 4, 2, 3)
    assert all(type(v) is int for v in (t.max_steps, t.seed, t.save_steps, t.per_device_train_batch_size,
                                        t.devices, t.zero_stage, run.training_extra["dataloader_num_workers"],
                                        run.data.eval_size))
    text = run.to_yaml()
    assert "max_steps: 1000\n" in text and "seed: 0\n" in text and "dataloader_num_workers: 2\n" in text


@pytest.mark.parametrize("line, says", [
    ("training: {max_steps: 1e100}", "training.max_steps: must be a whole number >= -1 and <= 10000000, got"),
    ("training: {per_device_train_batch_size: 1e15}", "training.per_device_train_batch_size: must be a whole"),
    ("training: {num_train_epochs: 1e100}", "training.num_train_epochs: must be a number > 0 and <= 10000"),
    ("training: {warmup_steps: 1e100}", "training.warmup_steps: "),
    ("training: {warmup_steps: 2.5}", "training.warmup_steps: "),
    ("data: {eval_size: 1e100}", "data.eval_size: "),
    ("data: {eval_size: 12.5}", "data.eval_size: "),
    ("lora: {lora_alpha: 1e100}", "lora.lora_alpha: "),
    ("lora: {alpha_pattern: {q_proj: 1e100}}", "lora.alpha_pattern: "),
    ("training: {eval_delay: 1e100}", "training.eval_delay: "),
    ("training: {lr_scheduler_kwargs: {num_cycles: .nan}}", "training.lr_scheduler_kwargs: "),
    ("training: {lr_scheduler_kwargs: {num_cycles: 1.0e+400}}", "training.lr_scheduler_kwargs: "),
])
def test_numbers_that_are_not_integer_fields_are_bounded_too(line, says):
    with pytest.raises(RunFileError) as info:
        parse_run(line)
    [problem] = info.value.problems
    assert problem.startswith(says), problem


def test_fractions_and_counts_still_pass():
    run = parse_run("data: {eval_size: 0.05}\ntraining: {warmup_steps: 0.03, num_train_epochs: 2.5}")
    assert (run.data.eval_size, run.training.warmup_steps, run.training.num_train_epochs) == (0.05, 0.03, 2.5)
    run = parse_run("data: {eval_size: 200}\ntraining: {warmup_steps: 1e2}")
    assert (run.data.eval_size, run.training.warmup_steps) == (200, 100) and type(run.training.warmup_steps) is int


ACCEPTED = [
    "",
    "training: {max_steps: 1e3, seed: 4294967295, logging_steps: 1.0e+1, eval_steps: '20', save_total_limit: 3.0}",
    "lora: {r: 4.096e3, lora_alpha: 65536, rank_pattern: {q_proj: 8.0}, target_modules: [q_proj],"
    " layers_to_transform: [0.0, '1']}\ndata: {max_length: 1048576, eval_size: 0.1}",
    "training: {per_device_train_batch_size: 65536, gradient_accumulation_steps: 1e3, num_train_epochs: 10000,"
    " warmup_steps: 0.5, devices: 4.0, strategy: deepspeed, zero_stage: 3}",
    "training: {dataloader_num_workers: 16.0, ddp_timeout: 1e4, data_seed: -0.0, eval_accumulation_steps: '4',"
    " lr_scheduler_kwargs: {num_cycles: 2, power: 1.5}}",
]


@pytest.mark.parametrize("text", ACCEPTED)
def test_what_the_app_accepts_the_job_accepts_from_its_run_yaml(text, tmp_path):
    run = parse_run(text)
    path = tmp_path / "run.yaml"
    path.write_text(run.to_yaml(), encoding="utf-8")   # what the job writes (finetune/train/job.py)
    back = load_run(path)                                # what the job, the UI and /status read back
    assert back == run and back.to_dict() == run.to_dict() and back.to_yaml() == run.to_yaml()


@pytest.mark.parametrize("value", TOO_BIG + NOT_WHOLE + [1e3, "1e3", 2.0, -0.0, 7, "7"], ids=repr)
@pytest.mark.parametrize("name", sorted(INTS) + [f"training.{k}" for k in EXTRA_INTS])
def test_any_value_is_refused_in_one_line_or_round_trips_exactly(name, value, tmp_path):
    try:
        run = RunConfig.from_dict(one(name, value))
    except RunFileError as exc:
        assert all(p.count("\n") == 0 for p in exc.problems)
        return
    path = tmp_path / "run.yaml"
    path.write_text(run.to_yaml(), encoding="utf-8")
    assert load_run(path) == run


@pytest.mark.slow   # imports TRL
def test_every_allowed_key_that_trl_types_as_int_takes_whole_numbers_only():
    import typing

    from trl import SFTConfig

    hints = typing.get_type_hints(SFTConfig)

    def whole_number(annotation) -> bool:   # int, or int | None as TRL writes its optional counts
        return set(typing.get_args(annotation) or (annotation,)) - {type(None)} == {int}

    typed_int = {k for k in ALLOWED if whole_number(hints.get(k))}
    assert "dataloader_num_workers" in typed_int and typed_int <= set(EXTRA_INTS)


@pytest.mark.parametrize("text", [
    "lora: {target_modules: [q_proj], layers_to_transform: [" + ", ".join(["0"] * 1990) + "]}",
    "lora: {modules_to_save: [" + ", ".join(["lm_head"] * 1990) + "]}",
    "lora: {rank_pattern: {" + ", ".join(f"m{i}: 8" for i in range(995)) + "}}",
])
def test_a_run_file_under_the_limits_that_its_resolved_form_is_over_is_refused_by_name(text, tmp_path):
    """run.yaml holds every default too: a long list that fits the run-file limits alone may not with them."""
    try:
        run = parse_run(text)
    except RunFileError as exc:
        [problem] = exc.problems
        assert problem.startswith("lora.") and "more than 2,000" in problem, problem
        return
    path = tmp_path / "run.yaml"
    path.write_text(run.to_yaml(), encoding="utf-8")
    assert load_run(path) == run
