"""What the job's setup checked and computed (job.setup), handed to the method's trainer (methods.py) and the
training loop: its own module so that methods.py can name it without importing job.py, which imports methods.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from finetune.runfile import RunConfig

if TYPE_CHECKING:  # annotations only: the job imports the heavy libraries late, after the checks
    from transformers import PreTrainedTokenizerBase, TrainingArguments

    from finetune.data.formats import Examples
    from finetune.model.count import Count

@dataclass
class Plan:
    """Everything setup checked, kept so the job does not read or compute it twice."""
    run: RunConfig
    tokenizer: PreTrainedTokenizerBase
    examples: Examples
    args: TrainingArguments | None     # the method's TRL config, built last by setup() (trainer_args.py)
    checkpoint: str | None = None      # what --resume goes on from
    count: Count | None = None         # what PEFT must report at start
    notes: list[str] = field(default_factory=list)  # lines for train.log about choices made for the user
    rewards: list = field(default_factory=list)     # GRPO's reward callables (train/rewards.py)
