"""Training on several devices: the run file's side of it (no torch here).

`training.devices`, `training.strategy` and `training.zero_stage` say how many processes train and how they
share the model. They are not trl.SFTConfig keys: they decide how the job is launched (finetune.train.launch)
and which of accelerate's plugins the trainer gets (finetune.train.distributed), so LAUNCH_FIELDS lists them
for whoever maps the training section onto SFTConfig. The rules here need only the run file; what the
machine has (GPUs, cores, the deepspeed package) is checked by finetune.train.distributed.machine_problems.
The FSDP and DeepSpeed settings live here too, as plain data: the job gives them to the Trainer and the
accelerate export writes them in accelerate's names, so the two always say the same.
"""

from __future__ import annotations

from finetune.runfile.validators import Int, Invalid, show

LAUNCH_FIELDS = ("devices", "strategy", "zero_stage")
AUTO = "auto"
# SFTConfig keys the strategy sets itself: given by hand they would silently fight it.
STRATEGY_KEYS = {"fsdp": "fsdp", "deepspeed": "deepspeed"}


class Devices:
    """A whole number of devices >= 1, or `auto` (every free GPU)."""

    def __init__(self):
        self.count = Int(ge=1, le=1024)

    def __call__(self, value):
        if isinstance(value, str) and value.strip().lower() == AUTO:
            return AUTO
        try:
            return self.count(value)
        except Invalid:
            raise Invalid(f'must be a whole number >= 1 or "auto", got {show(value)}') from None


def wants_group(training) -> bool:
    """Whether the run file asks for more than one process (auto may still turn out to be one)."""
    return training.devices == AUTO or training.devices > 1


def strategy_problems(run) -> list[str]:
    """What a strategy cannot do with these settings, one line each, found before anything loads."""
    t, quant = run.training, run.model.quantization
    out = []
    if t.zero_stage != 2 and t.strategy != "deepspeed":
        out.append(f"training.zero_stage: only means something with training.strategy deepspeed, "
                   f"which is {show(t.strategy)}")
    if t.strategy != "ddp" and t.devices == 1:
        out.append(f"training.strategy: {show(t.strategy)} splits the model over several devices, but "
                   "training.devices is 1; set devices to 2 or more (or auto), or use ddp")
    if t.strategy == "deepspeed" and t.zero_stage == 3 and quant != "none":
        out.append(f"training.zero_stage: 3 partitions the base weights, which bitsandbytes' {quant} weights "
                   "cannot be (model.quantization); use zero_stage 2, or strategy fsdp with 4bit")
    if t.strategy == "fsdp" and quant == "8bit":
        out.append('training.strategy: "fsdp" cannot shard 8-bit weights (bitsandbytes keeps them as int8); '
                   "use model.quantization 4bit (QLoRA + FSDP) or strategy ddp")
    for key, strategy in STRATEGY_KEYS.items():
        if key in run.training_extra:
            out.append(f"training.{key}: set by training.strategy ({strategy}); remove it and use "
                       f"strategy: {strategy}")
    return out


def fsdp_config(run) -> dict:
    """FSDP2, each decoder layer its own shard unit (accelerate finds the class from the model's
    _no_split_modules; PEFT's layers are wrapped on their own so their gradients stay in full precision),
    and a full state dict at save so the adapter is saved whole."""
    return {"version": 2, "auto_wrap_policy": "TRANSFORMER_BASED_WRAP", "reshard_after_forward": True,
            "state_dict_type": "FULL_STATE_DICT", "cpu_ram_efficient_loading": True}


def deepspeed_config(stage: int) -> dict:
    """A DeepSpeed config for accelerate's DeepSpeedPlugin: "auto" lets the Trainer fill in the batch sizes,
    clipping and precision from the run file, so nothing is said twice."""
    zero = {"stage": stage, "overlap_comm": True, "contiguous_gradients": True, "reduce_bucket_size": "auto"}
    if stage == 3:
        zero.update(stage3_gather_16bit_weights_on_model_save=True, stage3_prefetch_bucket_size="auto",
                    stage3_param_persistence_threshold="auto")
    return {"zero_optimization": zero, "bf16": {"enabled": "auto"}, "fp16": {"enabled": "auto"},
            "gradient_accumulation_steps": "auto", "gradient_clipping": "auto", "train_batch_size": "auto",
            "train_micro_batch_size_per_gpu": "auto"}
