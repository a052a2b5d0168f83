"""What happens at each evaluation: the `samples` section (prompts the model answers as it trains) and the
rules early stopping needs from the rest of the run (training.early_stopping_patience lives in the training
section, beside eval_steps). The job side is finetune/train/watch.py and finetune/train/samples.py.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from finetune.runfile.validators import Int, Invalid, OrNull, show

MAX_PROMPTS = 8              # each is generated at every evaluation: time taken from training
MAX_PROMPT_CHARS = 2000
MAX_NEW_TOKENS = 512
DEFAULT_FROM_EVAL = 3        # prompts taken from the evaluation split when none are given
# What SFTTrainer's evaluation reports (eval_ prefixed): the metrics early stopping can watch.
EVAL_METRICS = ("loss", "mean_token_accuracy", "entropy")


def has_text(prompt) -> bool:
    """Whether a prompt is some text: a string with more than whitespace in it. The one rule for every
    prompt: samples.prompts here, and the Playground, /generate and `finetune generate` (adapter/generate.py's
    check_prompt)."""
    return isinstance(prompt, str) and bool(prompt.strip())


class Prompts:
    """A list of 0 to MAX_PROMPTS non-empty prompts of at most MAX_PROMPT_CHARS characters each."""

    def __call__(self, value):
        if not isinstance(value, list) or len(value) > MAX_PROMPTS:
            raise Invalid(f"must be a list of at most {MAX_PROMPTS} prompts, got {show(value)}")
        for i, prompt in enumerate(value):
            if not has_text(prompt):
                raise Invalid(f"prompt {i + 1} must be some text, got {show(prompt)}")
            if len(prompt) > MAX_PROMPT_CHARS:
                raise Invalid(f"prompt {i + 1} has {len(prompt):,} characters; at most {MAX_PROMPT_CHARS:,}")
        return [p.strip() for p in value]


def _setting(default, help: str, check):
    # schema.setting's shape, declared here to avoid a circular import (schema imports this module)
    if isinstance(default, list):
        return field(default_factory=list, metadata={"help": help, "check": check})
    return field(default=default, metadata={"help": help, "check": check})


@dataclass
class SamplesSection:
    """Prompts the model answers at every evaluation and at the end, written to samples.jsonl."""
    prompts: Any = _setting(None, f"Prompts answered (greedy) at every evaluation and at the end, up to "
                            f"{MAX_PROMPTS} of up to {MAX_PROMPT_CHARS:,} characters; a chat model gets each as "
                            f"a user turn. Default (null): the first {DEFAULT_FROM_EVAL} prompts of the "
                            f"evaluation split when there is one; [] for none.", OrNull(Prompts()))
    max_new_tokens: int = _setting(64, f"Tokens generated per answer, 1 to {MAX_NEW_TOKENS}.",
                                   Int(ge=1, le=MAX_NEW_TOKENS))


def evaluation_problems(run) -> list[str]:
    """Early stopping compares evaluations: it needs an evaluation split, evaluations, and a metric the
    evaluation reports (a name it does not report failed at the first evaluation, after the model loaded).
    Checked before anything loads, one line naming the field."""
    t, extra = run.training, run.training_extra
    metric = extra.get("metric_for_best_model")
    if metric is not None and metric.removeprefix("eval_") not in EVAL_METRICS:
        known = ", ".join(f'"{m}"' for m in EVAL_METRICS)
        return [f"training.metric_for_best_model: the evaluation reports {known}, got {show(metric)}"]
    if t.early_stopping_threshold is not None and t.early_stopping_patience is None:
        return ["training.early_stopping_threshold: only means something with training.early_stopping_patience, "
                "which is not set"]
    if t.early_stopping_patience is None:
        return []
    if not run.data.eval_size:
        return ["training.early_stopping_patience: needs an evaluation split to watch: set data.eval_size (a "
                "fraction such as 0.1, or a number of examples)"]
    if str(extra.get("eval_strategy", "steps")).lower() == "no":
        return ['training.early_stopping_patience: needs evaluations, but training.eval_strategy is "no"']
    return []
