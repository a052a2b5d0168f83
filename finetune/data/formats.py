"""The dataset: load it, recognise its format, check every example, and turn it into one of the shapes TRL's
SFTTrainer takes (conversational `messages`, `prompt` + `completion`, or `text`).

Runs before any model weights load, so bad data costs the user seconds, not a model download. Every problem is
one DataError line naming the file, the JSONL line (or row) and the columns found. Reading the files is
finetune.data.files' job.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from finetune.data.files import columns_of, columns_shown, from_rows, load_raw
from finetune.data.registry import BY_NAME, FORMATS, from_sharegpt
from finetune.errors import DataError
from finetune.runfile import DataSection, RunConfig

if TYPE_CHECKING:
    from datasets import Dataset

SHOWN = 5  # problems listed before "... and N more": enough to see the pattern, short enough to read


@dataclass
class Examples:
    """A loaded dataset in TRL's shape, with what the job log and the UI say about it."""
    train: Dataset
    eval: Dataset | None          # when data.eval_size > 0
    format: str                   # chat | prompt_completion | alpaca | text (as found, before conversion)


def detect_format(columns, data: DataSection) -> str:
    """The format named in the run file, or under `auto` the first whose columns are all there."""
    columns = list(columns)
    if data.format != "auto":
        needs = BY_NAME[data.format].needs
        missing = [c for c in needs if c not in columns]
        if data.format == "chat" and missing and "conversations" in columns:
            return "chat"
        if missing:
            raise DataError(f'data.format: "{data.format}" needs the column(s) {", ".join(needs)}; '
                            f'"{data.path}" has {columns_shown(columns)}')
        return data.format
    if "conversations" in columns and "messages" not in columns:
        return "chat"  # ShareGPT's from/value turns, turned into messages below
    for fmt in FORMATS:
        if all(c in columns for c in fmt.needs):
            return fmt.name
    raise DataError(f'data.path: "{data.path}": no known format in its columns ({columns_shown(columns)}); '
                    "expected messages (chat), prompt + completion, instruction + output (Alpaca), or text")


def check_rows(rows, fmt: str, where, label: str) -> None:
    """Every example checked; all problems found (up to SHOWN) in one DataError. rows: an iterable of dicts."""
    problems = []
    for i, row in enumerate(rows):
        if fmt == "chat" and "messages" not in row:
            row = {"messages": from_sharegpt(row.get("conversations"))}
        row = {col: row.get(col) for col in BY_NAME[fmt].keep}
        if (problem := BY_NAME[fmt].check(row)) is not None:
            problems.append(f"{label}: {where(i)}: {problem}")
    if problems:
        more = len(problems) - SHOWN
        raise DataError(problems[:SHOWN] + ([f"{label}: ... and {more} more problem(s) like these"] if more > 0 else []))


def _sharegpt_row(row: dict) -> dict:
    return {"messages": from_sharegpt(row["conversations"])}


def to_trl(data: DataSection, tokenizer, limit: int | None = None):
    """Load, detect, check and convert: (a Dataset in one of TRL's shapes, the format found)."""
    import datasets

    datasets.disable_progress_bars()  # they would fill train.log with carriage returns
    ds, rows, where = load_raw(data, limit)
    fmt = detect_format(columns_of(rows) if isinstance(rows, list) else ds.column_names, data)
    record = BY_NAME[fmt]
    read = [*record.keep, "conversations"]
    check_rows(_only(rows, read), fmt, where, f'data.path: "{data.path}"')
    if ds is None:
        ds = from_rows(rows, read)
    has_template = bool(getattr(tokenizer, "chat_template", None))
    if fmt == "chat" and "messages" not in ds.column_names:
        ds = ds.map(_sharegpt_row, remove_columns=ds.column_names)
    elif record.convert is not None:
        ds = ds.map(record.convert, fn_kwargs={"chat": has_template}, remove_columns=ds.column_names)
    ds = ds.select_columns([c for c in record.trl_columns if c in ds.column_names])
    chat = fmt == "chat" or (fmt != "text" and not isinstance(ds[0]["prompt"], str))
    if chat and not has_template:
        raise DataError(f'data.format: "{fmt}" data is chat turns, but the tokenizer of this model has no chat '
                        'template; choose a model with one (an instruct or chat model), or use text or '
                        'prompt_completion data')
    return ds, fmt


def _only(rows, columns: list[str]):
    """The rows to check, reading only the columns that matter (a Dataset decodes nothing else)."""
    if isinstance(rows, list):
        return rows
    return rows.select_columns([c for c in columns if c in rows.column_names])


def load_examples(run: RunConfig, tokenizer) -> Examples:
    """The whole dataset, checked, in TRL's shape, with the evaluation split taken off when asked."""
    ds, fmt = to_trl(run.data, tokenizer)
    n_eval = eval_count(run.data, len(ds))
    if not n_eval:
        return Examples(ds, None, fmt)
    parts = ds.train_test_split(test_size=n_eval, seed=run.training.seed)
    return Examples(parts["train"], parts["test"], fmt)


def last_reply_as_completion(ds):
    """Chat rows as conversational prompt + completion, split before the last assistant reply: the completion
    TRL trains on when the chat template cannot mark every reply. Turns after that reply are dropped."""
    def split(row):
        turns = row["messages"]
        last = max(i for i, t in enumerate(turns) if t["role"] == "assistant")
        return {"prompt": turns[:last], "completion": [turns[last]]}

    return ds.map(split, remove_columns=ds.column_names)


def eval_count(data: DataSection, n: int) -> int:
    """data.eval_size as a number of examples: a fraction of n below 1, a count from 1 up; at least one of
    the n examples must be left to train on."""
    size = data.eval_size
    if not size:
        return 0
    if size >= 1 and size != int(size):
        raise DataError(f"data.eval_size: a number of examples must be whole (or a fraction below 1), got {size}")
    count = max(1, round(size * n)) if size < 1 else int(size)
    if count >= n:
        raise DataError(f"data.eval_size: {size:g} leaves no example to train on; the dataset has {n}")
    return count


def render(row: dict, tokenizer) -> str:
    """One example as the model will read it: the chat template applied, the end-of-text token added."""
    eos = tokenizer.eos_token or ""
    if "messages" in row:
        return tokenizer.apply_chat_template(row["messages"], tokenize=False, tools=row.get("tools"))
    if "prompt" in row:
        if isinstance(row["prompt"], list):
            return tokenizer.apply_chat_template(row["prompt"] + row["completion"], tokenize=False)
        text = row["prompt"] + row["completion"]
    else:
        text = row["text"]
    return text if text.endswith(eos) else text + eos


def count_too_long(rows, tokenizer, max_length: int, sample: int = 2_000) -> tuple[int, int]:
    """How many examples are longer than max_length tokens (and will be truncated), of how many checked.
    Counted on at most `sample` examples: a large dataset gets an estimate, not a second full tokenization."""
    rows = rows if len(rows) <= sample else rows.shuffle(seed=0).select(range(sample))
    texts = [render(r, tokenizer) for r in rows]
    lengths = [len(ids) for ids in tokenizer(texts, add_special_tokens=False)["input_ids"]]
    return sum(n > max_length for n in lengths), len(lengths)


def preview(run: RunConfig, n: int = 3) -> list[str]:
    """The first n examples as the model will see them: a cheap look for the UI (reads only what it shows)."""
    from finetune.model.loading import load_tokenizer

    tokenizer = load_tokenizer(run.model)
    ds, _ = to_trl(run.data, tokenizer, limit=n)
    return [render(r, tokenizer) for r in ds.select(range(min(n, len(ds))))]
