"""The job's SFT trainer (finetune/train/sft_fast.py) against trl.SFTTrainer on the demo: the same logs step by
step, padded or padding-free, and no host reads in a step but transformers' attention-mask checks."""

import collections
import traceback

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode
from transformers import TrainerCallback

from finetune.demo import DATA_FILE, MODEL_DIR

pytestmark = pytest.mark.slow
LOGGED = ("loss", "grad_norm", "entropy", "mean_token_accuracy", "num_tokens",
          "eval_loss", "eval_entropy", "eval_mean_token_accuracy", "eval_num_tokens")


def trainer(cls, steps: int = 6, callbacks=(), **extra):
    from datasets import load_dataset
    from peft import LoraConfig
    from transformers import AutoTokenizer
    from trl import SFTConfig

    data = load_dataset("json", data_files=str(DATA_FILE), split="train").train_test_split(test_size=16, seed=0)
    args = SFTConfig(output_dir="unused", max_steps=steps, per_device_train_batch_size=8, learning_rate=1e-3,
                     logging_steps=1, eval_strategy="steps", eval_steps=3, per_device_eval_batch_size=8,
                     save_strategy="no", max_length=128, use_cpu=True, report_to="none", disable_tqdm=True,
                     optim="adamw_torch_fused", seed=0, bf16=False)   # fp32, as the job on the CPU: exact sums
    return cls(model=str(MODEL_DIR), args=args, train_dataset=data["train"], eval_dataset=data["test"],
               peft_config=LoraConfig(r=8, lora_dropout=0.0, target_modules="all-linear", task_type="CAUSAL_LM"),
               processing_class=AutoTokenizer.from_pretrained(str(MODEL_DIR)), callbacks=list(callbacks), **extra)


def logs(t) -> list[dict]:
    t.train()
    return [{k: v for k, v in entry.items() if k in LOGGED} for entry in t.state.log_history
            if any(k in entry for k in LOGGED)]


def assert_same_logs(ours: list[dict], theirs: list[dict]) -> None:
    assert [sorted(e) for e in ours] == [sorted(e) for e in theirs]
    for mine, trl in zip(ours, theirs, strict=True):
        for key, value in trl.items():
            assert mine[key] == pytest.approx(value, rel=1e-5, abs=1e-6), key


@pytest.fixture(scope="module")
def trl_logs():
    from trl import SFTTrainer

    return logs(trainer(SFTTrainer))


def test_padded_batches_log_what_trl_logs(trl_logs):
    from finetune.train.sft_fast import FastSFTTrainer

    fast = trainer(FastSFTTrainer, padding_free=False)
    assert_same_logs(logs(fast), trl_logs)
    assert fast.batches_note() == "batches: 0 of 6 padding-free"


def test_padding_free_batches_train_the_same(trl_logs):
    """Flat batches on the demo's ragged data: the same losses, gradients and metrics as TRL's padded ones."""
    from finetune.train.sft_fast import FastSFTTrainer

    fast = trainer(FastSFTTrainer, padding_free=True)   # every batch flat, where the job chooses some
    assert_same_logs(logs(fast), trl_logs)
    # six trained, though the data loader collates one ahead and evaluation's batches pass the same collator
    assert fast.batches_note() == "batches: 6 of 6 padding-free"


class HostReads(TorchDispatchMode):
    """Every read of a tensor's value by the host (.item(), bool(), float()...: aten._local_scalar_dense, which
    on a GPU waits for it), counted by the file and line outside torch that asked."""

    def __init__(self):
        super().__init__()
        self.where: collections.Counter = collections.Counter()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func is torch.ops.aten._local_scalar_dense.default:
            caller = [f for f in traceback.extract_stack()[:-1] if "/torch/" not in f.filename][-1]
            self.where[f"{caller.filename.split('site-packages/')[-1]}:{caller.lineno}"] += 1
        return func(*args, **(kwargs or {}))


class StepWindow(TrainerCallback):
    """HostReads over each optimizer step: forward, loss, metrics, backward, clipping, the optimizer."""

    def __init__(self):
        self.reads = HostReads()

    def on_step_begin(self, args, state, control, **kwargs):
        self.reads.__enter__()

    def on_step_end(self, args, state, control, **kwargs):
        self.reads.__exit__(None, None, None)


def host_reads(cls, **extra) -> dict[str, int]:
    window = StepWindow()
    trainer(cls, steps=4, callbacks=[window], **extra).train()
    return dict(window.reads.where)


def test_a_step_reads_nothing_back_but_the_attention_mask_checks():
    """trl.SFTTrainer reads the metrics and the loss back at every step (the probe sees them); the job's
    trainer only leaves transformers' own check of each batch's mask (masking_utils), one per flat batch."""
    from trl import SFTTrainer

    from finetune.train.sft_fast import FastSFTTrainer

    theirs = host_reads(SFTTrainer)
    assert any(k.startswith("trl/") for k in theirs) and any(k.startswith("transformers/trainer.py") for k in theirs)
    ours = host_reads(FastSFTTrainer)
    assert ours and all(k.startswith("transformers/masking_utils.py") for k in ours), ours
    assert sum(ours.values()) < sum(theirs.values()) / 3


def test_a_nan_step_is_left_out_of_the_logged_loss_as_transformers_does():
    """transformers' logging_nan_inf_filter, applied on the device: the logged losses match TRL's with the
    same NaN step (its gradients are left intact: only the loss value is NaN)."""
    from trl import SFTTrainer

    from finetune.train.sft_fast import FastSFTTrainer

    def nan_at_step_2(cls):
        class WithNaN(cls):
            def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
                loss = super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
                return loss + float("nan") if self.model.training and self.state.global_step == 2 else loss
        return WithNaN

    theirs = logs(trainer(nan_at_step_2(SFTTrainer), steps=4))
    fast = trainer(nan_at_step_2(FastSFTTrainer), steps=4)
    assert not fast.args.logging_nan_inf_filter   # the filter moved onto the device
    ours = logs(fast)
    assert all(torch.isfinite(torch.tensor(e["loss"])) for e in ours if "loss" in e)
    assert_same_logs(ours, theirs)
