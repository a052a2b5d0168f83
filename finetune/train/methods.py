"""What differs between the ways of training (`method.name`), one small record each: TRL's config and trainer
classes, the metrics its log line shows, whether its config takes data.max_length (the config's arguments are
built by trainer_args.py), and the trainer built from them. Everything else (the LoRA, the run folder, callbacks,
cancel, resume, checkpoints, adapter/) is the same for every method and stays in job.py.

The reference model of DPO and KTO is the base model with the adapter turned off: TRL keeps ref_model None
when the model it trains is a PeftModel (it wraps the model with peft_config itself) and computes the
reference log-probs under `use_adapter(model, None)`. No second copy of the model is loaded.
ORPO and GRPO with beta 0 have no reference pass at all.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from finetune.train.plan import Plan

CUDA_ONLY_OPTIMIZERS = {"paged_adamw_32bit", "paged_adamw_8bit", "adamw_8bit", "adamw_bnb_8bit"}


@dataclass(frozen=True)
class Method:
    name: str
    config: str                    # "module:Class" of its TRL config
    trainer: str                   # "module:Class" of its TRL trainer
    shown: tuple[str, ...] = ()    # TRL's logged names shown beside the loss in train.log...
    labels: tuple[str, ...] = ()   # ...under these words
    logged: tuple[str, ...] = ()   # TRL's logged names (a trailing / takes the family) kept in metrics.jsonl
    max_length: bool = True        # whether the config takes data.max_length

    def load(self, which: str):
        module, name = getattr(self, which).split(":")
        return getattr(importlib.import_module(module), name)


PAIRS = ("rewards/", "logps/", "logits/")
METHODS = {
    "sft": Method("sft", "trl:SFTConfig", "trl:SFTTrainer"),
    "dpo": Method("dpo", "trl:DPOConfig", "trl:DPOTrainer", ("rewards/margins", "rewards/accuracies"),
                  ("margin", "accuracy"), PAIRS),
    "kto": Method("kto", "trl:KTOConfig", "trl:KTOTrainer", ("rewards/margins", "kl"), ("margin", "kl"),
                  (*PAIRS, "kl")),
    "orpo": Method("orpo", "trl.experimental.orpo:ORPOConfig", "trl.experimental.orpo:ORPOTrainer",
                   ("rewards/margins", "rewards/accuracies"), ("margin", "accuracy"),
                   (*PAIRS, "nll_loss", "log_odds_ratio", "log_odds_chosen")),
    "grpo": Method("grpo", "trl:GRPOConfig", "trl:GRPOTrainer", ("reward", "reward_std"), ("reward", "reward_std"),
                   ("reward", "reward_std", "rewards/", "kl", "completions/mean_length", "completions/clipped_ratio",
                    "frac_reward_zero_std", "entropy"), max_length=False),
}


def kept(method: Method, logs: dict) -> dict:
    """The method's own numbers from one Trainer log, under TRL's names."""
    def wanted(key: str) -> bool:
        return any(key.startswith(n) if n.endswith("/") else key == n for n in method.logged)

    return {k: v for k, v in logs.items() if wanted(k) and isinstance(v, (int, float)) and not isinstance(v, bool)}


def prompt_lengths(prompts: list, tokenizer) -> list[int]:
    """Each prompt's tokens as trl.GRPOTrainer tokenizes it: a conversation under the chat template with the
    assistant's turn opened, plain text with the tokenizer's special tokens."""
    prompts = list(prompts)   # a datasets Column reads as a list
    if prompts and isinstance(prompts[0], list):
        texts = [tokenizer.apply_chat_template(p, tokenize=False, add_generation_prompt=True) for p in prompts]
        return [len(ids) for ids in tokenizer(texts, add_special_tokens=False)["input_ids"]]
    return [len(ids) for ids in tokenizer(prompts)["input_ids"]]


def long_prompts(plan: Plan) -> list[str]:
    """GRPO's prompts checked against data.max_length. TRL 1.16's GRPOConfig has no max_prompt_length and
    GRPOTrainer generates from whole prompts, so the limit cannot be handed to TRL; the memory estimate takes it
    as GRPO's longest prompt (model/passes.py), so a longer one is refused here rather than silently exceeding
    it. Checked by the job's setup, before the model loads; every prompt is counted, as tokenizing
    one costs far less than the num_generations answers GRPO makes from it."""
    limit = plan.run.data.max_length
    lengths = [n for rows in (plan.examples.train, plan.examples.eval) if rows is not None
               for n in prompt_lengths(rows["prompt"], plan.tokenizer)]
    over = [n for n in lengths if n > limit]
    if not over:
        return []
    return [f"data.max_length: {len(over)} of {len(lengths)} prompts are longer than {limit} tokens (the longest "
            f"has {max(over)}), and GRPO generates from whole prompts (TRL does not truncate them): raise "
            f"data.max_length to {max(over)} or shorten those prompts"]


def build_trainer(plan: Plan, model, callbacks: list):
    """The method's TRL trainer on the base model, with the same LoRA (TRL wraps the model with peft_config)."""
    from finetune.model.loading import lora_config

    run = plan.run
    method = METHODS[run.method.name]
    kwargs = dict(model=model, args=plan.args, train_dataset=plan.examples.train, eval_dataset=plan.examples.eval,
                  processing_class=plan.tokenizer, peft_config=lora_config(run.lora), callbacks=callbacks)
    if method.name == "grpo":
        kwargs["reward_funcs"] = plan.rewards
    if method.name == "sft":   # TRL's SFT, without its per-step host reads and padding (train/sft_fast.py)
        from finetune.train.sft_fast import FastSFTTrainer

        return FastSFTTrainer(**kwargs, padding_free=None if run.data.packing
                              else run.training_extra.get("padding_free"))
    return method.load("trainer")(**kwargs)
