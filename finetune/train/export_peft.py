"""`finetune export RUN --to peft`: a standalone PEFT + TRL script that trains what `finetune train` trains.

Nothing is mapped twice: the TRL config's arguments come from trainer_args.config_args (what the job passes
its config class), the LoraConfig and BitsAndBytesConfig from the objects model/loading.py builds for the
job, written out as the settings that differ from the libraries' defaults. The device is a parameter (the
job's depends on it: mixed precision, 4-bit compute dtype, the CPU optimizer fallback), named in the script's
header; by default this machine's, which is what `finetune train` would run here.
"""

from __future__ import annotations

import dataclasses
import inspect

from finetune.demo import resolve_data, resolve_model
from finetune.model.dtypes import CPU, Device, resolve_dtype, this_device
from finetune.runfile import RunConfig, dump_yaml
from finetune.runfile.parallel import AUTO, wants_group
from finetune.train.methods import METHODS
from finetune.train.trainer_args import config_args

# The devices an export can be written for, by name (the job's choices differ between them).
DEVICES = {"cuda-bf16": Device(cuda=True, bf16=True), "cuda-fp16": Device(cuda=True, bf16=False), "cpu": CPU}
DEVICE_WORDS = {DEVICES["cuda-bf16"]: "a CUDA GPU with bfloat16 (Ampere or newer: A100, L4, H100...)",
                DEVICES["cuda-fp16"]: "a CUDA GPU without bfloat16 (T4, V100...)", CPU: "the CPU (no CUDA)"}


def _kwargs(values: dict, indent: str = "    ") -> str:
    return "".join(f"{indent}{k}={_code(v)},\n" for k, v in values.items())


def _code(value) -> str:
    """A value as Python source: sets (PEFT keeps target_modules as one) sorted into lists, torch dtypes
    by name."""
    if isinstance(value, (set, frozenset)):
        return repr(sorted(value))
    if type(value).__module__ == "torch" and type(value).__name__ == "dtype":
        return str(value)   # torch.float16
    return repr(value)


def lora_kwargs(run: RunConfig) -> dict:
    """The job's LoraConfig (model/loading.py lora_config) as the keywords that differ from PEFT's defaults."""
    from peft import LoraConfig

    from finetune.model.loading import lora_config

    built, default = lora_config(run.lora), LoraConfig(task_type="CAUSAL_LM")
    return {f.name: getattr(built, f.name) for f in dataclasses.fields(LoraConfig)
            if f.init and f.name != "task_type" and getattr(built, f.name) != getattr(default, f.name)}


def quant_kwargs(run: RunConfig, device: Device) -> dict | None:
    """The job's BitsAndBytesConfig for one process on `device` (model/loading.py quantization_config) as
    the keywords that differ from its defaults; None when the model is not quantized."""
    import torch
    from transformers import BitsAndBytesConfig

    from finetune.model.loading import quantization_config

    built = quantization_config(run.model, getattr(torch, resolve_dtype(run.model.dtype, device)))
    if built is None:
        return None
    default = BitsAndBytesConfig()
    names = [n for n in inspect.signature(BitsAndBytesConfig.__init__).parameters if n not in ("self", "kwargs")]
    return {n: getattr(built, n) for n in names if getattr(built, n) != getattr(default, n)}


def _header(run: RunConfig, device: Device, chosen: bool, notes: list[str]) -> list[str]:
    dtype = resolve_dtype(run.model.dtype, device)
    where = "as chosen" if chosen else "this machine, as `finetune train` would run here"
    lines = ["# Exported by LoRA Launchpad: the same run with PEFT and TRL directly.",
             f"# Device assumed: {DEVICE_WORDS.get(device, device)}, {where}: weights in {dtype}."]
    if wants_group(run.training):
        n = run.training.devices
        lines.append(f"# One process here: finetune train starts {'one per GPU' if n == AUTO else n} for this run "
                     "itself (`finetune export --to accelerate` writes that launch).")
    if run.method.name == "sft" and run.data.format != "prompt_completion":
        lines += [f"# data.format {run.data.format}: finetune train first converts alpaca and text rows to TRL's "
                  "columns, and trains on chat data's", "# assistant replies only (assistant_only_loss=True where "
                  "the chat template marks them, else on each conversation's last reply)."]
    return lines + [f"# {note}" for note in notes]


def _dataset(run: RunConfig) -> list[str]:
    data, path = run.data, resolve_data(run.data.path, run.method.name)
    if path.endswith((".jsonl", ".json", ".csv", ".parquet")):
        kind = {"jsonl": "json"}.get(path.rsplit(".", 1)[-1], path.rsplit(".", 1)[-1])
        lines = [f"dataset = load_dataset({kind!r}, data_files={path!r}, split='train')"]
    else:
        lines = [f"dataset = load_dataset({data.path!r}, {data.name!r}, split={data.split!r})"]
    size = data.eval_size
    if not size:
        return [*lines, "train_dataset, eval_dataset = dataset, None"]
    n_eval = f"max(1, round({size!r} * len(dataset)))" if size < 1 else repr(int(size))
    return [*lines, f"split = dataset.train_test_split(test_size={n_eval}, seed={run.training.seed!r})  "
            "# data.eval_size", "train_dataset, eval_dataset = split['train'], split['test']"]


def to_peft(run: RunConfig, device: Device | None = None) -> str:
    """The script for `device` (a DEVICES value; this machine's when None)."""
    chosen, device = device is not None, this_device() if device is None else device
    built = config_args(run, device)   # one process: the script is run as it is
    module, config = built.config.split(":")
    trainer_module, trainer = METHODS[run.method.name].trainer.split(":")
    dtype, quant = resolve_dtype(run.model.dtype, device), quant_kwargs(run, device)
    model_id = resolve_model(run.model.name_or_path)
    common = f"revision={run.model.revision!r}, trust_remote_code={run.model.trust_remote_code!r}"
    load = f"model_id, dtype=torch.{dtype}, {common}"
    stopping = run.training.early_stopping_patience is not None and bool(run.data.eval_size)
    imports = {"datasets": ["load_dataset"], "peft": ["LoraConfig"],
               "transformers": ["AutoModelForCausalLM", "AutoTokenizer"], module: [config]}
    imports.setdefault(trainer_module, []).append(trainer)
    if quant is not None:
        imports["transformers"].append("BitsAndBytesConfig")
    if stopping:
        imports["transformers"].append("EarlyStoppingCallback")
    lines = [*_header(run, device, chosen, built.notes), "import torch",
             *(f"from {name} import {', '.join(names)}" for name, names in imports.items()), "",
             f"model_id = {model_id!r}"]
    if quant is not None:
        # bitsandbytes quantizes as it places the weights: on the GPU, straight away.
        placed = ", device_map={'': torch.cuda.current_device()}" if device.cuda else ""
        lines += ["quant = BitsAndBytesConfig(\n" + _kwargs(quant) + ")",
                  f"model = AutoModelForCausalLM.from_pretrained({load}, quantization_config=quant{placed})",
                  # As the job (model/loading.prepare_quantized_for_training): frozen, in the compute dtype.
                  "model.requires_grad_(False)  # not prepare_model_for_kbit_training: it upcasts to float32",
                  *(["model.enable_input_require_grads()  # a path back to the adapters through checkpointing"]
                    if run.training.gradient_checkpointing else [])]
    else:
        lines.append(f"model = AutoModelForCausalLM.from_pretrained({load})")
    lines += [f"tokenizer = AutoTokenizer.from_pretrained(model_id, {common})",
              "if tokenizer.pad_token is None:",
              "    tokenizer.pad_token = tokenizer.eos_token",
              "lora_config = LoraConfig(\n    task_type='CAUSAL_LM',\n" + _kwargs(lora_kwargs(run)) + ")", "",
              *_dataset(run)]
    extra = ""
    if run.method.name == "grpo":   # the run file's rewards, built the way `finetune train` builds them
        method = {k: v for k, v in vars(run.method).items() if v not in (None, [])}
        lines += ["", "from finetune.runfile import parse_run  # LoRA Launchpad's built-in rewards",
                  "from finetune.train.rewards import build",
                  f"reward_funcs, _ = build(parse_run({dump_yaml({'method': method})!r}))"]
        extra += "reward_funcs=reward_funcs, "
    t = run.training
    if stopping:
        extra += (f"callbacks=[EarlyStoppingCallback({t.early_stopping_patience!r}, "
                  f"{t.early_stopping_threshold or 0.0!r})], ")
    # TRL wraps the model with peft_config, as in the job; DPO and KTO then take the base model with the
    # adapter off as their reference (no ref_model).
    lines += ["", f"args = {config}(\n" + _kwargs(built.kwargs) + ")",
              f"trainer = {trainer}(model=model, {extra}args=args, train_dataset=train_dataset, "
              "eval_dataset=eval_dataset,\n    processing_class=tokenizer, peft_config=lora_config)",
              "trainer.train()",
              "trainer.model.save_pretrained(args.output_dir + '/adapter')", ""]
    return "\n".join(lines)
