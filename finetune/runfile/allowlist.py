"""The further trl.SFTConfig keys a run file's `training` section may set, beyond the ones it declares.

An explicit allowlist, not "any SFTConfig field": on a Space, whoever may launch writes the run file, and
SFTConfig has keys that reach outside the run. `push_to_hub` + `hub_model_id` would upload with the
server's HF_TOKEN (which a job has only to read gated models), `report_to: wandb` sends metrics with
credentials found on the server (refused on a Space: finetune/runfile/reporters.py), `deepspeed` /
`fsdp_config` / `accelerator_config` / `chat_template_path` / `resume_from_checkpoint` read files the server holds, `model_init_kwargs` and
`trust_remote_code` change how the model loads behind the model section's checks. Every key below was
judged to act only on this run, inside its own folder; each has a check bounding its value (processes and
workers are capped: they are the server's memory; every whole number has an upper bound a real run can
use, so run.yaml holds it and /status can read it back). A key missing here that a user needs is a one-line
addition, with the check its value must pass. tests/security asserts that every key is a real SFTConfig
field of the installed TRL, so a rename shows up there, not in a user's job.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import Any

from finetune.runfile.reporters import ReportTo, installed
from finetune.runfile.validators import Choice, DictOf, Flag, Int, Invalid, Num, OrNull, Str, did_you_mean, show


def _scalar(v) -> bool:
    """A flag, a string, a finite float or an int a float holds exactly: what run.yaml writes and reads back
    the same (nan is not equal to itself, and a 22-digit int is over the parser's limit)."""
    if isinstance(v, float):
        return math.isfinite(v)
    if isinstance(v, int) and not isinstance(v, bool):
        return abs(v) <= 2**53
    return isinstance(v, (bool, str))


class _Scalars:
    """A small mapping of names to numbers, flags or short strings (keyword arguments for a scheduler)."""

    def __call__(self, value):
        if not isinstance(value, dict) or len(value) > 16 or not all(
                isinstance(k, str) and _scalar(v) for k, v in value.items()):
            raise Invalid(f"must be a mapping of up to 16 names to finite numbers, flags or strings, "
                          f"got {show(value)}")
        return value


class _Liger(Flag):
    """use_liger_kernel: true needs the liger-kernel package. Without it the flag passed every check and the
    job failed with a traceback at its first step, after the model had loaded."""

    def __call__(self, value):
        value = super().__call__(value)
        if value and not installed("liger_kernel"):
            raise Invalid("needs the liger-kernel package, which is not installed here (pip install liger-kernel "
                          "on a machine with a GPU: its kernels are Triton's)")
        return value


EVERY = Choice("no", "steps", "epoch")

# key -> its check: called with the value, returns it or raises Invalid
ALLOWED: dict[str, Callable[[Any], Any]] = {
    # optimizer and schedule
    "adam_beta1": Num(ge=0, lt=1), "adam_beta2": Num(ge=0, lt=1), "adam_epsilon": Num(gt=0),
    "optim_args": OrNull(Str()), "lr_scheduler_kwargs": _Scalars(), "label_smoothing_factor": Num(ge=0, lt=1),
    "neftune_noise_alpha": OrNull(Num(ge=0)), "router_aux_loss_coef": Num(ge=0),
    # what the loss is computed on, and how examples are batched (TRL)
    "assistant_only_loss": Flag(), "completion_only_loss": OrNull(Flag()), "padding_free": Flag(),
    "packing_strategy": Choice("bfd", "bfd_split", "wrapped"), "eval_packing": OrNull(Flag()),
    "pad_to_multiple_of": OrNull(Int(ge=1, le=4096)), "loss_type": Choice("nll", "dft"),
    "truncation_mode": Choice("keep_start", "keep_end"), "shuffle_dataset": Flag(),
    "dataset_num_proc": OrNull(Int(ge=1, le=8)), "eos_token": OrNull(Str(nonempty=True)),
    "pad_token": OrNull(Str(nonempty=True)),
    "train_sampling_strategy": Choice("random", "sequential", "group_by_length"),
    # precision and speed
    "bf16": OrNull(Flag()), "fp16": OrNull(Flag()), "tf32": OrNull(Flag()), "torch_compile": Flag(),
    "torch_compile_mode": OrNull(Choice("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")),
    "use_liger_kernel": _Liger(), "activation_offloading": Flag(), "auto_find_batch_size": Flag(),
    "torch_empty_cache_steps": OrNull(Int(ge=1, le=10_000_000)), "average_tokens_across_devices": Flag(),
    "gradient_checkpointing_kwargs": OrNull(DictOf(Flag())), "activation_checkpointing_kwargs": OrNull(DictOf(Flag())),
    # evaluation, logging, saving (all inside the run folder)
    "eval_strategy": EVERY, "per_device_eval_batch_size": Int(ge=1, le=65_536),
    "eval_accumulation_steps": OrNull(Int(ge=1, le=65_536)),
    "eval_on_start": Flag(), "eval_delay": Num(ge=0, le=10_000_000), "prediction_loss_only": Flag(),
    "logging_strategy": EVERY, "logging_first_step": Flag(), "logging_nan_inf_filter": Flag(),
    "save_strategy": Choice("no", "steps", "epoch", "best"), "save_only_model": Flag(),
    "load_best_model_at_end": Flag(), "metric_for_best_model": OrNull(Str(nonempty=True)),
    "greater_is_better": OrNull(Flag()), "run_name": OrNull(Str()), "report_to": OrNull(ReportTo()),
    "skip_memory_metrics": Flag(), "log_level": Choice("passive", "debug", "info", "warning", "error", "critical"),
    # data loading (workers are processes: capped)
    "dataloader_num_workers": Int(ge=0, le=16), "dataloader_drop_last": Flag(),
    "dataloader_persistent_workers": Flag(), "dataloader_prefetch_factor": OrNull(Int(ge=1, le=64)),
    "dataloader_pin_memory": Flag(), "remove_unused_columns": Flag(),
    # reproducibility and resuming
    "data_seed": OrNull(Int(ge=0, le=2**32 - 1)), "full_determinism": Flag(), "ignore_data_skip": Flag(),
    "restore_callback_states_from_checkpoint": Flag(),
    # several GPUs on one machine
    "ddp_find_unused_parameters": OrNull(Flag()), "ddp_bucket_cap_mb": OrNull(Int(ge=1, le=65_536)),
    "ddp_broadcast_buffers": OrNull(Flag()), "ddp_static_graph": OrNull(Flag()), "ddp_timeout": Int(ge=1, le=604_800),
}

_HUB = "a run never pushes to the Hub (the server's token is only for reading models)"
# SFTConfig keys refused with a reason: what they would do, and what to use instead.
REFUSED = {
    **dict.fromkeys(("push_to_hub", "hub_model_id", "hub_strategy", "hub_token", "hub_private_repo",
                     "hub_always_push", "hub_revision", "push_to_hub_model_id", "push_to_hub_token",
                     "push_to_hub_organization"), _HUB),
    **dict.fromkeys(("trackio_space_id", "trackio_static_space_id", "trackio_bucket_id", "project"),
                    "reports to a Hugging Face Space with the server's credentials"),
    "trust_remote_code": "set model.trust_remote_code instead (this server's policy decides whether it may)",
    "model_init_kwargs": "loads the model behind the model section's checks; use the model section",
    "dataset_kwargs": "changes how the data is read behind the data section's checks; use the data section",
    "chat_template_path": "reads a file or a Hub repository the server can reach",
    "logging_dir": "a path outside the run folder; logs go to the run folder",
    "resume_from_checkpoint": "reads a path the server holds; use --resume (or Resume), which goes on from "
                              "the run folder's last checkpoint",
    **dict.fromkeys(("deepspeed", "fsdp", "fsdp_config", "accelerator_config", "parallelism_config",
                     "liger_kernel_config", "dataloader_multiprocessing_context"),
                    "reads a configuration file the server holds or changes how processes are launched"),
    **dict.fromkeys(("use_cpu", "local_rank", "ddp_backend"), "chosen by the job for the machine it runs on"),
    "max_length": "set data.max_length", "packing": "set data.packing",
    "dataset_text_field": "the job gives TRL its own columns; set data.format",
    "disable_tqdm": "progress bars would fill train.log; the job prints one line per logging step",
}


def check_allowed(key: str, value) -> str | None:
    """"" to accept `value` for training.`key`, a message to refuse it, or None when nothing here knows
    the key (the caller then calls it unknown, with a did-you-mean hint)."""
    if key in ALLOWED:
        try:
            ALLOWED[key](value)
        except Invalid as exc:
            return str(exc)
        return ""
    if key in REFUSED:
        return f"not allowed in a run file: {REFUSED[key]}"
    if key.startswith(("hub_", "push_to_hub")):
        return f"not allowed in a run file: {_HUB}"
    return None


def check_training_extra(key: str, value, declared: Iterable[str] = ()):
    """A training key the section does not declare: accepted only if finetune.runfile.allowlist allows it,
    with a value that passes its check. Returns the value as the run keeps it (1e3 -> 1000) or raises Invalid
    saying why not; `declared`, the section's own keys (schema.py passes them), feed the did-you-mean hint.
    This list's rule, so it lives here: validators.py holds only generic checks and imports nothing back.
    Needs no TRL import (seconds, and in the app process under a flood of bad keys): a key neither declared
    nor listed is refused alike, whether TRL knows it or not."""
    verdict = check_allowed(key, value)
    if verdict == "":
        return ALLOWED[key](value)
    if verdict is not None:
        raise Invalid(verdict)
    hint = did_you_mean(key, [*declared, *ALLOWED])
    if hint:
        raise Invalid(f"unknown key{hint}")
    raise Invalid("unknown key, or a trl.SFTConfig key that run files may not set (see finetune/runfile/allowlist.py)")
