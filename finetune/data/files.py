"""Reading a dataset as stored: a .jsonl/.json/.csv/.parquet file, a folder of them, or a Hub dataset, with
`datasets`. JSON and JSONL are parsed here first so that a broken line is named by its number; every problem
is one DataError line naming data.path.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

from finetune.demo import resolve_data
from finetune.errors import DataError
from finetune.runfile import DataSection

FILE_TYPES = {".jsonl": "json", ".json": "json", ".csv": "csv", ".parquet": "parquet"}
MAX_FOLDER_ENTRIES = 2_000   # a data folder holds its shards; a system folder holds far more
HUB_ID = re.compile(r"^[\w.-]+(/[\w.-]+)?$")


def load_raw(data: DataSection, limit: int | None = None, method: str = "sft"):
    """The dataset as stored: (a datasets.Dataset or None, the rows to check, `where(i)` naming row i in messages:
    "line 7" of a JSONL file, "row 7" otherwise). JSON(L) is parsed here first, so a broken line is named by
    its number; a whole JSONL file is then loaded by `datasets` too, whose cache on disk lets TRL's
    tokenization of the same file be reused by the next run."""
    source = resolve_data(data.path, method)
    path = Path(source)
    label = f'data.path: "{data.path}"'
    if path.exists():
        if path.is_dir():
            check_folder(label, path)
            return _load_with_datasets(label, str(path), None, "train", limit)
        kind = FILE_TYPES.get(path.suffix.lower())
        if kind is None:
            raise DataError(f"{label}: unsupported file type {path.suffix or '(none)'!r}; use "
                            f"{', '.join(FILE_TYPES)}")
        if path.stat().st_size == 0:
            raise DataError(f"{label}: the file is empty")
        if kind != "json":
            return _load_with_datasets(label, kind, str(path), "train", limit)
        rows, lines = _read_json(label, path, limit)
        where = (lambda i: f"line {lines[i]}") if lines else (lambda i: f"example {i + 1}")
        # None: built from the rows once they pass the checks (Arrow refuses a column of mixed types).
        return _try_load_json(str(path)) if lines and not limit else None, rows, where
    if path.suffix.lower() in FILE_TYPES or not HUB_ID.match(data.path) or data.path.startswith("."):
        raise DataError(f"{label}: no such file")
    return _load_with_datasets(label, data.path, None, data.split, limit, name=data.name)


def _try_load_json(path: str):
    import logging

    import datasets

    log = logging.getLogger("datasets")
    level = log.level
    log.setLevel(logging.CRITICAL)  # a failure here is not the user's concern: the rows load another way
    try:
        return datasets.load_dataset("json", data_files=path, split="train")
    except Exception:  # rows our parser read but Arrow cannot type (or no writable cache): from_rows instead
        return None
    finally:
        log.setLevel(level)


def from_rows(rows: list[dict], keep: list[str]):
    """Parsed rows as a Dataset of the `keep` columns only (others may mix types, which Arrow refuses)."""
    from datasets import Dataset

    columns = [c for c in columns_of(rows) if c in keep]
    return Dataset.from_list([{c: r.get(c) for c in columns} for r in rows])


def columns_of(rows: list[dict]) -> list[str]:
    return list(dict.fromkeys(k for r in rows for k in r))


def columns_shown(columns, most: int = 12) -> str:
    """Column names for a message, each cut, at most `most` of them (then their number). Names are the
    data's schema, which a user needs to fix a file; values are never quoted. (A headerless CSV's first row
    becomes its column names: on a Space only users allowed to launch see errors, ui/access.py.)"""
    columns = [str(c) for c in columns]
    if not columns:
        return "none"
    names = ", ".join(c if len(c) <= 40 else c[:37] + "..." for c in columns[:most])
    return names + (f", ... ({len(columns)} columns)" if len(columns) > most else "")


def check_folder(label: str, folder: Path) -> None:
    """A folder as data.path is listed recursively by `datasets`, which reads every data file in it: a large
    system folder ran for minutes. Refuse one with more than MAX_FOLDER_ENTRIES files and folders (at any
    depth), having looked at no more than that, or one without a data file."""
    seen, found = 0, 0
    stack: list[str | Path] = [folder]   # the folders left to list; scandir gives the ones it finds as str
    while stack:
        try:
            with os.scandir(stack.pop()) as entries:
                for entry in entries:
                    seen += 1
                    if seen > MAX_FOLDER_ENTRIES:
                        raise DataError(f"{label}: a folder with more than {MAX_FOLDER_ENTRIES:,} files and "
                                        "folders; point data.path at the data file, or at a folder of data only")
                    if entry.is_dir(follow_symlinks=False):
                        stack.append(entry.path)
                    elif Path(entry.name).suffix.lower() in FILE_TYPES:
                        found += 1
        except OSError as exc:
            raise DataError(f"{label}: cannot be read: {exc.strerror or exc}") from None
    if not found:
        raise DataError(f"{label}: the folder holds no {', '.join(FILE_TYPES)} file")


def _read_json(label: str, path: Path, limit: int | None):
    """JSONL: one object per line (blank lines skipped). JSON: a list of objects, or {"data"|"train": [...]}."""
    if path.suffix.lower() == ".jsonl":
        return _read_jsonl(label, path, limit)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"{label}: cannot be read: {exc}") from None
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise DataError(f"{label}: not valid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})") from None
    if isinstance(doc, dict):
        doc = next((doc[k] for k in ("data", "train", "examples") if isinstance(doc.get(k), list)), doc)
    if not isinstance(doc, list) or not all(isinstance(r, dict) for r in doc):
        raise DataError(f"{label}: must hold a list of objects (one per example)")
    if not doc:
        raise DataError(f"{label}: the file has no examples")
    return doc[:limit] if limit else doc, None


def _read_jsonl(label: str, path: Path, limit: int | None):
    """One object per line (blank lines skipped), read line by line: a preview of a large upload reads only
    the lines it shows."""
    rows, lines = [], []
    try:
        with path.open(encoding="utf-8") as f:
            for number, line in enumerate(f, start=1):
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise DataError(f"{label}: line {number} is not valid JSON: {exc.msg} "
                                    f"(column {exc.colno})") from None
                if not isinstance(row, dict):
                    raise DataError(f"{label}: line {number} must be a JSON object, got {type(row).__name__}")
                rows.append(row)
                lines.append(number)
                if limit and len(rows) >= limit:
                    break
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"{label}: cannot be read: {exc}") from None
    if not rows:
        raise DataError(f"{label}: the file has no examples")
    return rows, lines


def _load_with_datasets(label, path, data_file, split, limit, name=None):
    import datasets

    datasets.disable_progress_bars()  # progress bars would fill train.log with carriage returns
    split_spec = f"{split}[:{limit}]" if limit else split
    try:
        ds = datasets.load_dataset(path, name, data_files=data_file, split=split_spec)
    except Exception as exc:  # datasets raises many kinds: each becomes one line naming the source
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        where = "cannot be read" if data_file else "cannot be loaded as a dataset"
        raise DataError(f"{label}: {where}: {first[:300]}") from None
    if len(ds) == 0:
        raise DataError(f"{label}: the file has no examples" if data_file else f"{label}: split {split!r} is empty")
    return ds, ds, (lambda i: f"row {i + 1}")
