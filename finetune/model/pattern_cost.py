"""Which regular expressions are provably cheap to match: those finetune.model.patterns matches in the calling
process, without waiting for a helper (behind other users' hostile patterns, in a flood).

A backtracking matcher anchored at the start (re.match, re.fullmatch) explores a tree of choices: each
element of a sequence can match in some number of ways, and the leaves are at most the product of those
numbers. Counted per element, for a name of at most n characters:
  a literal, a class, `.`, an anchor          1
  a group                                     its contents' ways
  an alternation                              the sum of its branches' ways
  x? (at most once)                           x's ways + 1
  a repeat of ONE character (c*, [a-z]+, .{2,5})   at most n + 1: how many it takes
Anything else (a repeat of a group or an alternation, a backreference, a lookaround, a conditional) gets no
bound here and goes to a helper, where LIMIT_S bounds it instead. `(.|.)*Z` is a repeat of an alternation;
`(a|a)(a|a)(a|a)...` has no repeat but 2**k ways, so the product catches it.
"""

from __future__ import annotations

from re import _constants as C  # type: ignore[attr-defined]  # CPython 3.11+, as pyproject says
from re import _parser as parser  # type: ignore[attr-defined]

# At most this many steps (ways x (pattern length + name length) x names) are matched in process. The bound
# is loose: patterns estimated at 30-40 million steps took 0.3-0.6 ms on a 32-layer Llama's 422 names; at
# ~5 ns a step, were it tight, 10 million would hold the GIL for 50 ms. `.*\.(q_proj|v_proj)` there: 2 million.
STEPS = 10_000_000
LONGEST = 1000        # longer patterns are never parsed here (re's parser is Python: 1 MB takes a second)

ONE_CHAR = {C.LITERAL, C.NOT_LITERAL, C.ANY, C.IN}
REPEATS = {C.MAX_REPEAT, C.MIN_REPEAT, getattr(C, "POSSESSIVE_REPEAT", C.MAX_REPEAT)}


def cheap(regex: str, names) -> bool:
    """True when matching `regex` (re.match or re.fullmatch) on every name provably takes under STEPS steps."""
    if len(regex) > LONGEST or not names:
        return not names
    longest = max(map(len, names))
    try:
        parsed = parser.parse(regex)
    except Exception:   # not a regex, or nested past the recursion limit: a helper says which, in its words
        return False
    paths = _ways(parsed, longest, STEPS)
    return paths is not None and paths * (len(regex) + longest) * len(names) <= STEPS


def _ways(items, n: int, cap: int) -> int | None:
    total = 1
    for op, av in items:
        ways = _ways_of(op, av, n, cap)
        if ways is None:
            return None
        total *= ways
        if total > cap:
            return None
    return total


def _ways_of(op, av, n: int, cap: int) -> int | None:
    if op in ONE_CHAR or op is C.AT:
        return 1
    if op is C.SUBPATTERN:
        return _ways(av[-1], n, cap)
    if op is getattr(C, "ATOMIC_GROUP", None):
        return _ways(av, n, cap)
    if op is C.BRANCH:
        total = 0
        for branch in av[1]:
            ways = _ways(branch, n, cap)
            if ways is None:
                return None
            total += ways
        return total
    if op in REPEATS:
        low, high, item = av
        if high <= 1:
            ways = _ways(item, n, cap)
            return None if ways is None else ways + (1 if low == 0 else 0)
        if len(item) == 1 and item[0][0] in ONE_CHAR:
            return max(1, min(high, n) - min(low, n) + 1)
    return None
