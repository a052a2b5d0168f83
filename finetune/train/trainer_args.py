"""The keyword arguments of the method's TRL config (SFTConfig, DPOConfig...) for one run on one device, built
in one place: the job passes them to the config class (`trainer_config`), and `finetune export --to peft`
writes them into its script (export_peft.py), so what the export says is what the job runs.

The device is a parameter (model/dtypes.py's Device), never asked here: the job passes this machine's, an
export may be written for another (a T4 has no bfloat16, so its run is fp16).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from finetune.errors import RunFileError
from finetune.model.dtypes import Device, resolve_dtype, this_device
from finetune.runfile import RunConfig
from finetune.runfile.method import DEFAULTS
from finetune.train import distributed, watch
from finetune.train.methods import CUDA_ONLY_OPTIMIZERS, METHODS

if TYPE_CHECKING:
    from finetune.train.plan import Plan

# Method settings under TRL's names; each method's config takes those in its DEFAULTS (runfile/method.py).
METHOD_SETTINGS = ("beta", "loss_type", "desirable_weight", "undesirable_weight", "num_generations",
                   "max_completion_length", "temperature", "top_p")


@dataclass
class ConfigArgs:
    """The config class (\"module:Class\") and its keyword arguments; notes are lines for train.log (the
    export writes them as comments) about choices made for the user."""
    config: str
    kwargs: dict
    notes: list[str] = field(default_factory=list)


def method_kwargs(run: RunConfig) -> dict:
    """The method's own config keywords: data.max_length where its config takes it (the method's record in
    train/methods.py says), SFT's packing, the method.* settings, GRPO's reward weights."""
    m = run.method
    kwargs: dict = {"max_length": run.data.max_length} if METHODS[m.name].max_length else {}
    if m.name == "sft":
        kwargs["packing"] = run.data.packing
    kwargs.update({k: getattr(m, k) for k in METHOD_SETTINGS if k in DEFAULTS[m.name] and getattr(m, k) is not None})
    if m.name == "grpo":
        kwargs["reward_weights"] = [float(r["weight"]) for r in m.rewards]
    return kwargs


def config_args(run: RunConfig, device: Device, world_size: int = 1) -> ConfigArgs:
    """The run file mapped onto the method's TRL config for `device` and `world_size` processes; the run
    file's further training keys (training_extra) go last and win. Raises RunFileError for a further key the
    method's config does not have."""
    t, method = run.training, METHODS[run.method.name]
    notes: list[str] = []
    optim = t.optim
    if optim in CUDA_ONLY_OPTIMIZERS and not device.cuda:
        notes.append(f'optimizer: "{optim}" needs CUDA; using "adamw_torch" on the CPU')
        optim = "adamw_torch"
    dtype = resolve_dtype(run.model.dtype, device)
    # data.eval_size > 0 always takes at least one example off for evaluation (data/formats.py eval_count).
    has_eval = bool(run.data.eval_size)
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
        bf16=dtype == "bfloat16", fp16=dtype == "float16", use_cpu=not device.cuda,
        dataloader_pin_memory=device.cuda, report_to="none", disable_tqdm=True, save_only_model=False,
    )
    kwargs.update(method_kwargs(run))
    # transformers 5.2x renamed gradient_checkpointing to activation_checkpointing (the old name still works,
    # with a deprecation warning): use whichever this version has.
    fields = {f.name for f in dataclasses.fields(method.load("config"))}
    checkpointing = "activation_checkpointing" if "activation_checkpointing" in fields else "gradient_checkpointing"
    kwargs[checkpointing] = kwargs.pop("gradient_checkpointing")
    if t.gradient_checkpointing:
        kwargs[f"{checkpointing}_kwargs"] = {"use_reentrant": False}
    kwargs.update(distributed.trainer_args(run, world_size, device.cuda))  # ddp/fsdp/deepspeed
    # The run file's further training keys are SFTConfig's (runfile/allowlist.py): another method's config
    # may lack one (assistant_only_loss, dataset_text_field...), said here rather than as TRL's TypeError.
    if foreign := [k for k in run.training_extra if k not in fields]:
        raise RunFileError([f"training.{k}: not a setting of {method.config.split(':')[1]}, which method "
                            f"{run.method.name} trains with" for k in foreign])
    kwargs.update(run.training_extra)
    if run.method.name == "sft" and not run.data.packing and kwargs.pop("padding_free", None) is not None:
        # TRL's own refuses data.max_length without packing; the job lays batches flat itself (train/batches.py).
        notes.append("batches: training.padding_free is left out of SFTConfig (TRL refuses it with max_length "
                     "unless packing); the job lays batches flat itself (train/batches.py)")
    notes += watch.trainer_args(run, kwargs, has_eval)   # early stopping and trackers; the user's keys kept
    return ConfigArgs(method.config, kwargs, notes)


def trainer_config(plan: Plan):
    """The job's config object: config_args for this machine and this job's processes, built by TRL."""
    run = plan.run
    built = config_args(run, this_device(), distributed.world_size())
    plan.notes += built.notes
    try:
        return METHODS[run.method.name].load("config")(**built.kwargs)
    except (ValueError, TypeError) as exc:  # a combination TRL or TrainingArguments refuses, in its own words
        raise RunFileError(f"{_field_of(str(exc), run.method.name)}: {str(exc).strip().splitlines()[0]}") from None


def _field_of(message: str, method: str) -> str:
    """The run-file field a refusal is about, where its words name one of the method's settings."""
    for key in ("num_generations", "max_completion_length", "beta", "loss_type"):
        if key in message and method != "sft":
            return f"method.{key}"
    return "training"
