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

    def __call__(self, value):
        v = value
        if isinstance(v, str):
            try:
                v = float(v.strip())
            except ValueError:
                raise Invalid(f"must be {self.expected()}, got {show(value)}") from None
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            raise Invalid(f"must be {self.expected()}, got {show(value)}")
        if self.whole:
            if v != int(v):
                raise Invalid(f"must be {self.expected()}, got {show(value)}")
            v = int(v)
        if ((self.ge is not None and v < self.ge) or (self.gt is not None and v <= self.gt)
                or (self.le is not None and v > self.le) or (self.lt is not None and v >= self.lt)):
            raise Invalid(f"must be {self.expected()}, got {show(value)}")
        return v


class Int(Num):
    whole = True


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
        for c in self.choices:
            # `True == 1` in Python: compare types too, so r-like numbers never pass as flags.
            if type(c) is type(value) and c == value:
                return value
            if isinstance(c, str) and isinstance(value, str) and c.lower() == value.strip().lower():
                return c
        options = ", ".join(show(c) for c in self.choices)
        hint = did_you_mean(value, [c for c in self.choices if isinstance(c, str)]) if isinstance(value, str) else ""
        raise Invalid(f"must be one of {options}, got {show(value)}{hint}")


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
    def __init__(self, ge=0):
        self.item = Int(ge=ge)

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
            elif extra_ok is not None and (msg := extra_ok(key, value)) is not None:
                if msg:
                    problems.append(f"{name}.{key}: {msg}")
                else:
                    extra[key] = value
            else:
                problems.append(f"{name}.{key}: unknown key{did_you_mean(key, known)}")
            continue
        try:
            values[key] = f.metadata["check"](value)
        except Invalid as exc:
            problems.append(f"{name}.{key}: {exc}")
    return cls(**values), extra


def check_training_extra(key: str, value):
    """A training key the section does not declare: accepted only if finetune.runfile.allowlist allows it,
    with a value that passes its check. Returns "" to accept or a message to refuse. Needs no TRL import
    (seconds, and in the app process under a flood of bad keys): a key neither declared nor listed is
    refused alike, whether TRL knows it or not."""
    from finetune.runfile.allowlist import ALLOWED, check_allowed
    from finetune.runfile.schema import TrainingSection

    verdict = check_allowed(key, value)
    if verdict is not None:
        return verdict
    hint = did_you_mean(key, [f.name for f in dataclasses.fields(TrainingSection)] + list(ALLOWED))
    if hint:
        return f"unknown key{hint}"
    return "unknown key, or a trl.SFTConfig key that run files may not set (see finetune/runfile/allowlist.py)"
