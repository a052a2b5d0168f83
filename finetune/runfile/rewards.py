"""`method.rewards`: the checks of GRPO's built-in rewards as the run file writes them. What each reward
computes is finetune/train/rewards.py; here only their shape, so a bad entry is refused before any model loads,
in one line naming `method.rewards[i].key`.

A regex is compiled here only to see that it is one, and only up to MAX_PATTERN characters (re's parser is
Python: compiling is linear, it is matching that can take exponential time). The job matches it in bounded
time (finetune.model.patterns), so no pattern can hang the job or the app.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from finetune.runfile.validators import Int, Invalid, Num, show

MAX_REWARDS = 16
MAX_TEXT = 1000
MAX_PATTERN = 500
MAX_TAGS = 8
TAG = re.compile(r"[A-Za-z_][A-Za-z0-9_-]{0,31}")
IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,99}")

# Each type's own keys and their checks (weight is every type's).
KEYS = {
    "contains": ("text",),
    "regex": ("pattern",),
    "exact_match": ("column",),
    "length": ("max_tokens",),
    "format": ("tags",),
    "python": ("path", "function"),
}
WEIGHT = Num(ge=-1000, le=1000)
MAX_TOKENS = Int(ge=1, le=1_048_576)


def _text(value, limit: int = MAX_TEXT) -> str:
    if not isinstance(value, str) or not value.strip():
        raise Invalid(f"must be some text, got {show(value)}")
    if len(value) > limit:
        raise Invalid(f"has {len(value):,} characters; at most {limit:,}")
    return value


def search_pattern(pattern: str) -> str:
    """`pattern` found anywhere in an answer, as a match from its start (what the bounded matcher runs)."""
    return f"(?s:.*?)(?:{pattern})"


def _pattern(value) -> str:
    value = _text(value, MAX_PATTERN)
    try:
        re.compile(value)
    except re.error as exc:
        raise Invalid(f"{show(value)} is not a valid regular expression: {exc}") from None
    except RecursionError:
        raise Invalid(f"{show(value)}: groups nested too deeply") from None
    try:
        re.compile(search_pattern(value))
    except re.error:   # global flags, which the search's prefix moves away from the start
        raise Invalid(f"{show(value)}: write flags scoped to a group, as (?i:...), not (?i) for the whole "
                      "pattern") from None
    return value


def _tags(value) -> list[str]:
    if not isinstance(value, list) or not 1 <= len(value) <= MAX_TAGS:
        raise Invalid(f"must be a list of 1 to {MAX_TAGS} tag names, got {show(value)}")
    for tag in value:
        if not isinstance(tag, str) or not TAG.fullmatch(tag):
            raise Invalid(f"{show(tag)} is not a tag name (letters, digits, _ and -, as in <think>)")
    return list(value)


def _identifier(value) -> str:
    if not isinstance(value, str) or not IDENTIFIER.fullmatch(value):
        raise Invalid(f"must be a Python function name, got {show(value)}")
    return value


CHECKS: dict[str, Callable] = {"text": _text, "pattern": _pattern, "column": _identifier, "max_tokens": MAX_TOKENS, "tags": _tags,
          "path": _text, "function": _identifier}


class Rewards:
    """A list of 0 to MAX_REWARDS rewards (grpo's own check asks for at least one), each {type, weight, ...}."""

    def __call__(self, value):
        if not isinstance(value, list) or len(value) > MAX_REWARDS:
            raise Invalid(f"must be a list of at most {MAX_REWARDS} rewards, each {{type: ..., weight: ...}}, "
                          f"got {show(value)}")
        return [self.one(i, r) for i, r in enumerate(value)]

    def one(self, i: int, reward) -> dict:
        if not isinstance(reward, dict):
            raise Invalid(f"[{i}] must be a mapping such as {{type: contains, text: ...}}, got {show(reward)}")
        kind = reward.get("type")
        if kind not in KEYS:
            raise Invalid(f"[{i}].type: must be one of {', '.join(KEYS)}, got {show(kind)}")
        out = {"type": kind, "weight": 1.0}
        for key, value in reward.items():
            key = str(key)
            if key == "type":
                continue
            if key != "weight" and key not in KEYS[kind]:
                raise Invalid(f"[{i}].{key[:40]}: not a key of a {kind} reward; it takes "
                              f"{', '.join(('weight', *KEYS[kind]))}")
            try:
                out[key] = WEIGHT(value) if key == "weight" else CHECKS[key](value)
            except Invalid as exc:
                raise Invalid(f"[{i}].{key}: {exc}") from None
        missing = [k for k in KEYS[kind] if k not in out]
        if missing:
            raise Invalid(f"[{i}]: a {kind} reward needs {', '.join(missing)}")
        return out


def names(rewards: list[dict]) -> list[str]:
    """Each reward's name in the logs (rewards/<name>/mean): its type, or for a python reward its function,
    numbered from the second of the same name on (contains, contains_2)."""
    seen: dict[str, int] = {}
    out = []
    for r in rewards:
        base = r["function"] if r["type"] == "python" else r["type"]
        seen[base] = seen.get(base, 0) + 1
        out.append(base if seen[base] == 1 else f"{base}_{seen[base]}")
    return out
