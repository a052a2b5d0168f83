"""Loading what a run trains: the tokenizer (cheap, needed to check the data) and the base model, on the
right device, in the right dtype, quantized with bitsandbytes when asked. The adapter itself is PEFT's job.
"""

from __future__ import annotations

import functools
import logging
import os
import warnings

from finetune.demo import resolve_model
from finetune.errors import RunFileError
from finetune.model.dtypes import resolve_dtype
from finetune.runfile import LoraSection, ModelSection


def quiet_libraries() -> None:
    """Silence third-party chatter that would confuse a user reading train.log: progress bars drawn with
    carriage returns, and notices about internals they cannot act on (kernel hubs, dtype casts, deprecations
    inside the libraries). Real errors still surface: they are raised, not logged."""
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")  # else a fork warning once the Trainer starts
    os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")
    os.environ.setdefault("HF_DATASETS_DISABLE_PROGRESS_BARS", "1")
    for name in ("bitsandbytes", "accelerate", "peft", "datasets", "torch.distributed"):
        logging.getLogger(name).setLevel(logging.ERROR)
    for category in (FutureWarning, DeprecationWarning):
        warnings.filterwarnings("ignore", category=category)
    import transformers

    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()


def device_kind() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def weights_dtype(model: ModelSection):
    """model.dtype as the torch dtype the weights load in (the rule is finetune.model.dtypes')."""
    import torch

    return getattr(torch, resolve_dtype(model.dtype))


def device_problems(model: ModelSection) -> list[str]:
    """Settings this machine cannot run, found before anything loads."""
    if device_kind() == "cpu" and model.dtype == "float16":
        return ['model.dtype: "float16" needs a GPU; on the CPU use "float32" (or "auto")']
    return []


@functools.lru_cache(maxsize=4)
def _tokenizer(path: str, revision: str | None, trust_remote_code: bool):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(path, revision=revision, trust_remote_code=trust_remote_code)


def load_tokenizer(model: ModelSection):
    """The model's tokenizer, with a pad token (its end-of-text token when it has none, as TRL would)."""
    try:
        tok = _tokenizer(resolve_model(model.name_or_path), model.revision, model.trust_remote_code)
    except Exception as exc:  # OSError offline, ValueError for an unknown class...: one line for the user
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise RunFileError(f'model.name_or_path: "{model.name_or_path}": cannot load its tokenizer: '
                           f"{first[:300]}") from None
    if tok.pad_token is None and tok.eos_token is not None:
        tok.pad_token = tok.eos_token
    return tok


def quantization_config(model: ModelSection, compute_dtype, sharded: bool = False):
    """QLoRA's recipe for 4-bit (NF4, double quantization, compute in the weights' dtype), or LLM.int8().
    `sharded` (FSDP): the packed 4-bit weights are stored in the compute dtype, since FSDP shards only
    floating-point tensors (the QLoRA + FSDP recipe)."""
    from transformers import BitsAndBytesConfig

    if model.quantization == "4bit":
        storage = {"bnb_4bit_quant_storage": compute_dtype} if sharded else {}
        return BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                                  bnb_4bit_compute_dtype=compute_dtype, **storage)
    if model.quantization == "8bit":
        return BitsAndBytesConfig(load_in_8bit=True)
    return None


def load_base(model: ModelSection, dtype=None, quantized: bool = True, sharded: bool = False, device_map=None):
    """The base model as every caller loads it (training, generation, merge): model.dtype (or `dtype`),
    bitsandbytes when model.quantization asks and `quantized` allows it, transformers' default attention
    (SDPA where the model class has it, as the memory estimate assumes). A quantized model on a GPU is placed
    on this process's GPU as it loads, since bitsandbytes quantizes while placing; with FSDP (`sharded`) FSDP
    places the shards itself. A model that cannot be read is one line naming it."""
    import torch
    from transformers import AutoModelForCausalLM

    dtype = weights_dtype(model) if dtype is None else dtype
    quant = quantization_config(model, dtype, sharded) if quantized else None
    if device_map is None and quant is not None and torch.cuda.is_available() and not sharded:
        device_map = {"": torch.cuda.current_device()}   # each rank's current device is its own GPU
    extra = {"device_map": device_map} if device_map is not None else {}
    try:
        return AutoModelForCausalLM.from_pretrained(
            resolve_model(model.name_or_path), dtype=dtype, quantization_config=quant, revision=model.revision,
            trust_remote_code=model.trust_remote_code, **extra)
    except OSError as exc:   # offline, gone, gated: one line, not a traceback
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise RunFileError(f'model.name_or_path: "{model.name_or_path}": cannot load it: {first[:300]}') from None


def prepare_quantized_for_training(base, gradient_checkpointing: bool):
    """A 4-bit/8-bit base made ready for an adapter, its unquantized weights (embeddings, norms, lm_head,
    biases) left in the compute dtype. PEFT's prepare_model_for_kbit_training casts them all to float32,
    which makes the residual stream float32: Llama-3-8B QLoRA through it peaked at 47.8 GB on an H200 against
    30.6 GB for plain TRL, which never calls it, and trained at 0.82x its speed (benchmarks/gpu_results.csv).
    What training needs from it is kept: every base weight frozen, and the embeddings' output requiring grad
    so that reentrant gradient checkpointing has a path back to the adapters. The adapters come later
    (get_peft_model in the trainer): PEFT creates them in float32 and TRL casts them to bfloat16 over a
    quantized base; neither is float16, which the float16 AMP gradient scaler refuses to unscale."""
    for param in base.parameters():
        param.requires_grad_(False)
    if gradient_checkpointing:
        base.enable_input_require_grads()
    return base


def load_model(model: ModelSection, gradient_checkpointing: bool, sharded: bool = False):
    """The frozen base model, ready for an adapter (quantized: prepare_quantized_for_training)."""
    base = load_base(model, sharded=sharded)
    if model.quantization != "none":
        base = prepare_quantized_for_training(base, gradient_checkpointing)
    return base


def lora_config(lora: LoraSection):
    """peft.LoraConfig from the run file's lora section: its keys are LoraConfig's own names."""
    from dataclasses import asdict

    from peft import LoraConfig

    kwargs = {k: v for k, v in asdict(lora).items() if v is not None}
    return LoraConfig(task_type="CAUSAL_LM", **kwargs)
