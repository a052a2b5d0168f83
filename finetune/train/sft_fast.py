"""The job's SFT trainer: trl.SFTTrainer's training, with two costs taken out of each step.

1. Host reads. TRL's compute_loss reads five numbers back from the GPU at every micro-batch (whether any
   token counts, entropy, token accuracy, the batch's tokens), and transformers' NaN filter reads the loss
   once more. Each read makes the CPU wait for the GPU to finish, so it cannot queue the next kernels while
   the GPU works. Here the same numbers stay on the device until a logging step reads them all at once, and
   the NaN filter is decided on the device. The logged values are TRL's (tests/train/test_sft_fast.py
   compares them with trl.SFTTrainer's, step by step).
2. Padding: batches laid flat where that is exact and cheaper (train/batches.py).

Anything off the plain path (a compute_loss_func, label smoothing, a MoE auxiliary loss, sequence
parallelism, outputs asked for) goes through TRL's own compute_loss unchanged.
"""

from __future__ import annotations

from collections import defaultdict

import torch
from trl import SFTConfig, SFTTrainer

from finetune.train.batches import ChosenPadding, choose_padding

STEP_METRICS = ("entropy", "mean_token_accuracy")


class FastSFTTrainer(SFTTrainer):
    args: SFTConfig

    def __init__(self, *args, padding_free: bool | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.padding_note = choose_padding(self, padding_free)
        self.trained_batches = self.flat_batches = 0   # micro-batches trained, and how many of them lay flat
        self._pending: dict[str, dict[str, list[torch.Tensor]]] = {"train": defaultdict(list),
                                                                   "eval": defaultdict(list)}
        self._pending_tokens: torch.Tensor | None = None
        # transformers' filter would read the loss back at every step; training_step applies it on the device.
        self._filter_nonfinite = self.args.logging_nan_inf_filter
        self.args.logging_nan_inf_filter = False

    def _plain_loss(self) -> bool:
        """Whether TRL's compute_loss would take its plain path: the fused head's log-probs, nll or dft."""
        parallelism = getattr(self.accelerator, "parallelism_config", None)
        return (self.compute_loss_func is None and self.label_smoother is None and not self.aux_loss_enabled
                and self.args.loss_type in ("nll", "dft") and not getattr(parallelism, "sp_enabled", False))

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        if return_outputs or not self._plain_loss():
            return super().compute_loss(model, inputs, return_outputs=return_outputs,
                                        num_items_in_batch=num_items_in_batch)
        outputs = model(**{**inputs, "use_cache": False, "fused_lm_head": True})
        per_token_loss = -outputs.log_probs   # zero where no label
        if self.args.loss_type == "dft":
            per_token_loss = per_token_loss * outputs.log_probs.exp().detach()
        count = outputs.label_mask.sum() if num_items_in_batch is None else num_items_in_batch
        loss = per_token_loss.sum() / torch.as_tensor(count).clamp(min=1)
        if self.args.average_tokens_across_devices and num_items_in_batch is not None:
            loss = loss * (self.accelerator.num_processes // self.get_tp_size())   # DDP averages the gradients
        self._keep_metrics("train" if model.training else "eval", inputs, outputs)
        return loss

    def _keep_metrics(self, mode: str, inputs, outputs) -> None:
        """TRL's per-batch entropy and token accuracy (0 for a batch without labels) and the tokens trained,
        kept as device tensors until log()."""
        gather = self.accelerator.gather_for_metrics
        valid = gather(outputs.label_mask.sum()).sum()
        per_token = valid.clamp(min=1).float()
        for name, total in (("entropy", outputs.entropy.detach().sum()), ("mean_token_accuracy", outputs.is_top1.sum())):
            ratio = gather(total).sum().float() / per_token
            self._pending[mode][name].append(torch.where(valid > 0, ratio, torch.zeros_like(ratio)))
        if mode == "train":
            if "attention_mask" in inputs:
                tokens = inputs["attention_mask"].sum()
            else:   # a padding-free batch: one row, no mask
                tokens = torch.tensor(inputs["position_ids"].size(1), device=inputs["position_ids"].device)
            tokens = gather(tokens).sum() // self._tp_size
            self._pending_tokens = tokens if self._pending_tokens is None else self._pending_tokens + tokens

    def training_step(self, model, inputs, num_items_in_batch=None):
        self.trained_batches += 1
        self.flat_batches += "attention_mask" not in inputs   # TRL's padding-free batches carry no mask
        loss = super().training_step(model, inputs, num_items_in_batch)
        if not self._filter_nonfinite:
            return loss
        # transformers' own rule (Trainer._inner_training_loop): a NaN or inf step counts as the mean of the
        # steps since the last log.
        mean_so_far = self._tr_loss / (1 + self.state.global_step - self._globalstep_last_logged)
        return torch.where(torch.isfinite(loss), loss, mean_so_far)

    def batches_note(self) -> str | None:
        """The line for train.log after training: how many trained batches lay flat, where the job chose."""
        if not isinstance(self.data_collator, ChosenPadding) or not self.trained_batches:
            return None
        return f"batches: {self.flat_batches} of {self.trained_batches} padding-free"

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        """The kept numbers, read back in one go, become TRL's lists (one value each: their mean)."""
        mode = "train" if getattr(self.model, "training", False) else "eval"
        pending = self._pending[mode]
        names = [n for n in STEP_METRICS if pending.get(n)]
        values = [torch.stack(pending[n]).mean() for n in names]
        if self._pending_tokens is not None:
            values.append(self._pending_tokens.float())
        if values:
            device = values[0].device
            read = torch.stack([v.to(device) for v in values]).tolist()
            for name, value in zip(names, read, strict=False):
                self._metrics[mode][name] = [value]
            if self._pending_tokens is not None:
                self._total_train_tokens += int(read[-1])
                self._pending_tokens = None
            pending.clear()
        if self._metrics[mode]:   # TRL keeps num_tokens beside the metrics, in eval as the training total
            self._metrics[mode]["num_tokens"] = [self._total_train_tokens]
        super().log(logs, start_time)
