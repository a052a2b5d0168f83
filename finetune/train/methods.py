"""What differs between the ways of training (`method.name`), one small record each: TRL's config and trainer
classes, the metrics its log line shows, and the settings it passes. Everything else (the LoRA, the run folder,
callbacks, cancel, resume, checkpoints, adapter/) is the same for every method and stays in job.py.

The reference model of DPO and KTO is the base model with the adapter turned off: TRL keeps ref_model None
when the model it trains is a PeftModel (it wraps the model with peft_config itself) and computes the
reference log-probs under `use_adapter(model, None)`. No second copy of the model is loaded.
ORPO and GRPO with beta 0 have no reference pass at all.
"""

from __future__ import annotations

import dataclasses
import importlib
from dataclasses import dataclass
from typing import TYPE_CHECKING

from finetune.errors import RunFileError
from finetune.train import distributed, watch

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


def method_args(plan: Plan) -> dict:
    """The method's own config keyword arguments (method.* settings under TRL's names)."""
    run, m = plan.run, plan.run.method
    kwargs: dict = {"max_length": run.data.max_length} if METHODS[m.name].max_length else {}
    if m.name == "sft":
        kwargs["packing"] = run.data.packing
    settings = {k: getattr(m, k) for k in ("beta", "loss_type", "desirable_weight", "undesirable_weight",
                                           "num_generations", "max_completion_length", "temperature", "top_p")}
    from finetune.runfile.method import DEFAULTS

    kwargs.update({k: v for k, v in settings.items() if k in DEFAULTS[m.name] and v is not None})
    if m.name == "grpo":
        kwargs["reward_weights"] = [float(r["weight"]) for r in m.rewards]
    return kwargs


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
    it. Checked as the trainer is built, before any answer is generated; every prompt is counted, as tokenizing
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


def trainer_config(plan: Plan):
    """The run file mapped onto the method's TRL config; training_extra (further keys) goes last and wins."""
    import torch

    from finetune.model.loading import weights_dtype

    run, t = plan.run, plan.run.training
    method = METHODS[run.method.name]
    config_class = method.load("config")
    cuda = torch.cuda.is_available()
    optim = t.optim
    if optim in CUDA_ONLY_OPTIMIZERS and not cuda:
        plan.notes.append(f'optimizer: "{optim}" needs CUDA; using "adamw_torch" on the CPU')
        optim = "adamw_torch"
    dtype = weights_dtype(run.model)
    has_eval = plan.examples.eval is not None
    kwargs = dict(
        output_dir=t.output_dir, learning_rate=t.learning_rate, num_train_epochs=t.num_train_epochs,
        max_steps=t.max_steps, per_device_train_batch_size=t.per_device_train_batch_size,
        per_device_eval_batch_size=t.per_device_train_batch_size,
        gradient_accumulation_steps=t.gradient_accumulation_steps, lr_scheduler_type=t.lr_scheduler_type,
        warmup_steps=t.warmup_steps, weight_decay=t.weight_decay, max_grad_norm=t.max_grad_norm, optim=optim,
        gradient_checkpointing=t.gradient_checkpointing, logging_steps=t.logging_steps, logging_first_step=True,
        save_strategy="steps", save_steps=t.save_steps, save_total_limit=t.save_total_limit, seed=t.seed,
        eval_strategy="steps" if has_eval else "no", eval_steps=(t.eval_steps or t.logging_steps * 10),
        # TRL's configs would default to bf16 everywhere; mixed precision follows the weights' dtype instead.
        bf16=dtype == torch.bfloat16, fp16=dtype == torch.float16, use_cpu=not cuda,
        dataloader_pin_memory=cuda, report_to="none", disable_tqdm=True, save_only_model=False,
    )
    kwargs.update(method_args(plan))
    # transformers 5.2x renamed gradient_checkpointing to activation_checkpointing (the old name still works,
    # with a deprecation warning): use whichever this version has.
    fields = {f.name for f in dataclasses.fields(config_class)}
    checkpointing = "activation_checkpointing" if "activation_checkpointing" in fields else "gradient_checkpointing"
    kwargs[checkpointing] = kwargs.pop("gradient_checkpointing")
    if t.gradient_checkpointing:
        kwargs[f"{checkpointing}_kwargs"] = {"use_reentrant": False}
    kwargs.update(distributed.trainer_args(run, distributed.world_size(), cuda))  # ddp/fsdp/deepspeed
    # The run file's further training keys are SFTConfig's (runfile/allowlist.py): another method's config
    # may lack one (assistant_only_loss, dataset_text_field...), said here rather than as TRL's TypeError.
    if foreign := [k for k in run.training_extra if k not in fields]:
        raise RunFileError([f"training.{k}: not a setting of {config_class.__name__}, which method "
                            f"{run.method.name} trains with" for k in foreign])
    kwargs.update(run.training_extra)
    plan.notes += watch.trainer_args(run, kwargs, has_eval)   # early stopping and trackers; the user's keys kept
    try:
        return config_class(**kwargs)
    except (ValueError, TypeError) as exc:  # a combination TRL or TrainingArguments refuses, in its own words
        raise RunFileError(f"{_field_of(str(exc), run.method.name)}: {str(exc).strip().splitlines()[0]}") from None


def _field_of(message: str, method: str) -> str:
    """The run-file field a refusal is about, where its words name one of the method's settings."""
    for key in ("num_generations", "max_completion_length", "beta", "loss_type"):
        if key in message and method != "sft":
            return f"method.{key}"
    return "training"


def build_trainer(plan: Plan, model, callbacks: list):
    """The method's TRL trainer on the base model, with the same LoRA (TRL wraps the model with peft_config)."""
    from finetune.model.loading import lora_config

    run = plan.run
    method = METHODS[run.method.name]
    if method.name == "grpo" and (problems := long_prompts(plan)):
        raise RunFileError(problems)
    kwargs = dict(model=model, args=plan.args, train_dataset=plan.examples.train, eval_dataset=plan.examples.eval,
                  processing_class=plan.tokenizer, peft_config=lora_config(run.lora), callbacks=callbacks)
    if method.name == "grpo":
        kwargs["reward_funcs"] = plan.rewards
    return method.load("trainer")(**kwargs)
