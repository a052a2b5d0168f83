"""Value checks for run-file fields, and the builder that applies them to every section.

Each check returns the value (normalised: "2e-4" becomes 2e-4, a single string target stays a string)
or raises Invalid with the tail of a message; the builder prefixes `section.key: ` and collects every
problem, so a user sees all of them at once.
"""

from __future__ import annotations

import dataclasses
import difflib
import math

from finetune.runfile.limits import QUOTE_CHARS, cut


class Invalid(Exception):
    pass


def show(value) -> str:
    """A value as it would be typed in the run file, cut to ~80 characters: messages quote what users sent,
    which on a Space can be anything, and a long list is never walked further than the cut needs."""
    if isinstance(value, str):
        return f'"{cut(value)}"'
    return cut(_bounded(value, QUOTE_CHARS), QUOTE_CHARS)


def _bounded(value, budget: int) -> str:
    """repr-like text of `value`, built only until it is `budget` characters long."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return repr(value[:budget + 1])
    if isinstance(value, (list, tuple, dict)):
        items = value.items() if isinstance(value, dict) else value
        parts, used = [], 2
        for item in items:
            if used > budget:
                parts.append("...")
                break
            part = (f"{_bounded(item[0], budget - used)}: {_bounded(item[1], budget - used)}"
                    if isinstance(value, dict) else _bounded(item, budget - used))
            parts.append(part)
            used += len(part) + 2
        return ("{%s}" if isinstance(value, dict) else "[%s]") % ", ".join(parts)
    return cut(repr(value), budget + 1)


def _number(value):
    """`value` as an int or a finite float, or None when it is neither. YAML reads 2e-4 and 1e3 (no dot) as
    strings: a string holding a number is that number, and a whole one is read exactly (through a float,
    "9007199254740993" would become ...992)."""
    if isinstance(value, str):
        text = value.strip()
        try:
            return int(text)
        except ValueError:   # also over Python's 4,300-digit limit, which int() checks before converting
            try:
                value = float(text)
            except ValueError:
                return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


class Num:
    """A real number within bounds. YAML reads 2e-4 (no dot) as a string: accept it as the number it is."""

    whole = False

    def __init__(self, ge=None, gt=None, le=None, lt=None):
        self.ge, self.gt, self.le, self.lt = ge, gt, le, lt

    def bounds(self) -> str:
        parts = [f"{op} {v}" for op, v in ((">=", self.ge), (">", self.gt), ("<=", self.le), ("<", self.lt))
                 if v is not None]
        return " and ".join(parts)

    def expected(self) -> str:
        kind = "a whole number" if self.whole else "a number"
        return f"{kind} {self.bounds()}".strip()

    def within(self, v) -> bool:
        return not ((self.ge is not None and v < self.ge) or (self.gt is not None and v <= self.gt)
                    or (self.le is not None and v > self.le) or (self.lt is not None and v >= self.lt))

    def __call__(self, value):
        v = _number(value)
        if v is None or (self.whole and v != int(v)) or not self.within(v):
            raise Invalid(f"must be {self.expected()}, got {show(value)}")
        # A whole number written 1e3, 2.0 or "12" is a real int from here on: the job, run.yaml and /status
        # see 1000, never 1000.0.
        return int(v) if self.whole else v


class Int(Num):
    """A whole number. The upper bound is required: an unbounded one would take 1e100 as a 101-digit int that
    run.yaml cannot hold and JSON readers refuse."""

    whole = True

    def __init__(self, ge=None, gt=None, *, le, lt=None):
        super().__init__(ge=ge, gt=gt, le=le, lt=lt)


class FractionOrCount(Num):
    """A fraction in [0, 1) of a total, or from 1 up a whole count (of examples, of steps) up to `le`: how
    TrainingArguments reads warmup_steps and how data.eval_size is read."""

    def __init__(self, *, le):
        super().__init__(ge=0, le=le)

    def expected(self) -> str:
        return f"a fraction in [0, 1) or a whole number from 1 to {self.le}"

    def __call__(self, value):
        v = _number(value)
        if v is None or not self.within(v) or (v >= 1 and v != int(v)):
            raise Invalid(f"must be {self.expected()}, got {show(value)}")
        # A count is an int (1e3 -> 1000); a fraction keeps its own notation, but -0.0 is plain 0.
        return int(v) if v >= 1 else v or type(v)(0)


class Flag:
    def __call__(self, value):
        if not isinstance(value, bool):
            raise Invalid(f"must be true or false, got {show(value)}")
        return value


class Str:
    def __init__(self, nonempty=False):
        self.nonempty = nonempty

    def __call__(self, value):
        if not isinstance(value, str) or (self.nonempty and not value.strip()):
            raise Invalid(f"must be {'a non-empty' if self.nonempty else 'a'} string, got {show(value)}")
        return value.strip()


class Choice:
    def __init__(self, *choices):
        self.choices = choices

    def __call__(self, value):
        shown = value
        if any(type(c) is int for c in self.choices) and (n := _number(value)) is not None and n == int(n):
            value = int(n)   # zero_stage: 3.0 or "3" is the choice 3
        for c in self.choices:
            # `True == 1` in Python: compare types too, so r-like numbers never pass as flags.
            if type(c) is type(value) and c == value:
                return value
            if isinstance(c, str) and isinstance(value, str) and c.lower() == value.strip().lower():
                return c
        options = ", ".join(show(c) for c in self.choices)
        hint = did_you_mean(value, [c for c in self.choices if isinstance(c, str)]) if isinstance(value, str) else ""
        raise Invalid(f"must be one of {options}, got {show(shown)}{hint}")


class OrNull:
    def __init__(self, inner):
        self.inner = inner

    def __call__(self, value):
        return None if value is None else self.inner(value)


class StrOrList:
    """One string (a regular expression for targets) or a list of names."""

    def __init__(self, nonempty=False):
        self.nonempty = nonempty

    def __call__(self, value):
        if isinstance(value, str) and value.strip():
            return value.strip()
        if isinstance(value, (list, tuple)) and all(isinstance(v, str) and v.strip() for v in value):
            if self.nonempty and not value:
                raise Invalid("must name at least one module, got an empty list")
            return [v.strip() for v in value]
        raise Invalid(f"must be a string or a list of names, got {show(value)}")


class IntOrList:
    def __init__(self, ge=0, *, le):
        self.item = Int(ge=ge, le=le)

    def __call__(self, value):
        if isinstance(value, (list, tuple)):
            if not value:
                raise Invalid("must list at least one index, got an empty list")
            return [self.item(v) for v in value]
        return self.item(value)


class DictOf:
    """{name or regular expression: value}, each value checked."""

    def __init__(self, value_check):
        self.value_check = value_check

    def __call__(self, value):
        if not isinstance(value, dict):
            raise Invalid(f"must be a mapping of module name to value, got {show(value)}")
        out = {}
        for k, v in value.items():
            try:
                out[str(k)] = self.value_check(v)
            except Invalid as exc:
                raise Invalid(f"{show(str(k))} {exc}") from None
        return out


def did_you_mean(word: str, options) -> str:
    close = difflib.get_close_matches(cut(str(word)), list(options), n=1, cutoff=0.6)
    return f' (did you mean "{close[0]}"?)' if close else ""


def build_section(cls, name: str, raw, problems: list, extra_ok=None, unsupported=()):
    """One section: check each key, collect problems; returns (instance, extra keys accepted by extra_ok)."""
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        problems.append(f"{name}: must be a mapping of settings, got {show(raw)}")
        return cls(), {}
    known = {f.name: f for f in dataclasses.fields(cls)}
    values, extra = {}, {}
    for key, value in raw.items():
        key = str(key)
        f = known.get(key)
        if f is None:
            key = cut(key)   # an unknown key is quoted in the message: keep it short
            if key in unsupported:
                problems.append(f"{name}.{key}: not supported by LoRA Launchpad (it changes what trains in a way "
                                "the parameter count does not model)")
            elif extra_ok is not None:
                try:
                    extra[key] = extra_ok(key, value)
                except Invalid as exc:
                    problems.append(f"{name}.{key}: {exc}")
            else:
                problems.append(f"{name}.{key}: unknown key{did_you_mean(key, known)}")
            continue
        try:
            values[key] = f.metadata["check"](value)
        except Invalid as exc:
            problems.append(f"{name}.{key}: {exc}")
    return cls(**values), extra

