"""The data formats, one record each: the columns that identify it, the columns kept, how one example is
checked, how it becomes one of the shapes TRL's SFTTrainer takes, and its name in Axolotl's `datasets[].type`.

Everything else reads this table: the run file's `data.format` choices, `auto` detection (records are tried
in order), the UI's dropdown, the Axolotl export and import. A new format is one new record here.
A leaf module of the run file's package: the run file's schema, export and import take its names and records,
and finetune.data (which reads a run file) checks and converts rows with them (ARCHITECTURE.md: data imports
runfile, never the reverse).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field

ROLES = {"system", "user", "assistant", "tool"}
SHAREGPT_ROLES = {"human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant",
                  "system": "system", "tool": "tool"}
ALPACA_PROMPT = "### Instruction:\n{instruction}\n\n{input}### Response:\n"


@dataclass(frozen=True)
class Format:
    name: str
    label: str                          # what the UI's dropdown shows
    needs: tuple[str, ...]              # columns that must all be there (the first match wins under `auto`)
    keep: tuple[str, ...]               # columns read (needs + optional ones); the rest is dropped
    trl_columns: tuple[str, ...]        # what TRL is given after conversion
    check: Callable[[dict], str | None]  # one example -> its problem, or None
    axolotl: str | dict                 # Axolotl's datasets[].type for this format
    # one example -> TRL's shape; `chat` says whether the tokenizer has a chat template. None: as it is.
    convert: Callable[..., dict] | None = field(default=None)


def check_turns(turns: object, column: str) -> str | None:
    if not isinstance(turns, list) or not turns:
        return f'"{column}" must be a non-empty list of messages'
    for t in turns:
        # The shape is described, never the values: a data error must not quote the data (a Space shows
        # errors to visitors, and a dataset may be private).
        if not isinstance(t, dict) or not isinstance(t.get("role"), str) or not isinstance(t.get("content"), str):
            got = (f"an object with keys {', '.join(str(k)[:20] for k in list(t)[:6])}" if isinstance(t, dict)
                   else f"a {type(t).__name__}")
            return f'"{column}" must hold objects with a "role" and a string "content", got {got}'
        if t["role"] not in ROLES:
            role = f' "{t["role"]}"' if re.fullmatch(r"[A-Za-z_]{1,20}", t["role"]) else ""   # a label, not text
            return f'"{column}" has an unknown role{role}; roles are {", ".join(sorted(ROLES))}'
    return None


def _strings(row: dict, columns: tuple[str, ...], may_be_empty: tuple[str, ...] = ()) -> str | None:
    for col in columns:
        value = row[col]
        if not isinstance(value, str):
            return f'"{col}" must be a string, got {"null" if value is None else type(value).__name__}'
        if col not in may_be_empty and not value.strip():
            return f'"{col}" is empty'
    return None


def _check_chat(row: dict) -> str | None:
    problem = check_turns(row["messages"], "messages")
    if problem is None and not any(t["role"] == "assistant" for t in row["messages"]):
        problem = '"messages" has no assistant message to learn from'
    return problem


def _check_prompt_completion(row: dict) -> str | None:
    """Both strings (the prompt may be empty) or both lists of chat messages."""
    for col in ("prompt", "completion"):
        value = row[col]
        if isinstance(value, list):
            if (problem := check_turns(value, col)) is not None:
                return problem
        elif (problem := _strings(row, (col,), may_be_empty=("prompt",))) is not None:
            return problem
    if isinstance(row["prompt"], list) != isinstance(row["completion"], list):
        return '"prompt" and "completion" must both be strings or both be lists of messages'
    return None


def _check_alpaca(row: dict) -> str | None:
    problem = _strings(row, ("instruction", "output"))
    if problem is None and row.get("input") is not None and not isinstance(row["input"], str):
        problem = f'"input" must be a string, got {type(row["input"]).__name__}'
    return problem


def from_sharegpt(turns: object) -> object:
    """ShareGPT's {"from", "value"} turns as {"role", "content"} messages."""
    if not isinstance(turns, list):
        return turns
    return [{"role": SHAREGPT_ROLES.get(str(t.get("from")), t.get("from")), "content": t.get("value")}
            if isinstance(t, dict) and "from" in t else t for t in turns]


def alpaca_to_prompt_completion(row: dict, chat: bool) -> dict:
    """Alpaca's instruction (+ input) + output as TRL's prompt + completion: as chat turns when the model has a
    chat template (so it learns in its own format), else in Alpaca's original prompt layout."""
    instruction, extra = row["instruction"], (row.get("input") or "").strip()
    if chat:
        user = f"{instruction}\n\n{extra}" if extra else instruction
        prompt = ([{"role": "system", "content": row["system"]}] if row.get("system") else [])
        return {"prompt": [*prompt, {"role": "user", "content": user}],
                "completion": [{"role": "assistant", "content": row["output"]}]}
    text = ALPACA_PROMPT.format(instruction=instruction, input=f"### Input:\n{extra}\n\n" if extra else "")
    return {"prompt": text, "completion": row["output"]}


def _text_or_turns(row: dict, columns: tuple[str, ...]) -> str | None:
    """The columns (those present) all strings or all lists of chat messages."""
    present = [c for c in columns if row.get(c) is not None]
    for col in present:
        value = row[col]
        problem = check_turns(value, col) if isinstance(value, list) else _strings(row, (col,), ("prompt",))
        if problem is not None:
            return problem
    if len({isinstance(row[c], list) for c in present}) > 1:
        shown = ", ".join(f'"{c}"' for c in present)
        return f"{shown} must all be strings or all be lists of messages"
    return None


def _check_preference(row: dict) -> str | None:
    """prompt + chosen + rejected, or chosen + rejected alone (the implicit prompt: TRL takes their common
    beginning as the prompt, as in Anthropic's HH-RLHF)."""
    for col in ("chosen", "rejected"):
        if row[col] is None:
            return f'"{col}" is missing'
    return _text_or_turns(row, ("prompt", "chosen", "rejected"))


def _check_unpaired(row: dict) -> str | None:
    if not isinstance(row["label"], bool):
        got = "null" if row["label"] is None else type(row["label"]).__name__
        return f'"label" must be true (a good answer) or false (a bad one), got {got}'
    return _check_prompt_completion(row)


def _check_prompt_only(row: dict) -> str | None:
    value = row["prompt"]
    if isinstance(value, list):
        return check_turns(value, "prompt")
    return _strings(row, ("prompt",))


# Tried in this order under `auto`: a format whose columns include another's comes first (prompt + completion
# + label is unpaired preference, not prompt/completion; prompt alone is prompt-only, last).
FORMATS = (
    Format("chat", "chat (messages)", needs=("messages",), keep=("messages", "tools"),
           trl_columns=("messages", "tools"), check=_check_chat, axolotl="chat_template"),
    Format("unpaired_preference", "unpaired preference (prompt, completion, label), for KTO",
           needs=("prompt", "completion", "label"), keep=("prompt", "completion", "label"),
           trl_columns=("prompt", "completion", "label"), check=_check_unpaired,
           axolotl={"field_prompt": "prompt", "field_completion": "completion", "field_label": "label"}),
    Format("preference", "preference (prompt, chosen, rejected), for DPO and ORPO", needs=("chosen", "rejected"),
           keep=("prompt", "chosen", "rejected"), trl_columns=("prompt", "chosen", "rejected"),
           check=_check_preference,
           axolotl={"field_prompt": "prompt", "field_chosen": "chosen", "field_rejected": "rejected"}),
    Format("prompt_completion", "prompt + completion", needs=("prompt", "completion"),
           keep=("prompt", "completion"), trl_columns=("prompt", "completion"), check=_check_prompt_completion,
           axolotl={"field_instruction": "prompt", "field_output": "completion", "format": "{instruction}",
                    "no_input_format": "{instruction}"}),
    Format("alpaca", "Alpaca (instruction, input, output)", needs=("instruction", "output"),
           keep=("instruction", "input", "output", "system"), trl_columns=("prompt", "completion"),
           check=_check_alpaca, axolotl="alpaca", convert=alpaca_to_prompt_completion),
    Format("text", "plain text", needs=("text",), keep=("text",), trl_columns=("text",),
           check=lambda row: _strings(row, ("text",)), axolotl="completion"),
    Format("prompt_only", "prompt only, for GRPO", needs=("prompt",), keep=("prompt",), trl_columns=("prompt",),
           check=_check_prompt_only, axolotl={"field_prompt": "prompt"}),
)
BY_NAME = {f.name: f for f in FORMATS}
NAMES = tuple(BY_NAME)
