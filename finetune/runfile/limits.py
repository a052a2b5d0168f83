"""A bounded YAML/JSON reader for run files, which on a Space come from anyone who can reach the app.

Plain `yaml.safe_load` is safe from code execution but not from cost: 334 bytes of nested aliases (a
"billion laughs") expand to hundreds of millions of list items as soon as anything walks the value (an
error message quoting it, say); a 1 MB flow list of 100k short words takes 13 s in the pure-Python loader;
20,000 nested brackets overflow the stack; a 5,000-digit integer raises ValueError, not YAMLError. So the
limits are enforced here, at the parser, for every caller (CLI, page, HTTP API):

- the document is at most MAX_BYTES (checked before parsing);
- aliases (`*name`) are refused: a run file has no use for them, and no budget is simpler than none;
- at most MAX_NODES values and MAX_DEPTH levels of nesting, counted in a first pass over the parser's
  events (no nodes or objects are built), so a refusal costs only what was read before the limit;
- integers have at most MAX_INT_DIGITS digits; a key given twice in one mapping is an error (YAML says
  keys are unique; PyYAML silently keeps the last one).

Events come from libyaml (C) when PyYAML has it: a document under MAX_BYTES must still be cheap to read or
to refuse. Every refusal is one RunFileError line naming the source, the line and the problem.
"""

from __future__ import annotations

import yaml
from yaml.events import (
    AliasEvent,
    MappingEndEvent,
    MappingStartEvent,
    ScalarEvent,
    SequenceEndEvent,
    SequenceStartEvent,
)
from yaml.nodes import MappingNode, ScalarNode

from finetune.errors import RunFileError

MAX_BYTES = 1_000_000    # a real run file is a few KB; presets are under 2 KB
MAX_NODES = 2_000        # a whole run file has ~150 values; a document of 2,000 loads in ~20 ms
MAX_DEPTH = 16           # section -> key -> list or mapping -> value is depth 4
MAX_INT_DIGITS = 20      # 2**64 has 20 digits; nothing in a run file needs more
QUOTE_CHARS = 80         # values quoted in messages are cut to this many characters

try:   # libyaml, in C: its events come ~5x faster than from PyYAML's pure-Python scanner and parser
    from yaml import CSafeLoader as _SafeLoader
except ImportError:   # PyYAML built without libyaml
    # mypy types the name from the first import; this pure-Python class has the same interface
    from yaml import SafeLoader as _SafeLoader  # type: ignore[assignment]


class _Refused(yaml.YAMLError):
    """A limit was hit: `message` is the whole problem, `mark` where."""

    def __init__(self, message: str, mark=None):
        super().__init__(message)
        self.message, self.mark = message, mark


def cut(text: str, limit: int = QUOTE_CHARS) -> str:
    """`text` shortened to `limit` characters, with an ellipsis saying that it was."""
    return text if len(text) <= limit else text[:limit - 3] + "..."


def count_values(value) -> int:
    """How many values `value` is once written as YAML, counted as the parser counts them (a key is one, a
    list or mapping is one more than what it holds): what MAX_NODES bounds."""
    if isinstance(value, dict):
        return 1 + sum(1 + count_values(v) for v in value.values())
    if isinstance(value, (list, tuple)):
        return 1 + sum(count_values(v) for v in value)
    return 1


def _check_events(text: str) -> None:
    """A first pass over the parser's events alone (no nodes, no objects: cheap), refusing aliases and
    counting values and nesting, so a refusal costs only what was read before the limit."""
    parser = _SafeLoader(text)   # only its parser is used here (CSafeLoader's is libyaml's CParser)
    nodes = depth = 0
    try:
        while parser.check_event():
            event = parser.get_event()
            if isinstance(event, AliasEvent):
                raise _Refused(f"aliases (*{cut(str(event.anchor), 20)}) are not allowed in a run file; write "
                               "the value out", event.start_mark)
            if isinstance(event, (ScalarEvent, SequenceStartEvent, MappingStartEvent)):
                nodes += 1
                if nodes > MAX_NODES:
                    raise _Refused(f"more than {MAX_NODES:,} values; a run file needs far fewer", event.start_mark)
            if isinstance(event, (SequenceStartEvent, MappingStartEvent)):
                depth += 1
                if depth > MAX_DEPTH:
                    raise _Refused(f"nested more than {MAX_DEPTH} levels deep", event.start_mark)
            elif isinstance(event, (SequenceEndEvent, MappingEndEvent)):
                depth -= 1
    finally:
        parser.dispose()


class RunFileLoader(_SafeLoader):
    """yaml.CSafeLoader (or SafeLoader) refusing duplicate keys and huge integers; load_bounded checks the
    events first."""

    def construct_mapping(self, node, deep=False):
        if isinstance(node, MappingNode):
            seen = set()
            for key_node, _ in node.value:
                if not isinstance(key_node, ScalarNode):
                    continue   # a list or mapping as a key: SafeConstructor refuses it as unhashable
                key = self.construct_object(key_node)
                if key in seen:
                    raise _Refused(f'the key "{cut(str(key))}" is given twice in the same mapping',
                                   key_node.start_mark)
                seen.add(key)
        return super().construct_mapping(node, deep)

    def construct_yaml_int(self, node):
        digits = sum(ch.isdigit() for ch in str(node.value))
        if digits > MAX_INT_DIGITS:
            raise _Refused(f"an integer with {digits} digits; at most {MAX_INT_DIGITS} are allowed",
                           node.start_mark)
        return super().construct_yaml_int(node)


RunFileLoader.add_constructor("tag:yaml.org,2002:int", RunFileLoader.construct_yaml_int)


def load_bounded(text: str, source: str):
    """Parse one YAML or JSON document within the limits; raises RunFileError (one line) otherwise."""
    # Bytes >= characters, and UTF-8 takes at most 4 bytes a character: encode only when it can matter.
    size = len(text) if not MAX_BYTES // 4 < len(text) <= MAX_BYTES else len(text.encode("utf-8", "replace"))
    if size > MAX_BYTES:
        raise RunFileError(f"{source}: too large for a run file (over {MAX_BYTES:,} bytes)")
    loader = None
    try:
        _check_events(text)
        loader = RunFileLoader(text)
        return loader.get_single_data()
    except _Refused as exc:
        raise RunFileError(f"{source}: {_where(exc.mark)}{exc.message}") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        problem = getattr(exc, "problem", None) or (str(exc).splitlines() or ["unreadable"])[0]
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        raise RunFileError(f"{source}: not valid YAML or JSON{where}: {cut(problem, 200)}") from None
    except (ValueError, RecursionError) as exc:   # what a constructor may raise beyond YAMLError
        raise RunFileError(f"{source}: not valid YAML or JSON: {cut(str(exc), 200)}") from None
    finally:
        if loader is not None:
            loader.dispose()


def _where(mark) -> str:
    return f"line {mark.line + 1}: " if mark is not None else ""
