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
from finetune.errors import DataError
from finetune.runfile import DataSection, RunConfig
from finetune.runfile.data_formats import BY_NAME, FORMATS, from_sharegpt
from finetune.runfile.method import DATA_FORMATS

if TYPE_CHECKING:
    from datasets import Dataset

SHOWN = 5  # problems listed before "... and N more": enough to see the pattern, short enough to read


@dataclass
class Examples:
    """A loaded dataset in TRL's shape, with what the job log and the UI say about it."""
    train: Dataset
    eval: Dataset | None          # when data.eval_size > 0
    format: str                   # a registry format's name (as found, before conversion)


def detect_format(columns, data: DataSection, method: str = "sft") -> str:
    """The format named in the run file, or under `auto` the first whose columns are all there; either must be
    one the method trains on, or the missing column(s) are named."""
    columns = list(columns)
    takes = DATA_FORMATS[method]
    if data.format != "auto":
        needs = BY_NAME[data.format].needs
        missing = [c for c in needs if c not in columns]
        if data.format == "chat" and missing and "conversations" in columns:
            missing = []
        if missing:
            raise DataError(f'data.format: "{data.format}" needs the column(s) {", ".join(needs)}; '
                            f'"{data.path}" has {columns_shown(columns)}')
        if data.format not in takes:
            raise DataError(f'data.format: method {method} does not train on {data.format} data; it takes '
                            f'{", ".join(takes)}')
        return data.format
    if "conversations" in columns and "messages" not in columns:
        found: str | None = "chat"  # ShareGPT's from/value turns, turned into messages below
    else:
        found = next((f.name for f in FORMATS if all(c in columns for c in f.needs)), None)
    if found is not None and found in takes:
        return found
    if found is None and method == "sft":
        raise DataError(f'data.path: "{data.path}": no known format in its columns ({columns_shown(columns)}); '
                        "expected messages (chat), prompt + completion, instruction + output (Alpaca), or text")
    if found is not None and method == "sft":
        trains = " or ".join(m for m, formats in DATA_FORMATS.items() if m != "sft" and found in formats)
        raise DataError(f'data.path: "{data.path}" holds {BY_NAME[found].label} data ({columns_shown(columns)}), '
                        f"with no answers for sft to imitate; set method.name to {trains}, or data.format")
    want = BY_NAME[takes[0]]
    missing = [c for c in want.needs if c not in columns] or list(want.needs)
    raise DataError(f'data.path: "{data.path}": method {method} needs {want.label} data; the column(s) '
                    f'{", ".join(missing)} are missing (it has {columns_shown(columns)})')


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


def to_trl(data: DataSection, tokenizer, limit: int | None = None, method: str = "sft", extra: tuple = ()):
    """Load, detect, check and convert: (a Dataset in one of TRL's shapes, the format found). `extra`: further
    columns kept as they are (GRPO hands them to its rewards: exact_match's column)."""
    import datasets

    datasets.disable_progress_bars()  # they would fill train.log with carriage returns
    ds, rows, where = load_raw(data, limit, method)
    columns = columns_of(rows) if isinstance(rows, list) else ds.column_names
    fmt = detect_format(columns, data, method)
    for col in extra:
        if col not in columns:
            raise DataError(f'method.rewards: exact_match compares with the column "{col}", which "{data.path}" '
                            f"does not have (it has {columns_shown(columns)})")
    record = BY_NAME[fmt]
    read = [*record.keep, "conversations", *extra]
    check_rows(_only(rows, read), fmt, where, f'data.path: "{data.path}"')
    if ds is None:
        ds = from_rows(rows, read)
    has_template = bool(getattr(tokenizer, "chat_template", None))
    if fmt == "chat" and "messages" not in ds.column_names:
        ds = ds.map(_sharegpt_row, remove_columns=ds.column_names)
    elif record.convert is not None:
        ds = ds.map(record.convert, fn_kwargs={"chat": has_template}, remove_columns=ds.column_names)
    ds = ds.select_columns([c for c in (*record.trl_columns, *extra) if c in ds.column_names])
    first = ds[0]
    chat = fmt == "chat" or any(isinstance(first.get(c), list) for c in ("prompt", "completion", "chosen", "rejected"))
    if chat and not has_template:
        raise DataError(f'data.format: "{fmt}" data is chat turns, but the tokenizer of this model has no chat '
                        'template; choose a model with one (an instruct or chat model), or use plain-text data')
    return ds, fmt


def _only(rows, columns: list[str]):
    """The rows to check, reading only the columns that matter (a Dataset decodes nothing else)."""
    if isinstance(rows, list):
        return rows
    return rows.select_columns([c for c in columns if c in rows.column_names])


def load_examples(run: RunConfig, tokenizer) -> Examples:
    """The whole dataset, checked, in TRL's shape, with the evaluation split taken off when asked."""
    ds, fmt = to_trl(run.data, tokenizer, method=run.method.name, extra=reward_columns(run))
    n_eval = eval_count(run.data, len(ds))
    if not n_eval:
        return Examples(ds, None, fmt)
    parts = ds.train_test_split(test_size=n_eval, seed=run.training.seed)
    return Examples(parts["train"], parts["test"], fmt)


def reward_columns(run: RunConfig) -> tuple[str, ...]:
    """The data columns GRPO's rewards read (exact_match's), kept beside the prompt."""
    if run.method.name != "grpo":
        return ()
    return tuple(dict.fromkeys(r["column"] for r in run.method.rewards if r["type"] == "exact_match"))


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
    """One example as the model will read it: the chat template applied, the end-of-text token added. A
    preference pair shows its chosen answer; a prompt-only row (GRPO) its prompt."""
    eos = tokenizer.eos_token or ""
    if "messages" in row:
        return tokenizer.apply_chat_template(row["messages"], tokenize=False, tools=row.get("tools"))
    answer = row.get("chosen", row.get("completion"))
    prompt = row.get("prompt")
    if isinstance(prompt, list) or isinstance(answer, list):
        return tokenizer.apply_chat_template((prompt or []) + (answer or []), tokenize=False)
    if "text" in row:
        text = row["text"]
    else:
        text = (prompt or "") + (answer or "")
        if answer is None:
            return text
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
    ds, _ = to_trl(run.data, tokenizer, limit=n, method=run.method.name, extra=reward_columns(run))
    return [render(r, tokenizer) for r in ds.select(range(min(n, len(ds))))]
