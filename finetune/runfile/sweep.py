"""A sweep: one run file and `section.key=v1,v2,...` lines in, one checked run per combination out.

    plan_sweep(base, ["lora.r=4,8,16", "training.learning_rate=1e-4,3e-4"], "sweeps/r-lr")
        -> 6 Combinations, r4-lr1e-4 ... r16-lr3e-4, each with training.output_dir sweeps/r-lr/<name>

Each key is checked against the schema (a typo gets a did-you-mean hint); each value is a YAML scalar
(`1e-4` a float, `true` a flag) or a flow list or mapping (`[q_proj,v_proj]`: commas inside brackets or
quotes do not split values). Every combination is then checked as a whole run file (RunConfig.from_dict,
the checks of parse_run/load_run), and one bad combination refuses the whole sweep before anything is
written or queued: a problem every combination with one value shares is said once, naming that value;
any other names its combination. Nothing here reads a model or trains: that is finetune.jobs.sweep.
"""

from __future__ import annotations

import copy
import dataclasses
import itertools
import math
import os
import re
from dataclasses import dataclass
from typing import Any

from finetune.errors import RunFileError
from finetune.runfile.limits import cut, load_bounded
from finetune.runfile.schema import SECTIONS, UNSUPPORTED, RunConfig
from finetune.runfile.text import dump_yaml, overlay
from finetune.runfile.validators import did_you_mean, show

# Every combination is a whole training run, trained one after another (the app has one GPU slot per GPU).
# 32 runs of even a small model keep a GPU busy for hours, and the API is reachable from a public Space:
# a bigger grid is a job for a search library (Optuna, Ray Tune), not for one click.
MAX_COMBINATIONS = 32
MAX_SPEC_CHARS = 4_000  # one `key=v1,v2` line; a long target list still fits, a flood does not
NAME_CHARS = 100        # a combination's name is a file and folder name: short, and far from NAME_MAX (255)

# Short names for the keys people sweep most, so a run's name says what it is: r8-lr3e-4.
ALIASES = {"learning_rate": "lr", "lora_alpha": "alpha", "lora_dropout": "dropout", "target_modules": "targets",
           "per_device_train_batch_size": "bs", "gradient_accumulation_steps": "ga", "num_train_epochs": "epochs",
           "max_steps": "steps", "weight_decay": "wd", "warmup_steps": "warmup", "lr_scheduler_type": "sched",
           "max_length": "len", "name_or_path": "model", "quantization": "quant"}
# Settings a sweep decides itself, or that would make its runs collide.
FIXED = {"training.output_dir": "set by the sweep: each run trains in its own folder under the sweep's folder",
         "hub.repo_id": "a sweep's runs would all push to one repository; push the best run afterwards "
                        "(python -m finetune push)"}


@dataclass
class Vary:
    key: str                 # "lora.r"
    texts: list[str]         # the values as typed: "1e-4", what names show
    values: list[Any]        # the values as parsed: 0.0001


@dataclass
class Combination:
    name: str                # "r4-lr1e-4": its run file's and its folder's name
    values: dict[str, Any]   # {"lora.r": 4, "training.learning_rate": 0.0001}
    raw: dict                # its run file, as a dict (the base with these values and its output_dir)
    run: RunConfig           # the same, checked
    texts: dict[str, str] = dataclasses.field(default_factory=dict)   # the values as typed, for messages

    def to_yaml(self, source: str = "") -> str:
        """Its run file's text, with a header saying what it is and how to run it on its own."""
        settings = ", ".join(f"{k}={self.texts.get(k, show(v))}" for k, v in self.values.items())
        origin = f" of {source}" if source else ""
        return (f"# Sweep{origin}: {settings}\n# Train it alone: python -m finetune train <this file>\n"
                + dump_yaml(self.raw))


def split_values(text: str) -> list[str]:
    """`4,8,16` -> ["4", "8", "16"]; commas inside [], {} or quotes stay: `[q_proj,v_proj],all-linear`."""
    out, depth, quote, start = [], 0, "", 0
    for i, ch in enumerate(text):
        if quote:
            quote = "" if ch == quote else quote
        elif ch in "'\"":
            quote = ch
        elif ch in "[{":
            depth += 1
        elif ch in "]}":
            depth -= 1
        elif ch == "," and depth == 0:
            out.append(text[start:i].strip())
            start = i + 1
    out.append(text[start:].strip())
    return out


def parse_value(text: str, where: str) -> Any:
    """A YAML value, with one difference: PyYAML reads 1e-4 (no dot) as a string; here it is the float."""
    value = load_bounded(text, where)
    if isinstance(value, str):
        try:
            number = float(value)
        except ValueError:
            return value
        return int(number) if re.fullmatch(r"[+-]?\d+", value.strip()) else number if math.isfinite(number) \
            else value
    return value


def key_problem(key: str) -> str | None:
    """Why `key` is not a run-file setting a sweep can vary, or None."""
    from finetune.runfile.allowlist import ALLOWED

    section, _, name = key.partition(".")
    if section not in SECTIONS:
        return f"vary {cut(key)}: unknown section{did_you_mean(section, SECTIONS)}; the sections are " \
               f"{', '.join(SECTIONS)}"
    if not name or "." in name:
        return f"vary {cut(key)}: must be one setting as section.key, e.g. lora.r or training.learning_rate"
    if key in FIXED:
        return f"vary {key}: {FIXED[key]}"
    known = [f.name for f in dataclasses.fields(SECTIONS[section])]
    if name in known or (section == "training" and name in ALLOWED):
        return None
    if name in UNSUPPORTED.get(section, ()):
        return f"vary {cut(key)}: not supported by LoRA Launchpad (it changes what trains in a way the " \
               "parameter count does not model)"
    options = known + (list(ALLOWED) if section == "training" else [])
    return f"vary {cut(key)}: unknown key{did_you_mean(name, options)}"


def parse_vary(spec: str) -> Vary:
    """One `section.key=v1,v2,...` line; raises RunFileError with one line saying what is wrong."""
    if not isinstance(spec, str):
        raise RunFileError(f"vary: must be text like lora.r=4,8,16, got {show(spec)}")
    if len(spec) > MAX_SPEC_CHARS:
        raise RunFileError(f"vary: a line of {len(spec):,} characters; at most {MAX_SPEC_CHARS:,}")
    key, eq, rest = spec.partition("=")
    key = key.strip()
    if not eq or not key:
        raise RunFileError(f"vary {show(spec)}: must be section.key=value1,value2,..., e.g. lora.r=4,8,16")
    if (problem := key_problem(key)) is not None:
        raise RunFileError(problem)
    texts = split_values(rest)
    if len(texts) > MAX_COMBINATIONS:
        raise RunFileError(f"vary {key}: {len(texts)} values; a sweep runs at most {MAX_COMBINATIONS} combinations")
    if any(not t for t in texts):
        raise RunFileError(f"vary {key}: an empty value in {show(rest)}; separate values with single commas")
    values = [parse_value(t, f"vary {key}={cut(t, 40)}") for t in texts]
    if len({repr(v) for v in values}) < len(values):
        raise RunFileError(f"vary {key}: a value is given twice in {show(rest)}")
    return Vary(key, texts, values)


def parse_varies(specs) -> list[Vary]:
    """Every line parsed (all problems at once), no key twice, and at most MAX_COMBINATIONS combinations."""
    if isinstance(specs, str):
        specs = specs.splitlines()
    specs = [s for s in specs if not isinstance(s, str) or s.strip()]
    if not specs:
        raise RunFileError("vary: nothing to vary; give at least one section.key=value1,value2,... line")
    varies, problems = [], []
    for spec in specs:
        try:
            varies.append(parse_vary(spec))
        except RunFileError as exc:
            problems += exc.problems
    keys = [v.key for v in varies]
    problems += [f"vary {k}: given twice; list all its values in one line" for k in sorted(set(keys))
                 if keys.count(k) > 1]
    if problems:
        raise RunFileError(problems)
    total = math.prod(len(v.values) for v in varies)
    if total > MAX_COMBINATIONS:
        sizes = " x ".join(str(len(v.values)) for v in varies)
        raise RunFileError(f"vary: {total} combinations ({sizes}); a sweep runs at most {MAX_COMBINATIONS}, "
                           "each a whole training run: vary fewer settings or fewer values")
    return varies


def value_name(text: str) -> str:
    """A typed value as part of a file name: `1e-4` stays, `[q_proj,v_proj]` becomes q_proj_v_proj."""
    return re.sub(r"[^A-Za-z0-9.+-]+", "_", text).strip("_.") or "x"


def combination_name(varies: list[Vary], picks: tuple[int, ...]) -> str:
    parts = []
    for vary, i in zip(varies, picks, strict=True):
        alias, value = ALIASES.get(vary.key.split(".", 1)[1], vary.key.split(".", 1)[1]), value_name(vary.texts[i])
        parts.append(alias + value if value[0].isdigit() or value[0] in "+-." else f"{alias}_{value}")
    return "-".join(parts)


def plan_sweep(base: dict, specs, out_dir: str) -> list[Combination]:
    """Every combination of the varied values over the `base` run file's dict, each checked as a run file;
    raises RunFileError naming every problem (and nothing is written: that is write_sweep)."""
    varies = parse_varies(specs)
    RunConfig.from_dict(base)  # the base must be a valid run file itself: its own problems, said plainly
    if isinstance(base.get("hub"), dict) and base["hub"].get("repo_id"):
        raise RunFileError(f"hub.repo_id: {FIXED['hub.repo_id']}")
    combos, problems, names = [], {}, set()
    for picks in itertools.product(*(range(len(v.values)) for v in varies)):
        name = cut(combination_name(varies, picks), NAME_CHARS)
        name = next(n for k in itertools.count(1) if (n := name if k == 1 else f"{name}-{k}") not in names)
        names.add(name)
        values = {v.key: v.values[i] for v, i in zip(varies, picks, strict=True)}
        texts = {v.key: v.texts[i] for v, i in zip(varies, picks, strict=True)}
        raw = copy.deepcopy(base)
        for key, value in values.items():
            section, setting = key.split(".", 1)
            raw = overlay(raw, {section: {setting: value}})
        raw = overlay(raw, {"training": {"output_dir": os.path.join(out_dir, name)}})
        try:
            combos.append(Combination(name, values, raw, RunConfig.from_dict(copy.deepcopy(raw)), texts))
        except RunFileError as exc:
            problems[name] = exc.problems
            combos.append(Combination(name, values, raw, RunConfig(), texts))
    if problems:
        raise RunFileError(name_problems(combos, problems))
    return combos


def name_problems(combos: list[Combination], problems: dict[str, list[str]]) -> list[str]:
    """{combination name: its problems} -> one line per problem: a problem found in exactly the combinations
    that share one value is said once, naming that value (`vary lora.r=0: lora.r: must be ...`), one found in
    all of them once (`every combination: ...`); any other per combination (`r4-lr1e-4: ...`)."""
    where: dict[str, set[str]] = {}
    for name, found in problems.items():
        for problem in found:
            where.setdefault(problem, set()).add(name)
    out = []
    for problem, names in where.items():
        shared = next((f"vary {key}={combo.texts.get(key, show(value))}" for combo in combos
                       for key, value in combo.values.items()
                       if names == {c.name for c in combos if repr(c.values.get(key)) == repr(value)}), None)
        if shared or len(names) == len(combos):
            out.append(f"{shared or 'every combination'}: {problem}")
        else:
            out += [f"{name}: {problem}" for name in sorted(names, key=[c.name for c in combos].index)]
    return out


def write_sweep(combos: list[Combination], out_dir: str, source: str = "") -> list[str]:
    """One run file per combination, `<out_dir>/<name>.yaml`; returns their paths."""
    paths = []
    try:
        os.makedirs(out_dir, exist_ok=True)
        for combo in combos:
            path = os.path.join(out_dir, f"{combo.name}.yaml")
            with open(path, "w", encoding="utf-8") as f:
                f.write(combo.to_yaml(source))
            paths.append(path)
    except OSError as exc:
        raise RunFileError(f"--out {cut(out_dir)}: cannot write the sweep's run files: {exc.strerror or exc}") \
            from None
    return paths
