"""Matching a user's regular expressions (lora.target_modules, exclude_modules, modules_to_save, layers_pattern,
rank_pattern, alpha_pattern) against a model's module names, in bounded time.

`(.|.)*Z` takes minutes on one module name, and CPython's `re` holds the GIL while it matches: in the app's
process it froze every page and endpoint. So the matching runs in helper interpreters
(finetune/model/pattern_helper.py: stdlib only, started on first use, niced), each stopping a pattern at
LIMIT_S of CPU; the caller only waits on a pipe. The semantics stay exactly stdlib `re`'s, the engine PEFT
later runs on the same names: what passes here, PEFT matches in about the same time.

A pool of helpers serves concurrent counts, so one hostile pattern delays only its own request; answers are
cached per (pattern, names), so the live count asks a helper once per new pattern, and a refused pattern
sent again is refused at once; identical requests in flight share one match. A pattern that provably
cannot backtrack much (finetune.model.pattern_cost: `.*\\.(q_proj|v_proj)` and the like) is matched here,
with no helper: it never waits behind others' patterns in a flood.
"""

from __future__ import annotations

import contextlib
import contextvars
import hashlib
import json
import os
import re
import select
import subprocess
import sys
import threading
import time
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path

from finetune.errors import RunFileError
from finetune.model.pattern_cost import cheap
from finetune.runfile.validators import show

# A pattern may take this much CPU time to compile and match one model's names. An ordinary pattern takes
# well under a millisecond on a 32-layer model's ~400 names, so this leaves it 1000x headroom while a
# refusal still comes within about a second; PEFT then spends about as long on the same names.
LIMIT_S = 1.0
# All of one count's patterns together (count_lora): a run file with a hundred keys each just under LIMIT_S
# would otherwise hold a helper for minutes.
RUN_LIMIT_S = 2.0
# Wall time after which a helper that has not answered is killed, and a request waiting for a free helper
# gives up: the CPU timer stops a pattern at LIMIT_S, so this is reached only where the niced helpers get
# little of the CPU (a busy machine, a flood of new patterns). It bounds a refusal's wall time there.
WALL_S = 3.0
MAX_HELPERS = 4     # helpers at once: concurrent new patterns beyond this wait for one (each frees in ~LIMIT_S)
KEEP_IDLE = 2       # helpers kept between requests (each ~10 MB); the others exit when done
CACHE_SIZE = 1024   # answers kept, least recently used dropped first
RETRY_S = 60.0      # a pattern stopped by the wall clock (not by its own CPU time) is tried again after this

HELPER = Path(__file__).with_name("pattern_helper.py")


class Invalid(RunFileError):
    """Not a regular expression (re.error): the caller lists it among the run file's other problems."""


class TooCostly(RunFileError):
    """Took too long, or no helper was free: the count stops here."""


def find(field: str, shown: str, regex: str, names: Sequence[str], how: str = "fullmatch",
         group: str | None = None) -> list:
    """Per name: `re.<how>(regex, name) is not None`, or with `group`, that named group's text (None where the
    regex does not match). `field` and `shown` (what the user wrote) name the problem in a refusal.
    Raises Invalid or TooCostly, each with one line."""
    if cheap(regex, names):
        with contextlib.suppress(re.error):   # parsed but not compiled: the helper words the error
            test = getattr(re.compile(regex), how)
            if group is None:
                return [test(name) is not None for name in names]
            return [m.group(group) if (m := test(name)) else None for name in names]
    request = {"regex": regex, "how": how, "group": group, "names": list(names)}
    # The cache keeps a digest, not the request: a pattern can be as long as a run file (1 MB).
    key = hashlib.blake2b(json.dumps(request).encode(), digest_size=16).digest()
    budget = _budget.get()
    limit = LIMIT_S if budget is None else min(LIMIT_S, budget[0])
    answer = _answer(key, request, limit)
    if budget is not None:
        budget[0] -= answer.get("cpu", 0.0)
    if "found" in answer:
        return answer["found"]
    if "invalid" in answer:
        raise Invalid([f"{field}: {show(shown)} is not a valid regular expression: {answer['invalid']}"])
    if "busy" in answer:
        raise TooCostly([f"{field}: {show(shown)} could not be matched: the server is busy matching other "
                         "patterns; try again in a moment"])
    if limit < LIMIT_S:
        raise TooCostly([f"{field}: {show(shown)}: the run file's patterns together took longer than "
                         f"{RUN_LIMIT_S:g} s to match this model's module names; simplify them"])
    raise TooCostly([f"{field}: {show(shown)} took longer than {LIMIT_S:g} s to match this model's "
                     f"{len(names)} module names; simplify the pattern"])


_budget: contextvars.ContextVar[list | None] = contextvars.ContextVar("pattern_budget", default=None)


@contextlib.contextmanager
def budget(seconds: float = RUN_LIMIT_S):
    """Within this block, the patterns matched share `seconds` of CPU (answers from the cache cost nothing)."""
    token = _budget.set([seconds])
    try:
        yield
    finally:
        _budget.reset(token)


def forget() -> None:
    """Empty the answer cache (benchmarks time a pattern's first match with it)."""
    with _state.lock:
        _state.cache.clear()


# --- the cache, shared by every thread, and requests in flight ------------------------------------------

class _State:
    def __init__(self):
        self.lock = threading.Lock()
        self.cache: OrderedDict = OrderedDict()
        self.pending: dict = {}            # key -> threading.Event set when its answer is known
        self.idle: list[_Helper] = []
        self.helpers = 0                   # helpers alive, idle or at work
        self.freed = threading.Condition(self.lock)


_state = _State()
# A process forked from this one (the app's warm job starter) must not share our helpers' pipes or a lock
# some other thread held at the fork.
os.register_at_fork(after_in_child=lambda: globals().__setitem__("_state", _State()))


def _answer(key: bytes, request: dict, limit: float) -> dict:
    state = _state
    while True:
        with state.lock:
            kept = state.cache.get(key)
            if kept is not None and kept.get("until", float("inf")) > time.monotonic():
                state.cache.move_to_end(key)
                return kept
            waiting = state.pending.get(key)
            if waiting is None:
                done = state.pending[key] = threading.Event()
        if waiting is None:
            break
        waiting.wait(WALL_S)   # the same pattern on the same names is being matched: its answer serves both
    try:
        answer = _ask({**request, "limit": limit})
        # Kept: the pattern's own verdicts, and for RETRY_S one stopped by the wall clock (a busy machine: a
        # flood of one pattern must not cost WALL_S a call). Not kept: "busy", and "slow" under a smaller
        # limit than LIMIT_S (the run's budget): they say nothing about the pattern alone.
        if "wall" in answer:
            answer["until"] = time.monotonic() + RETRY_S
        if "busy" not in answer and not ("slow" in answer and limit < LIMIT_S):
            with state.lock:
                state.cache[key] = answer
                while len(state.cache) > CACHE_SIZE:
                    state.cache.popitem(last=False)
        return answer
    finally:
        with state.lock:
            del state.pending[key]
        done.set()


def _ask(request: dict) -> dict:
    helper = _take()
    if helper is None:
        return {"busy": True}
    try:
        return helper.ask(request)
    finally:
        _give(helper)


def _take():
    """An idle helper, a new one if fewer than MAX_HELPERS exist, else the first freed within WALL_S."""
    state = _state
    deadline = time.monotonic() + WALL_S
    with state.lock:
        while not state.idle and state.helpers >= MAX_HELPERS:
            if not state.freed.wait(deadline - time.monotonic()):
                return None
        if state.idle:
            return state.idle.pop()
        state.helpers += 1
    try:
        return _Helper()
    except OSError:
        with state.lock:
            state.helpers -= 1
            state.freed.notify()
        raise


def _give(helper) -> None:
    state = _state
    with state.lock:
        if helper.alive() and len(state.idle) < KEEP_IDLE:
            state.idle.append(helper)
        else:
            helper.close()
            state.helpers -= 1
        state.freed.notify()


class _Helper:
    """One helper interpreter and its pipes; used by one thread at a time."""

    def __init__(self):
        self.proc = subprocess.Popen([sys.executable, "-I", "-S", str(HELPER)], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                                     encoding="utf-8", bufsize=1)

    def alive(self) -> bool:
        return self.proc.poll() is None

    def ask(self, request: dict) -> dict:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        try:
            self.proc.stdin.write(json.dumps(request) + "\n")
            self.proc.stdin.flush()
            ready, _, _ = select.select([self.proc.stdout], [], [], WALL_S)
            line = self.proc.stdout.readline() if ready else ""
        except OSError:
            line = ""
        if not line:   # starved past WALL_S, or gone: it cannot be trusted with the next request
            self.close()
            return {"slow": True, "wall": True, "cpu": request["limit"]}
        return json.loads(line)

    def close(self) -> None:
        if self.alive():
            self.proc.kill()
        self.proc.wait()
        for pipe in (self.proc.stdin, self.proc.stdout):
            if pipe is not None:
                with contextlib.suppress(OSError):
                    pipe.close()
