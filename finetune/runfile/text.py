"""Run-file text: YAML or JSON in, a plain dict out (and back), and the overlay of one partial run file on
another (how presets apply). Nothing here knows the sections' fields: that is schema.py."""

from __future__ import annotations

from pathlib import Path

import yaml

from finetune.errors import RunFileError
from finetune.runfile.limits import MAX_BYTES, load_bounded


class _RunDumper(yaml.SafeDumper):
    """Sections and their settings one per line, lists of names on one line: how people write run files."""


_RunDumper.add_representer(list, lambda d, v: d.represent_sequence("tag:yaml.org,2002:seq", v, flow_style=True))
_RunDumper.add_representer(dict, lambda d, v: d.represent_mapping("tag:yaml.org,2002:map", v, flow_style=False))


def dump_yaml(run: dict) -> str:
    """A run file's dict as YAML text, in the layout people write by hand."""
    return yaml.dump(run, Dumper=_RunDumper, sort_keys=False, allow_unicode=True)


def parse_text(text: str, source: str = "run file") -> dict:
    """YAML or JSON text -> a dict (JSON is YAML); one clear line when it does not parse or breaks one of
    the limits every run file is held to (size, aliases, nesting, duplicate keys: see limits.py)."""
    if not isinstance(text, str):
        raise RunFileError(f"{source}: must be YAML or JSON text, got {type(text).__name__}")
    data = load_bounded(text, source) if text.strip() else {}
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise RunFileError(f"{source}: must be a mapping with sections model, lora, data, training; "
                           f"got {type(data).__name__}")
    return data


def read_file(path: str | Path, source: str | None = None) -> dict:
    """A run file from disk; `source` names it in messages (default: its path)."""
    path = Path(path)
    source = source or str(path)
    if not path.is_file():
        raise RunFileError(f"{source}: no such run file")
    try:
        size = path.stat().st_size
        if size > MAX_BYTES:   # refused before it is read into memory
            raise RunFileError(f"{source}: too large for a run file ({size:,} bytes; at most {MAX_BYTES:,})")
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise RunFileError(f"{source}: cannot be read: {exc}") from None
    return parse_text(text, source)


def overlay(base: dict, top: dict) -> dict:
    """A preset or an edit laid over a run file's dict: sections merge key by key, values replace."""
    out = {k: dict(v) if isinstance(v, dict) else v for k, v in base.items()}
    for section, values in top.items():
        if isinstance(values, dict) and isinstance(out.get(section), dict):
            out[section].update(values)
        else:
            out[section] = values
    return out
