"""GRPO's rewards: each `method.rewards` entry (checked by finetune/runfile/rewards.py) as the callable
trl.GRPOTrainer calls with a batch of prompts and their generated completions, one score per completion.

Each callable carries its name (rewards.names: `contains`, `regex`, `contains_2`...), which TRL logs as
rewards/<name>/mean. Built-in rewards score in linear time, except `regex`, whose user pattern is matched by
finetune.model.patterns (bounded CPU time in a helper process): a pattern that would backtrack for minutes stops
the job with one line instead of hanging it. A `python` reward runs the run file's own code: refused where
finetune.space.own_code_allowed says so (on a Space, unless its host opts in).
"""

from __future__ import annotations

import importlib.util
from collections.abc import Mapping
from pathlib import Path

from finetune.errors import RunFileError
from finetune.runfile import RunConfig
from finetune.runfile.rewards import names, search_pattern
from finetune.runfile.validators import show
from finetune.space import REMOTE_CODE_SWITCH, own_code_allowed


def text_of(completion) -> str:
    """A completion as text: plain, or the content of a conversational completion's last message."""
    if isinstance(completion, list):
        return str(completion[-1].get("content", "")) if completion else ""
    return str(completion)


def normalise(text) -> str:
    return " ".join(str(text).split()).casefold()


class Reward:
    """One reward: called by TRL as f(prompts, completions, completion_ids, **columns) -> [float]."""

    def __init__(self, name: str, field: str, spec: dict):
        self.__name__ = name   # what TRL's get_callable_name reads, and logs under
        self.field = field     # method.rewards[i], for messages
        self.spec = spec

    def __call__(self, prompts, completions, completion_ids=None, **columns) -> list[float]:
        texts = [text_of(c) for c in completions]
        kind = self.spec["type"]
        if kind == "contains":
            return [float(self.spec["text"] in t) for t in texts]
        if kind == "regex":
            return self.search(texts)
        if kind == "exact_match":
            wanted = columns[self.spec["column"]]
            return [float(normalise(t) == normalise(w)) for t, w in zip(texts, wanted, strict=True)]
        if kind == "length":
            limit = self.spec["max_tokens"]
            lengths = [len(ids) for ids in completion_ids] if completion_ids is not None else \
                [len(t.split()) for t in texts]
            return [1.0 if n <= limit else max(0.0, 1.0 - (n - limit) / limit) for n in lengths]
        if kind == "format":
            return [float(tagged(t, self.spec["tags"])) for t in texts]
        raise ValueError(f"{self.field}: no built-in reward {kind!r}")


    def search(self, texts: list[str]) -> list[float]:
        from finetune.model.patterns import LIMIT_S, TooCostly, find

        pattern = self.spec["pattern"]
        try:
            found = find(f"{self.field}.pattern", pattern, search_pattern(pattern), texts, how="match")
        except TooCostly:
            raise RunFileError(f"{self.field}.pattern: {show(pattern)} took longer than {LIMIT_S:g} s of CPU to "
                               f"search {len(texts)} generated answers; simplify the pattern") from None
        return [float(hit) for hit in found]


def tagged(text: str, tags: list[str]) -> bool:
    """The whole text is <tag>...</tag> for each tag in order, with only spacing between: found with str.find,
    linear in the text (a regex of several lazy groups can backtrack polynomially on a long answer)."""
    pos = 0
    for tag in tags:
        while pos < len(text) and text[pos].isspace():
            pos += 1
        opening, closing = f"<{tag}>", f"</{tag}>"
        if not text.startswith(opening, pos):
            return False
        end = text.find(closing, pos + len(opening))
        if end < 0:
            return False
        pos = end + len(closing)
    return not text[pos:].strip()


def code_problems(run: RunConfig, env: Mapping[str, str] | None = None) -> list[str]:
    """A `python` reward runs the run file's own code in this process: only where finetune.space allows it
    (finetune/ui/access.py asks the same before launch)."""
    if run.method.name != "grpo" or own_code_allowed(env):
        return []
    return [f"method.rewards[{i}]: a python reward runs your own code, which is turned off on this server (its host "
            f"can allow it with {REMOTE_CODE_SWITCH})"
            for i, r in enumerate(run.method.rewards) if r["type"] == "python"]


def load_function(field: str, spec: dict):
    """The user's reward function, imported from its file (which runs that file)."""
    path = Path(spec["path"]).expanduser()
    if not path.is_file() or path.suffix != ".py":
        raise RunFileError(f'{field}.path: "{spec["path"]}" is not a Python file')
    module_spec = importlib.util.spec_from_file_location(f"finetune_reward_{path.stem}", path)
    if module_spec is None or module_spec.loader is None:
        raise RunFileError(f'{field}.path: "{spec["path"]}" cannot be imported')
    module = importlib.util.module_from_spec(module_spec)
    try:
        module_spec.loader.exec_module(module)
    except Exception as exc:   # the user's file, in its own words, on one line
        raise RunFileError(f"{field}.path: importing it failed: {type(exc).__name__}: {exc}") from None
    function = getattr(module, spec["function"], None)
    if not callable(function):
        raise RunFileError(f'{field}.function: "{spec["function"]}" is not a function of "{spec["path"]}"')
    return function


def build(run: RunConfig) -> tuple[list, list[float]]:
    """The reward callables and their weights, in the run file's order; raises RunFileError (one line each)."""
    if problems := code_problems(run):
        raise RunFileError(problems)
    funcs: list = []
    for i, (name, spec) in enumerate(zip(names(run.method.rewards), run.method.rewards, strict=True)):
        field = f"method.rewards[{i}]"
        if spec["type"] == "python":
            function = load_function(field, spec)
            funcs.append(_named(function, name))
        else:
            funcs.append(Reward(name, field, spec))
    return funcs, [float(r["weight"]) for r in run.method.rewards]


def _named(function, name: str):
    """The user's function under its log name (two rewards of one function get two names)."""
    if getattr(function, "__name__", None) == name:
        return function

    def reward(*args, **kwargs):
        return function(*args, **kwargs)

    reward.__name__ = name
    return reward
