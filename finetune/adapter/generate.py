"""Answers from a run's adapter and from its base model, for the same prompt, streamed as they grow.

One model serves both sides: the base model with the adapter attached (PeftModel). A comparison is one batch
of two rows, row 0 through the base weights alone and row 1 through the adapter (PEFT's mixed-adapter batch,
`adapter_names=["__base__", name]`), so both answers grow token by token together and the adapter costs no
second copy of the model. DoRA adapters cannot be mixed in a batch (PEFT refuses), so theirs run one after
the other, the base first (under `disable_adapter()`).

Greedy decoding by default (temperature 0), so an answer is reproducible; temperature > 0 samples, with top_p.

What one call may cost is bounded before any work starts (check_prompt, then check_context once the prompt
is tokenized) and while it runs (a deadline, checked after every token): a 1 MB prompt once held the worker
at 100% CPU and 3 GB for more than 13 minutes, and every prompt after it waited.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from finetune.adapter.source import AdapterSource
from finetune.errors import RunFileError
from finetune.runfile.evaluation import has_text
from finetune.runfile.validators import Int, Invalid, Num

if TYPE_CHECKING:
    from peft import PeftModel
    from transformers import PreTrainedTokenizerBase

BASE, ADAPTER = "base", "adapter"
LIMITS = {"max_new_tokens": Int(ge=1, le=2048), "temperature": Num(ge=0, le=5), "top_p": Num(gt=0, le=1)}
# A playground prompt, not a document: about 12,000 tokens of English. Checked on the length alone, before
# tokenizing, which is itself the cost to bound: the demo's tokenizer took 1.3 s for 1 MB (600,000 tokens),
# 55 ms for 50,000 characters.
MAX_PROMPT_CHARS = 50_000
TIME_LIMIT_S = 60.0   # a generation stops after this long (the model's loading not counted), and says so
# Where transformers configs keep the longest sequence the model was built for (GPT-2: n_positions).
CONTEXT_KEYS = ("max_position_embeddings", "n_positions", "max_sequence_length", "seq_length")


@dataclass
class GenSettings:
    max_new_tokens: int = 128   # tokens each answer may add after the prompt
    temperature: float = 0.0    # 0: greedy (always the likeliest token); higher samples more freely
    top_p: float = 1.0          # when sampling, only from the likeliest tokens holding this much probability

    @classmethod
    def checked(cls, **raw) -> GenSettings:
        """Settings as users send them (text boxes, HTTP, flags); every bad value is one line naming it."""
        values, problems = {}, []
        for name, value in raw.items():
            if value is None:
                continue
            try:
                values[name] = LIMITS[name](value)
            except Invalid as exc:
                problems.append(f"{name}: {exc}")
        if problems:
            raise RunFileError(problems)
        return cls(**values)


@dataclass
class Loaded:
    """A base model with its adapter attached, ready to answer."""
    model: PeftModel    # in eval mode
    tokenizer: PreTrainedTokenizerBase
    source: AdapterSource
    device: str
    load_seconds: float = 0.0
    stop_ids: list[int] = field(default_factory=list)


def load(source: AdapterSource) -> Loaded:
    """The run's base model (quantized as it trained, on the GPU when there is one) with the adapter on it."""
    import torch
    from peft import PeftModel
    from transformers import AutoTokenizer

    from finetune.model.loading import load_base, load_tokenizer, quiet_libraries

    quiet_libraries()
    started = time.perf_counter()
    model_cfg = source.run.model
    # The tokenizer saved beside the adapter is the one the job trained with (pad token and all).
    if (source.adapter_dir / "tokenizer_config.json").is_file():
        tokenizer = AutoTokenizer.from_pretrained(source.adapter_dir)
    else:
        tokenizer = load_tokenizer(model_cfg)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    base = load_base(model_cfg)   # a quantized one is placed on the GPU as it loads
    if model_cfg.quantization == "none":
        base.to(device)
    if device == "cpu":
        # A small model's matrices are too small to split between threads: on 2 busy cores the demo model
        # took 140 ms a token with 2 threads and 28 ms with 1. About one thread per 25M parameters.
        params = sum(p.numel() for p in base.parameters())
        torch.set_num_threads(max(1, min(torch.get_num_threads(), params // 25_000_000)))
    model = PeftModel.from_pretrained(base, str(source.adapter_dir)).eval()
    loaded = Loaded(model, tokenizer, source, device, time.perf_counter() - started)
    loaded.stop_ids = stop_ids(model, tokenizer)
    return loaded


def stop_ids(model, tokenizer) -> list[int]:
    """Tokens that end an answer: the model's own end tokens (a chat model's end-of-turn among them) and the
    tokenizer's end-of-text."""
    ids = getattr(model.generation_config, "eos_token_id", None)
    ids = list(ids) if isinstance(ids, (list, tuple)) else [ids]
    ids.append(tokenizer.eos_token_id)
    return sorted({i for i in ids if isinstance(i, int)})


def check_prompt(prompt) -> str:
    """One prompt, as text, short enough to tokenize at once; else one line naming `prompt`."""
    if isinstance(prompt, (list, tuple)):
        raise RunFileError(f"prompt: one prompt per call, as text, got a list of {len(prompt)}")
    if prompt is None or (isinstance(prompt, str) and not has_text(prompt)):
        raise RunFileError("prompt: must be some text, got nothing")
    if not isinstance(prompt, str):
        raise RunFileError(f"prompt: must be text, got {type(prompt).__name__}")
    if len(prompt) > MAX_PROMPT_CHARS:
        raise RunFileError(f"prompt: {len(prompt):,} characters is more than a prompt may have "
                           f"({MAX_PROMPT_CHARS:,})")
    return prompt


def context_length(model) -> int | None:
    """The longest sequence (prompt + answer) the model was built for, from its config; None if it says not."""
    config = model.config
    config = config.get_text_config() if hasattr(config, "get_text_config") else config
    for key in CONTEXT_KEYS:
        value = getattr(config, key, None)
        if isinstance(value, int) and value > 0:
            return value
    return None


def check_context(prompt_tokens: int, max_new_tokens: int, context: int | None) -> None:
    """Prompt + answer must fit the model's context: past it a model without a hard limit (RoPE) goes on at
    a quadratic cost in time and memory, and answers nonsense. One line naming the field to change."""
    if context is None or prompt_tokens + max_new_tokens <= context:
        return
    where = f"the model's context of {context:,} tokens (max_position_embeddings)"
    if prompt_tokens >= context:
        raise RunFileError(f"prompt: {prompt_tokens:,} tokens do not fit {where}")
    raise RunFileError(f"max_new_tokens: {max_new_tokens:,} more tokens do not fit {where} after the prompt's "
                       f"{prompt_tokens:,}; at most {context - prompt_tokens:,}")


def prompt_ids(tokenizer, prompt: str):
    """The prompt as the model expects it: one user turn of the chat template when the tokenizer has one (with
    the assistant's turn opened), the plain text otherwise. Shape [1, length]."""
    if getattr(tokenizer, "chat_template", None):
        out = tokenizer.apply_chat_template([{"role": "user", "content": prompt}], add_generation_prompt=True,
                                            return_dict=True, return_tensors="pt")
        return out["input_ids"]
    return tokenizer(prompt, return_tensors="pt")["input_ids"]


class _Rows:
    """A generation streamer for a batch: decodes each row as it grows and reports what each side gained.
    transformers calls put() once with the prompt, then once per step with the new token of every row."""

    def __init__(self, tokenizer, sides: list[str], stop: list[int], on_text):
        self.tokenizer, self.sides, self.stop, self.on_text = tokenizer, sides, set(stop), on_text
        self.tokens: list[list[int]] = [[] for _ in sides]
        self.text = ["" for _ in sides]
        self.done = [False for _ in sides]
        self.prompt_seen = False

    def put(self, value) -> None:
        if not self.prompt_seen:
            self.prompt_seen = True
            return
        for row, token in enumerate(value.reshape(-1).tolist()):
            if self.done[row]:
                continue
            if token in self.stop:
                self.done[row] = True
                continue
            self.tokens[row].append(token)
            text = self.tokenizer.decode(self.tokens[row], skip_special_tokens=True)
            if text.endswith("\ufffd"):   # half of a multi-byte character: wait for the rest
                continue
            before, self.text[row] = self.text[row], text
            if text != before:
                self.on_text(self.sides[row], text, before)

    def end(self) -> None:
        pass

    def counts(self) -> dict:
        return {side: len(tokens) for side, tokens in zip(self.sides, self.tokens, strict=True)}


def stream(loaded: Loaded, prompt: str, settings: GenSettings, compare: bool, on_text, stop_event=None,
           time_limit: float | None = None) -> dict:
    """Generate, calling on_text(side, text_so_far, previous_text) as each answer grows; returns
    {"answers": {side: text}, "tokens": {side: n}, "seconds": s, "first_token_s": s, "stopped": why}.
    `stop_event` (a threading.Event) ends the generation early when set; `time_limit` (seconds from now)
    ends it at that time. Either way what it has said is its answer, and "stopped" says which ("stop" or
    "time limit"; None when the answers ended by themselves)."""
    import torch
    from transformers import StoppingCriteria, StoppingCriteriaList

    model, tokenizer = loaded.model, loaded.tokenizer
    ids = prompt_ids(tokenizer, check_prompt(prompt))
    check_context(ids.shape[1], settings.max_new_tokens, context_length(model))
    ids = ids.to(loaded.device)
    first: dict[str, float] = {}   # "at": seconds to the first text
    started = time.perf_counter()
    deadline = None if time_limit is None else time.monotonic() + time_limit
    stopped: list[str] = []        # why it ended early, once known

    def timed(side, text, before):
        first.setdefault("at", time.perf_counter() - started)
        on_text(side, text, before)

    def ended() -> bool:
        if not stopped and stop_event is not None and stop_event.is_set():
            stopped.append("stop")
        if not stopped and deadline is not None and time.monotonic() >= deadline:
            stopped.append("time limit")
        return bool(stopped)

    class Stop(StoppingCriteria):
        """Asked after every token: one token is as late as a stop or a deadline is noticed."""

        def __call__(self, input_ids, scores, **kwargs):
            return torch.full((input_ids.shape[0],), ended(), dtype=torch.bool, device=input_ids.device)

    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else loaded.stop_ids[0]
    options = dict(max_new_tokens=settings.max_new_tokens, eos_token_id=loaded.stop_ids, pad_token_id=pad,
                   stopping_criteria=StoppingCriteriaList([Stop()]))
    if settings.temperature > 0:
        options.update(do_sample=True, temperature=settings.temperature, top_p=settings.top_p, top_k=0)
    else:
        options.update(do_sample=False, temperature=None, top_p=None, top_k=None)

    answers: dict[str, str] = {}
    tokens: dict[str, int] = {}

    def run(sides: list[str], batch, **extra) -> None:
        rows = _Rows(tokenizer, sides, loaded.stop_ids, timed)
        with torch.inference_mode():
            model.generate(input_ids=batch, attention_mask=torch.ones_like(batch), streamer=rows, **options, **extra)
        answers.update(zip(sides, rows.text, strict=True))
        tokens.update(rows.counts())

    name = model.active_adapter
    dora = bool(getattr(model.peft_config[name], "use_dora", False))
    if not compare:
        run([ADAPTER], ids)
    elif not dora:
        run([BASE, ADAPTER], ids.repeat(2, 1), adapter_names=["__base__", name])
    else:
        with model.disable_adapter():
            run([BASE], ids)
        if not ended():
            run([ADAPTER], ids)
        else:
            answers[ADAPTER], tokens[ADAPTER] = "", 0
    return {"answers": answers, "tokens": tokens, "seconds": round(time.perf_counter() - started, 3),
            "first_token_s": round(first["at"], 3) if "at" in first else None,
            "stopped": stopped[0] if stopped else None}


def answer(loaded: Loaded, prompt: str, settings: GenSettings, compare: bool = False) -> dict:
    """{"adapter": text} (and "base" with compare), without streaming: what the CLI and the API return."""
    return stream(loaded, prompt, settings, compare, lambda *a: None)["answers"]


def run_in_thread(target, *args) -> tuple[threading.Thread, dict]:
    """Run target(*args) in a thread; the returned dict gets "result" or "error" when it ends."""
    box: dict = {}

    def body():
        try:
            box["result"] = target(*args)
        except BaseException as exc:  # handed to the caller, who reports it
            box["error"] = exc

    thread = threading.Thread(target=body, name="generate", daemon=True)
    thread.start()
    return thread, box
