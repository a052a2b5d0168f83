"""The keys trl.SFTConfig (and so transformers.TrainingArguments) accepts, with the kind of value each takes.

Imported only when a run file uses a training key the run file does not declare itself: TRL takes seconds
to import, and counting parameters should not wait for it.
"""

import dataclasses
import functools
import types
import typing


def _kind(annotation) -> str:
    args = set(typing.get_args(annotation)) if isinstance(annotation, types.UnionType) or \
        typing.get_origin(annotation) is typing.Union else {annotation}
    args.discard(type(None))
    if args == {bool}:
        return "bool"
    if args == {int}:
        return "int"
    if args <= {int, float}:
        return "float"
    if args == {str}:
        return "str"
    return "any"


@functools.cache
def sft_field_kinds() -> dict[str, str]:
    from trl import SFTConfig

    hints = typing.get_type_hints(SFTConfig)
    return {f.name: _kind(hints.get(f.name, f.type)) for f in dataclasses.fields(SFTConfig) if f.init}
