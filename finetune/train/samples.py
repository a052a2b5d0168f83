"""The samples: prompts the model answers at every evaluation and at the end of training, so a run shows
what it has learned, not only a loss. Answers are greedy (the same prompt answers the same at the same
weights), generated in eval mode by the model the trainer holds, and appended to samples.jsonl
(runfolder.RunFolder.read_samples reads it back).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from transformers import TrainerCallback

from finetune.runfile import RunConfig
from finetune.runfile.evaluation import DEFAULT_FROM_EVAL, MAX_PROMPT_CHARS
from finetune.train.runfolder import RunFolder


@dataclass
class Prompt:
    shown: str                        # what samples.jsonl and the page show
    messages: list | None = None      # a conversation, formatted by the chat template
    text: str | None = None           # plain text, given to the model as it is


def prompts_for(run: RunConfig, examples, tokenizer) -> list[Prompt]:
    """The run's samples.prompts (each a user turn when the tokenizer has a chat template, else plain text),
    or by default the first prompts of the evaluation split, in the shape the model trained on."""
    given = run.samples.prompts
    if given is not None:
        chat = bool(getattr(tokenizer, "chat_template", None))
        return [Prompt(p, messages=[{"role": "user", "content": p}]) if chat else Prompt(p, text=p) for p in given]
    if examples.eval is None:
        return []
    out: list[Prompt] = []
    for row in examples.eval.select(range(min(len(examples.eval), 4 * DEFAULT_FROM_EVAL))):
        prompt = from_example(row)
        if prompt is not None and len(prompt.shown) <= MAX_PROMPT_CHARS:
            out.append(prompt)
        if len(out) == DEFAULT_FROM_EVAL:
            break
    return out


def from_example(row: dict) -> Prompt | None:
    """The prompt of one example in TRL's shapes: a conversation up to its last user turn, or the prompt of
    prompt/completion data. Plain text has no prompt to take (None)."""
    if isinstance(row.get("messages"), list):
        turns = row["messages"]
        last_user = max((i for i, m in enumerate(turns) if m.get("role") == "user"), default=None)
        if last_user is None:
            return None
        return Prompt(str(turns[last_user].get("content", "")), messages=turns[:last_user + 1])
    prompt = row.get("prompt")
    if isinstance(prompt, list) and prompt:   # conversational prompt/completion
        return Prompt(str(prompt[-1].get("content", "")), messages=prompt)
    if isinstance(prompt, str) and prompt.strip():
        return Prompt(prompt, text=prompt)
    return None


class SamplesCallback(TrainerCallback):
    """Answers the prompts after each evaluation and at the end. Put before RunCallback: its clock pause
    (on_evaluate) then comes after the answers, so they do not count against tokens/s."""

    def __init__(self, folder: RunFolder, tokenizer, prompts: list[Prompt], max_new_tokens: int,
                 max_prompt_tokens: int):
        self.folder, self.tokenizer, self.prompts = folder, tokenizer, prompts
        self.max_new_tokens, self.max_prompt_tokens = max_new_tokens, max_prompt_tokens
        self.last_step: int | None = None

    def on_evaluate(self, args, state, control, model=None, **kwargs):
        if state.is_world_process_zero and model is not None:
            self.answer_all(model, state.global_step)

    def on_train_end(self, args, state, control, model=None, **kwargs):
        # With the best checkpoint loaded, the weights are ones already answered with at its evaluation.
        best_loaded = args.load_best_model_at_end and state.best_model_checkpoint is not None
        if state.is_world_process_zero and model is not None and not best_loaded \
                and self.last_step != state.global_step:
            self.answer_all(model, state.global_step)

    def answer_all(self, model, step: int) -> None:
        import torch

        was_training = model.training
        model.eval()
        try:
            with torch.no_grad():
                for prompt in self.prompts:
                    started = time.perf_counter()
                    answer = self.answer(model, prompt)
                    self.folder.append_sample({"step": step, "prompt": prompt.shown, "answer": answer,
                                               "seconds": round(time.perf_counter() - started, 3)})
        finally:
            model.train(was_training)
        self.last_step = step

    def answer(self, model, prompt: Prompt) -> str:
        tok = self.tokenizer
        if prompt.messages is not None:
            ids = tok.apply_chat_template(prompt.messages, add_generation_prompt=True, return_dict=True,
                                          return_tensors="pt")["input_ids"]
        else:
            ids = tok(prompt.text, return_tensors="pt")["input_ids"]
        ids = ids[:, -self.max_prompt_tokens:].to(model.device)   # data.max_length bounds what it trained on
        pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
        out = model.generate(input_ids=ids, attention_mask=ids.new_ones(ids.shape), max_new_tokens=self.max_new_tokens,
                             do_sample=False, pad_token_id=pad)
        return tok.decode(out[0, ids.shape[1]:], skip_special_tokens=True).strip()
