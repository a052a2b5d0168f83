"""How each run-file field is written in an Axolotl config: the one table that the Axolotl export (and the
import back) read. Every field of every section is in exactly one of the three tables below; a test checks
it, so a new field is either exported or says why not.
"""

from __future__ import annotations

# Fields Axolotl has under another name, value unchanged.
RENAMED = {
    "lora.r": "lora_r", "lora.lora_alpha": "lora_alpha", "lora.lora_dropout": "lora_dropout",
    "lora.modules_to_save": "lora_modules_to_save", "lora.layers_to_transform": "peft_layers_to_transform",
    "lora.use_dora": "peft_use_dora", "lora.use_rslora": "peft_use_rslora",
    "lora.fan_in_fan_out": "lora_fan_in_fan_out",
    "model.revision": "revision_of_model", "model.trust_remote_code": "trust_remote_code",
    "data.eval_size": "val_set_size", "data.max_length": "sequence_len", "data.packing": "sample_packing",
    "training.output_dir": "output_dir", "training.learning_rate": "learning_rate",
    "training.num_train_epochs": "num_epochs", "training.per_device_train_batch_size": "micro_batch_size",
    "training.gradient_accumulation_steps": "gradient_accumulation_steps",
    "training.lr_scheduler_type": "lr_scheduler", "training.warmup_steps": "warmup_steps",
    "training.weight_decay": "weight_decay", "training.max_grad_norm": "max_grad_norm",
    "training.optim": "optimizer", "training.gradient_checkpointing": "gradient_checkpointing",
    "training.logging_steps": "logging_steps", "training.save_steps": "save_steps",
    "training.save_total_limit": "save_total_limit", "training.eval_steps": "eval_steps", "training.seed": "seed",
    "training.max_steps": "max_steps", "training.early_stopping_patience": "early_stopping_patience",
    "hub.repo_id": "hub_model_id",   # both push the result there when training ends
    "method.desirable_weight": "kto_desirable_weight", "method.undesirable_weight": "kto_undesirable_weight",
}

# Fields whose Axolotl form is not one key: written by code in export.to_axolotl.
COMPOSED = {
    "model.name_or_path": "base_model",
    "model.quantization": "adapter (lora | qlora) with load_in_4bit / load_in_8bit",
    "lora.target_modules": "lora_target_linear: true, or lora_target_modules",
    "data.path": "datasets[0].path (and ds_type for JSON files)",
    "data.format": "datasets[0].type (ORPO_TYPE for orpo; left out for grpo)",
    "data.name": "datasets[0].name",
    "data.split": "datasets[0].split",
    "training.strategy": "deepspeed: deepspeed_configs/zero{N}.json, or fsdp_version: 2 with fsdp_config "
                         "(left out for ddp)",
    "training.zero_stage": "the N of deepspeed_configs/zero{N}.json (strategy deepspeed)",
    "method.name": "rl: dpo | kto | orpo | grpo (left out for sft)",
    "method.beta": "rl_beta (dpo, kto, orpo), trl.beta (grpo)",
    "method.num_generations": "trl.num_generations",
    "method.max_completion_length": "trl.max_completion_length (grpo)",
    "method.temperature": "trl.temperature",
    "method.top_p": "trl.top_p",
}

# Fields Axolotl has no key for; the export leaves them out only when they hold their default.
NOT_IN_AXOLOTL = {
    "model.dtype": "Axolotl sets the dtype with bf16/fp16 flags of its own",
    "lora.exclude_modules": "no Axolotl key",
    "lora.bias": "no Axolotl key",
    "lora.lora_bias": "no Axolotl key",
    "lora.layers_pattern": "no Axolotl key",
    "lora.rank_pattern": "no Axolotl key",
    "lora.alpha_pattern": "no Axolotl key",
    "lora.init_lora_weights": "no Axolotl key for the LoRA initialisation",
    "training.devices": "Axolotl's launcher sets the processes (accelerate launch --num_processes)",
    "hub.private": "no Axolotl key: the repository is created with the Hub's default visibility",
    "hub.merged": "Axolotl pushes the adapter; it merges with its own merge_lora command",
    "training.early_stopping_threshold": "no Axolotl key: Axolotl stops on any improvement",
    "samples.prompts": "no Axolotl key for prompts answered while training",
    "samples.max_new_tokens": "no Axolotl key for prompts answered while training",
    "method.loss_type": "no Axolotl key: Axolotl names some variants as rl values of their own (rl: ipo)",
    "method.rewards": "Axolotl's GRPO takes reward functions as Python import paths (trl.reward_funcs)",
}
# The method settings Axolotl's GRPO takes under its `trl:` mapping, same names.
TRL_GRPO = ("beta", "num_generations", "max_completion_length", "temperature", "top_p")
# Axolotl's one dataset type for ORPO (prompt_strategies/orpo): chosen/rejected as message lists.
ORPO_TYPE = "chat_template.argilla"
