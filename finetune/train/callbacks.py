"""What a running job tells the outside world: RunCallback appends one record per logging step to
metrics.jsonl (the UI's loss curve), keeps status.json's step current, prints a short line per log to
train.log, and ends training cleanly, after a checkpoint, once finetune.train.stopping says a stop was asked for.
"""

from __future__ import annotations

import time

from transformers import TrainerCallback

from finetune.train.distributed import any_rank
from finetune.train.methods import METHODS, Method, kept
from finetune.train.runfolder import RunFolder
from finetune.train.stopping import Stopper

STATUS_EVERY_S = 1.0  # status.json is rewritten at most this often (and at every log): cheap, yet live


class RunCallback(TrainerCallback):
    def __init__(self, folder: RunFolder, stopper: Stopper, last_logged_step: int = 0, method: Method = METHODS["sft"]):
        self.folder = folder
        self.method = method    # which of TRL's logged numbers join the record, and which the log line shows
        self.stopper = stopper
        self.last_logged_step = last_logged_step  # on resume: records up to here already exist
        self.status_written = 0.0
        self.tokens_time = (0, time.time())  # (TRL's running token count, when it was read): tokens/s

    # With several ranks (finetune.train.distributed) every rank runs these hooks; rank 0 alone writes the
    # run folder and prints the curve, so each step is in metrics.jsonl once.

    def on_train_begin(self, args, state, control, **kwargs):
        self.tokens_time = (0, time.time())
        if not state.is_world_process_zero:
            return
        self.folder.write_status(step=state.global_step, max_steps=state.max_steps)
        print(f"training: {state.max_steps} steps, starting at step {state.global_step}", flush=True)

    def on_step_end(self, args, state, control, **kwargs):
        now = time.time()
        if state.is_world_process_zero and now - self.status_written >= STATUS_EVERY_S:
            self.folder.write_status(step=state.global_step, max_steps=state.max_steps)
            self.status_written = now
        # Every rank stops after the same step (one may see the signal a step before another).
        if any_rank(self.stopper.requested):
            control.should_save = True           # a checkpoint, for --resume
            control.should_training_stop = True  # and the loop ends after this step

    def on_evaluate(self, args, state, control, **kwargs):
        self._pause_clock()

    def on_save(self, args, state, control, **kwargs):
        self._pause_clock()

    def _pause_clock(self) -> None:
        """Evaluating and saving are not training: tokens/s is measured from after them."""
        self.tokens_time = (self.tokens_time[0], time.time())

    def on_log(self, args, state, control, logs=None, **kwargs):
        logs = logs or {}
        step = state.global_step
        if not state.is_world_process_zero:
            return
        if step <= self.last_logged_step and "eval_loss" not in logs:
            return  # already on the curve (written before the checkpoint this run resumed from)
        if "loss" in logs:
            record = {"step": step, "loss": logs["loss"], "learning_rate": logs.get("learning_rate"),
                      "grad_norm": logs.get("grad_norm"), "epoch": logs.get("epoch"),
                      "tokens_per_second": self._tokens_per_second(logs.get("num_tokens"))}
            if "mean_token_accuracy" in logs:
                record["token_accuracy"] = logs["mean_token_accuracy"]
            record.update(kept(self.method, logs))   # TRL's own names: rewards/margins, reward, kl...
            self.last_logged_step = step
            figures = "".join(f"  {label} {record[name]:.3f}" for name, label in
                              zip(self.method.shown, self.method.labels, strict=True) if name in record)
            print(f"step {step}/{state.max_steps}  loss {record['loss']:.4f}{figures}  lr "
                  f"{record['learning_rate'] or 0:.2e}  grad_norm {record['grad_norm'] or 0:.3f}  "
                  f"{record['tokens_per_second'] or 0:,.0f} tokens/s", flush=True)
        elif "eval_loss" in logs:
            # Every evaluated quantity: the loss, and whatever metric_for_best_model may name (eval_mean_token_accuracy);
            # not how long evaluating took.
            record = {"step": step, "epoch": logs.get("epoch"), **{k: v for k, v in logs.items()
                      if k.startswith("eval_") and not k.endswith(("_runtime", "_per_second"))
                      and isinstance(v, (int, float)) and not isinstance(v, bool)}}
            print(f"step {step}/{state.max_steps}  eval_loss {logs['eval_loss']:.4f}", flush=True)
        else:
            return  # the end-of-training summary: train.log has it from the Trainer, the curve does not need it
        self.folder.append_metrics(record)
        self.folder.write_status(step=step, max_steps=state.max_steps)
        self.status_written = time.time()

    def _tokens_per_second(self, num_tokens) -> float | None:
        """TRL counts the tokens of every rank (it gathers them), so this is the whole group's rate."""
        if num_tokens is None:
            return None
        last_tokens, last_time = self.tokens_time
        now = time.time()
        self.tokens_time = (num_tokens, now)
        return round((num_tokens - last_tokens) / max(now - last_time, 1e-6), 1)

