"""Which modules PEFT's LoRA would adapt and which it would copy in full, by PEFT 0.21's own matching rules,
computed on a `Skeleton` (no model, no peft import), with every problem as one line naming the field.

The rules mirrored (peft/tuners/tuners_utils.py, peft/utils/other.py):
- target_modules as one string is a regular expression that must match a module's FULL name (re.fullmatch);
  as a list, an entry matches a module named exactly so or whose name ends with "." + entry.
- "all-linear" (any case; the run file writes it in lower case) becomes the full names of every Linear / Conv1D except the output embedding.
- exclude_modules (regex or names, the same two ways) wins over targets; so does modules_to_save, whose
  entries exclude any module with that name as a path component, and everything below it.
- layers_to_transform keeps only suffix-matched modules inside a numbered layer with one of those indices
  (an entry equal to a module's full name, such as lm_head, is taken whatever its layer).
- modules_to_save wraps every module whose full name simply ends with an entry (no dot needed).
PEFT silently ignores what matches nothing; here that is an error, since it is almost always a typo.
A user's pattern is matched by finetune.model.patterns (bounded in time, stdlib re's semantics), never here.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass

from finetune.errors import RunFileError
from finetune.model import patterns
from finetune.model.architecture import ADAPTABLE, CONV1D, EMBEDDING, LINEAR, Skeleton
from finetune.runfile.schema import ALL_LINEAR
from finetune.runfile.validators import did_you_mean, show

MEMO_LIMIT = 256     # cached matchings per model before the memo starts afresh
CONTAINERS = ("ModuleList", "ModuleDict", "ParameterList", "ParameterDict")   # PEFT cannot wrap these


@dataclass(frozen=True)
class Match:
    adapted: tuple        # indices into skeleton.modules that get an adapter, in model order
    saved: tuple          # indices of modules trained in full (modules_to_save), in model order
    saved_entry: tuple    # for each saved module, the modules_to_save entry that took it
    saved_sizes: tuple    # for each saved module, the parameters of its full copy
    saved_params: int     # parameters of the full copies (each copy counted once, tied weights included)
    frozen: frozenset     # unique parameters frozen by the copies (their originals), e.g. a bias under bias="all"
    embedding_targeted: bool   # PEFT then also saves the adapted embedding layers' base weights
    key: tuple = ()       # the targeting settings it was computed for: what later caches key on


def _key(value):
    return tuple(value) if isinstance(value, list) else value


def match(skel: Skeleton, lora) -> Match:
    """The modules `lora` (a LoraSection) selects on this model; cached per targeting settings on the skeleton,
    so changing r, alpha, dropout or bias reuses it. Raises RunFileError listing every problem."""
    ltt = lora.layers_to_transform
    key = ("match", _key(lora.target_modules), _key(lora.exclude_modules), _key(lora.modules_to_save),
           _key(ltt) if ltt is not None else None, _key(lora.layers_pattern))
    found = skel.memo.get(key)
    if found is None:
        if len(skel.memo) > MEMO_LIMIT:   # someone typing a regex, one keystroke at a time
            skel.memo.clear()
        found = _match(skel, lora)
        if isinstance(found, Match):
            found = dataclasses.replace(found, key=key)
        skel.memo[key] = found
    if isinstance(found, RunFileError):
        raise found
    return found


def _hits(field: str, shown: str, regex: str, names, problems: list, how: str = "fullmatch"):
    """The names `regex` matches (re.<how>), as a set; None and a problem if it is not a regular expression.
    One too costly to match raises patterns.TooCostly."""
    try:
        found = patterns.find(f"lora.{field}", shown, regex, names, how)
    except patterns.Invalid as exc:
        problems += exc.problems
        return None
    return {name for name, hit in zip(names, found, strict=True) if hit}


def _names_matcher(entries):
    """PEFT's rule for a list of names: exact full name, or a suffix after a dot."""
    exact = set(entries)
    suffixes = tuple("." + e for e in entries)
    return lambda name: name in exact or name.endswith(suffixes)


LAYER_INDEX = re.compile(r".*?\.[^.]*\.(?P<idx>\d+)\.")   # PEFT's, without layers_pattern: ours, not a user's


def _layer_index_finder(layers_pattern, names):
    """The first numbered path segment (PEFT's layer index); with layers_pattern, the number after the first
    of its entries that matches (PEFT tries them in order)."""
    if not layers_pattern:
        def find(name: str):
            m = LAYER_INDEX.match(name)
            return int(m.group("idx")) if m else None
        return find
    index: dict[str, int] = {}
    for p in reversed([layers_pattern] if isinstance(layers_pattern, str) else layers_pattern):
        found = patterns.find("lora.layers_pattern", p, rf"(?:^|.*?\.){p}\.(?P<idx>\d+)\.", names, "match", "idx")
        index.update((name, int(idx)) for name, idx in zip(names, found, strict=True) if idx is not None)
    return index.get


def _listing(skel: Skeleton) -> str:
    names = [g.name for g in skel.adaptable()]
    shown = ", ".join(names[:12]) + (", ..." if len(names) > 12 else "")
    return f"it has {shown}"


def _match(skel: Skeleton, lora):
    problems: list[str] = []
    names = tuple(m.name for m in skel.modules)
    layers = lora.layers_to_transform
    layers = [layers] if isinstance(layers, int) else layers
    excluded = _exclusion(skel, names, lora.exclude_modules, problems)
    saved_entries = lora.modules_to_save or []
    under_saved = _under_saved(saved_entries, names, problems)
    targeted, entries, all_linear = _targeting(skel, names, lora.target_modules, layers, problems)
    layer_of = None
    if layers is not None and not all_linear:
        layer_of = _layer_index_finder(lora.layers_pattern, names)
        _check_layers(skel, names, layers, lora.layers_pattern, layer_of, problems)
    targets, modules = lora.target_modules, skel.modules

    adapted: list[int] = []
    unadaptable: list[int] = []
    for i, m in enumerate(modules):
        if excluded(m.name) or under_saved(m.name) or not targeted(m.name):
            continue
        if layer_of is not None and entries and m.name not in entries:   # PEFT: an exact full name skips it
            idx = layer_of(m.name)
            if idx is None or idx not in layers:
                continue
        (adapted if m.kind in ADAPTABLE else unadaptable).append(i)
    by_entry: dict = {}
    for i in unadaptable:
        name = modules[i].name
        by_entry.setdefault(next((e for e in entries if _names_matcher([e])(name)), targets), []).append(i)
    for via, hits in by_entry.items():
        m = modules[hits[0]]
        what = f"{m.name} ({m.cls})" if len(hits) == 1 else f"{len(hits)} such modules, e.g. {m.name} ({m.cls})"
        problems.append(f"lora.target_modules: {show(via)} matches {what}, which LoRA cannot adapt; it adapts "
                        "Linear, Conv1D and Embedding layers")

    saved, saved_entry = _saved(skel, saved_entries, problems)
    if set(saved) & set(adapted):
        clash = modules[sorted(set(saved) & set(adapted))[0]].name
        problems.append(f"lora.modules_to_save: {clash} would get both an adapter and a full copy; name it in only "
                        "one of target_modules and modules_to_save")
    if not adapted and not problems:
        problems.append("lora.target_modules: after exclude_modules, modules_to_save and layers_to_transform no "
                        f"module is left to adapt; {_listing(skel)}")
    if problems:
        return RunFileError(problems)

    sizes, frozen = [], set()
    for i in saved:
        inside = subtree_params(skel, modules[i].name)
        sizes.append(sum(skel.param_numels[p] for p in inside))
        frozen |= inside
    embedding_targeted = _embedding_targeted(skel, names, targets, all_linear)
    return Match(tuple(adapted), tuple(saved), tuple(saved_entry), tuple(sizes), sum(sizes), frozenset(frozen),
                 embedding_targeted)


def _exclusion(skel: Skeleton, names, ex, problems):
    """exclude_modules: checked first by PEFT, on every module; a regex (fullmatch) or names."""
    if isinstance(ex, str):
        hits = _hits("exclude_modules", ex, ex, names, problems)
        if hits is None:
            return lambda name: False
        if not hits:
            problems.append(f"lora.exclude_modules: {show(ex)} matches no module of this model (one string is a "
                            f"regular expression on the full name, e.g. {_example(skel)}); {_listing(skel)}")
        return hits.__contains__
    if not ex:
        return lambda name: False
    for entry in ex:
        if not any(map(_names_matcher([entry]), names)):
            problems.append(f"lora.exclude_modules: {show(entry)} matches no module of this model"
                            f"{did_you_mean(entry, _shorts(skel))}; {_listing(skel)}")
    return _names_matcher(ex)


def _under_saved(entries, names, problems):
    """PEFT never adapts a module that has a modules_to_save entry as a path component, or lies below one
    (its regex, with the entry pasted in: an entry is a pattern there too)."""
    under: set[str] = set()
    for e in entries:
        under |= _hits("modules_to_save", e, rf"(^|.*\.){e}($|\..*)", names, problems, "match") or set()
    return under.__contains__


def _targeting(skel: Skeleton, names, targets, layers, problems):
    """(is-targeted predicate, list entries, all-linear?) for target_modules, with its problems."""
    if targets == ALL_LINEAR:   # with layers_to_transform it is refused by the run file's cross_checks
        chosen = [m.name for m in skel.modules if m.kind in (LINEAR, CONV1D) and m.name != skel.output_name]
        return _names_matcher(chosen), [], True
    if isinstance(targets, str):
        hits = _hits("target_modules", targets, targets, names, problems)
        if hits is None:
            return (lambda name: False), [], False
        if not hits:
            shorts = _shorts(skel)
            hint = (f"; write [{targets}] to match by name" if targets in shorts
                    else f"{did_you_mean(targets, shorts)}; {_listing(skel)}")
            problems.append(f"lora.target_modules: {show(targets)} matches no module of this model: one string is a "
                            f"regular expression on the full name (e.g. {_example(skel)}){hint}")
        return hits.__contains__, [], False
    for entry in targets:
        if not any(map(_names_matcher([entry]), names)):
            problems.append(f"lora.target_modules: {show(entry)} matches no module of this model"
                            f"{did_you_mean(entry, _shorts(skel))}; {_listing(skel)}")
    return _names_matcher(targets), list(targets), False


def _check_layers(skel: Skeleton, names, layers, layers_pattern, layer_of, problems) -> None:
    if layers_pattern:
        for p in [layers_pattern] if isinstance(layers_pattern, str) else layers_pattern:
            if not any(_layer_index_finder(p, names)(n) is not None for n in names):
                problems.append(f"lora.layers_pattern: {show(p)} names no numbered module list of this model"
                                f"{did_you_mean(p, _lists(skel))}; it has {', '.join(_lists(skel)) or 'none'}")
    present = sorted({i for i in map(layer_of, names) if i is not None})
    missing = [i for i in layers if i not in present]
    if present and missing:
        verb = "is" if len(missing) == 1 else "are"
        problems.append(f"lora.layers_to_transform: {', '.join(map(str, missing))} {verb} beyond this model's "
                        f"layers ({present[0]}-{present[-1]})")


def _saved(skel: Skeleton, entries, problems):
    saved, saved_entry = [], []
    for entry in entries:
        hits = [i for i, m in enumerate(skel.modules) if m.name.endswith(entry)]
        if not hits:
            problems.append(f"lora.modules_to_save: {show(entry)} matches no module of this model"
                            f"{did_you_mean(entry, _shorts(skel, adaptable_only=False))}; PEFT would ignore it")
        for i in hits:
            if i not in saved:
                saved.append(i)
                saved_entry.append(entry)
    order = sorted(range(len(saved)), key=lambda k: saved[k])
    saved, saved_entry = [saved[k] for k in order], [saved_entry[k] for k in order]
    names = [skel.modules[i].name for i in saved]
    reported = set()
    for i, name, entry in zip(saved, names, saved_entry, strict=True):
        m = skel.modules[i]
        if m.cls in CONTAINERS and entry not in reported:
            reported.add(entry)
            problems.append(f"lora.modules_to_save: {show(entry)} matches {name}, a {m.cls}, which PEFT cannot "
                            "train in full; name the modules inside it")
        outer = next((k for k, o in enumerate(names) if name.startswith(o + ".")), None)
        if outer is not None and (entry, saved_entry[outer]) not in reported:
            reported.add((entry, saved_entry[outer]))
            problems.append(f"lora.modules_to_save: {show(entry)} lies inside {show(saved_entry[outer])} (e.g. "
                            f"{name}), which is already trained in full")
    return saved, saved_entry


def subtree_params(skel: Skeleton, prefix: str) -> set[int]:
    """Unique parameters of a module and everything below it (a deepcopy of it has as many)."""
    inside: set[int] = set()
    for m in skel.modules:
        if m.name == prefix or m.name.startswith(prefix + "."):
            inside.update(i for _, i in m.params)
    return inside


def _embedding_targeted(skel: Skeleton, names, targets, all_linear: bool) -> bool:
    """PEFT's save_embedding_layers="auto" test (utils/save_and_load.py): an exact list entry embed_tokens or
    lm_head, or a regular expression matching a module so named."""
    embedding_names = ("embed_tokens", "lm_head")
    if all_linear:
        return False
    if isinstance(targets, str):   # matched already by _targeting: an answer from the pattern cache
        hits = _hits("target_modules", targets, targets, names, [])
        return any(m.name in (hits or ()) for m in skel.modules if m.short in embedding_names)
    return any(e in targets for e in embedding_names)


def _shorts(skel: Skeleton, adaptable_only=True) -> list[str]:
    if adaptable_only:
        return [g.name for g in skel.adaptable()]
    return list(dict.fromkeys(m.short for m in skel.modules))


def _lists(skel: Skeleton) -> list[str]:
    return [m.short for m in skel.modules if m.cls == "ModuleList"]


def _example(skel: Skeleton) -> str:
    return next((m.name for m in skel.modules if m.kind in ADAPTABLE and m.kind != EMBEDDING), skel.modules[-1].name)
