"""Answers from a run's adapter and from its base model, for the same prompt, streamed as they grow.

One model serves both sides: the base model with the adapter attached (PeftModel). A comparison is one batch
of two rows, row 0 through the base weights alone and row 1 through the adapter (PEFT's mixed-adapter batch,
`adapter_names=["__base__", name]`), so both answers grow token by token together and the adapter costs no
second copy of the model. DoRA adapters cannot be mixed in a batch (PEFT refuses), so theirs run one after
the other, the base first (under `disable_adapter()`).

Greedy decoding by default (temperature 0), so an answer is reproducible; temperature > 0 samples, with top_p.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from finetune.adapter.source import AdapterSource
from finetune.errors import RunFileError
from finetune.runfile.validators import Int, Invalid, Num

if TYPE_CHECKING:
    from peft import PeftModel
    from transformers import PreTrainedTokenizerBase

BASE, ADAPTER = "base", "adapter"
LIMITS = {"max_new_tokens": Int(ge=1, le=2048), "temperature": Num(ge=0, le=5), "top_p": Num(gt=0, le=1)}


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
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from finetune.demo import resolve_model
    from finetune.model.loading import load_tokenizer, quantization_config, quiet_libraries, weights_dtype

    quiet_libraries()
    started = time.perf_counter()
    model_cfg = source.run.model
    # The tokenizer saved beside the adapter is the one the job trained with (pad token and all).
    if (source.adapter_dir / "tokenizer_config.json").is_file():
        tokenizer = AutoTokenizer.from_pretrained(source.adapter_dir)
    else:
        tokenizer = load_tokenizer(model_cfg)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    dtype = weights_dtype(model_cfg)
    quant = quantization_config(model_cfg, dtype)
    kwargs = {"device_map": {"": 0}} if quant is not None and device == "cuda" else {}
    try:
        base = AutoModelForCausalLM.from_pretrained(
            resolve_model(model_cfg.name_or_path), dtype=dtype, quantization_config=quant,
            revision=model_cfg.revision, trust_remote_code=model_cfg.trust_remote_code, **kwargs)
    except OSError as exc:   # offline, gone, gated: one line, not a traceback
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise RunFileError(f'model.name_or_path: "{model_cfg.name_or_path}": cannot load it: {first[:300]}') from None
    if quant is None:
        # transformers wraps PreTrainedModel.to in functools.wraps, which typeshed types as an unbound function
        base.to(device)  # type: ignore[arg-type]
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


def stream(loaded: Loaded, prompt: str, settings: GenSettings, compare: bool, on_text, stop_event=None) -> dict:
    """Generate, calling on_text(side, text_so_far, previous_text) as each answer grows; returns
    {"answers": {side: text}, "tokens": {side: n}, "seconds": s, "first_token_s": s}. `stop_event` (a
    threading.Event) ends the generation early when set."""
    import torch
    from transformers import StoppingCriteria, StoppingCriteriaList

    if not isinstance(prompt, str) or not prompt.strip():
        raise RunFileError("prompt: must be some text, got nothing")
    model, tokenizer = loaded.model, loaded.tokenizer
    ids = prompt_ids(tokenizer, prompt).to(loaded.device)
    first: dict[str, float] = {}   # "at": seconds to the first text
    started = time.perf_counter()

    def timed(side, text, before):
        first.setdefault("at", time.perf_counter() - started)
        on_text(side, text, before)

    class Stop(StoppingCriteria):
        def __call__(self, input_ids, scores, **kwargs):
            flag = bool(stop_event is not None and stop_event.is_set())
            return torch.full((input_ids.shape[0],), flag, dtype=torch.bool, device=input_ids.device)

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
        if not (stop_event is not None and stop_event.is_set()):
            run([ADAPTER], ids)
    return {"answers": answers, "tokens": tokens, "seconds": round(time.perf_counter() - started, 3),
            "first_token_s": round(first["at"], 3) if "at" in first else None}


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
