"""The run file: four sections of typed settings, loaded from YAML or JSON and checked before any library
sees them. Each field is documented once, here; the CLI help and the UI's help text are read from it.

Section keys are the libraries' own argument names (`peft.LoraConfig`, `trl.SFTConfig`), so a user can
paste what they know. Checks that need the model (which modules exist) live in `finetune.count`.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from finetune import checks
from finetune.checks import Choice, Dict, Flag, Int, Num, Optional, Str, StrOrList, IntOrList
from finetune.errors import RunFileError

DEMO = "demo"  # the name that stands for the built-in demo model and dataset (finetune/demo/)


def setting(default, help: str, check, **kw):
    """A run-file field: its default, its one piece of documentation, and the check its value must pass."""
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda: type(default)(default), metadata={"help": help, "check": check}, **kw)
    return field(default=default, metadata={"help": help, "check": check}, **kw)


@dataclass
class ModelSection:
    name_or_path: str = setting(DEMO, "Hub model id (only its config.json is read to count) or a local folder; "
                                "`demo` is the built-in tiny model.", Str(nonempty=True))
    quantization: str = setting("none", "Load the frozen base model in 4-bit NF4 (QLoRA) or 8-bit with "
                                "bitsandbytes, or unquantized (`none`).", Choice("none", "4bit", "8bit"))
    revision: str | None = setting(None, "Branch, tag or commit of a Hub model.", Optional(Str(nonempty=True)))
    trust_remote_code: bool = setting(False, "Run the model repository's own Python code. Off unless you "
                                      "trust its author.", Flag())
    dtype: str = setting("auto", "Weights' dtype: `auto` is bfloat16 on a GPU that supports it, float32 on "
                         "the CPU.", Choice("auto", "bfloat16", "float16", "float32"))


@dataclass
class LoraSection:
    r: int = setting(16, "Rank of the update matrices B (out x r) and A (r x in); trainable parameters grow "
                     "linearly with it.", Int(ge=1, le=4096))
    lora_alpha: float = setting(16, "Scale of the update: it is multiplied by lora_alpha / r (or "
                                "lora_alpha / sqrt(r) with rsLoRA).", Num(gt=0))
    lora_dropout: float = setting(0.0, "Dropout on the adapter's input during training, a probability in "
                                  "[0, 1).", Num(ge=0, lt=1))
    target_modules: Any = setting("all-linear", "Modules that get an adapter: a list of names (a name matches "
                                  "a module whose path ends with it), one regular expression matched against "
                                  "the full path, or `all-linear` (every Linear but the output layer).",
                                  StrOrList(nonempty=True))
    exclude_modules: Any = setting(None, "Modules never to adapt, as names or one regular expression.",
                                   Optional(StrOrList(nonempty=True)))
    bias: str = setting("none", "Which biases train: `none`, `all` (every bias in the model) or `lora_only` "
                        "(biases of adapted layers).", Choice("none", "all", "lora_only"))
    use_rslora: bool = setting(False, "Rank-stabilized LoRA: scale by lora_alpha / sqrt(r) instead of "
                               "lora_alpha / r.", Flag())
    use_dora: bool = setting(False, "DoRA: also learn a magnitude vector per output feature of each adapted "
                             "layer.", Flag())
    lora_bias: bool = setting(False, "Give each adapter's B matrix a trainable bias.", Flag())
    modules_to_save: Any = setting(None, "Modules trained in full and saved with the adapter (e.g. "
                                   "embed_tokens, lm_head after adding tokens).", Optional(StrOrList(nonempty=True)))
    layers_to_transform: Any = setting(None, "Only these layer indices get adapters (one index or a list).",
                                       Optional(IntOrList(ge=0)))
    layers_pattern: Any = setting(None, "Name of the module list that holds the layers (e.g. `layers`, `h`), "
                                  "used with layers_to_transform.", Optional(StrOrList(nonempty=True)))
    rank_pattern: dict = setting({}, "Per-module ranks: {regular expression or name: r}, overriding r.",
                                 Dict(Int(ge=1, le=4096)))
    alpha_pattern: dict = setting({}, "Per-module alphas: {regular expression or name: lora_alpha}.",
                                  Dict(Num(gt=0)))
    init_lora_weights: Any = setting(True, "How adapters start: true (B = 0, so training starts from the base "
                                     "model), `gaussian`, `pissa`, `olora`...", Choice(True, False, "gaussian",
                                     "pissa", "pissa_niter_4", "pissa_niter_16", "olora", "orthogonal"))
    fan_in_fan_out: bool = setting(False, "The base weight is stored as (in, out), as in GPT-2's Conv1D; set "
                                   "automatically for Conv1D layers.", Flag())


@dataclass
class DataSection:
    path: str = setting(DEMO, "A .jsonl, .json, .csv or .parquet file, or a Hub dataset id; `demo` is the "
                        "built-in sample.", Str(nonempty=True))
    format: str = setting("auto", "How examples are read: `auto` recognises a `messages` column (chat), "
                          "`prompt` + `completion`, `instruction` (+ `input`) + `output` (Alpaca) and `text`.",
                          Choice("auto", "text", "alpaca", "chat", "prompt_completion"))
    name: str | None = setting(None, "Configuration name of a Hub dataset.", Optional(Str(nonempty=True)))
    split: str = setting("train", "Split of a Hub dataset to train on.", Str(nonempty=True))
    max_length: int = setting(512, "Tokens per example; longer examples are truncated (and counted).",
                              Int(ge=8, le=1_048_576))
    packing: bool = setting(False, "Pack several short examples into each sequence of max_length tokens.", Flag())
    eval_size: float = setting(0.0, "Held out for evaluation: a fraction in (0, 1) or a number of examples; "
                               "0 for none.", Num(ge=0))


@dataclass
class TrainingSection:
    output_dir: str = setting("runs/run", "Run folder: status, metrics, log, checkpoints and the adapter "
                              "go here.", Str(nonempty=True))
    learning_rate: float = setting(2e-4, "Peak learning rate of the adapter's optimizer.", Num(gt=0, le=1))
    num_train_epochs: float = setting(1, "Passes over the training data (ignored when max_steps > 0).", Num(gt=0))
    max_steps: int = setting(-1, "Optimizer steps to train; -1 to use num_train_epochs.", Int(ge=-1))
    per_device_train_batch_size: int = setting(2, "Examples per forward pass on each device.", Int(ge=1))
    gradient_accumulation_steps: int = setting(4, "Forward passes per optimizer step: the effective batch "
                                               "is this times the batch size.", Int(ge=1))
    lr_scheduler_type: str = setting("linear", "How the learning rate changes over training.",
                                     Choice("linear", "cosine", "constant", "constant_with_warmup",
                                            "cosine_with_restarts", "polynomial", "inverse_sqrt"))
    warmup_steps: float = setting(0, "Warm-up: a number of steps, or a fraction of all steps when below 1.",
                                  Num(ge=0))
    weight_decay: float = setting(0.0, "Decoupled weight decay of AdamW on the adapter's weights.", Num(ge=0))
    max_grad_norm: float = setting(1.0, "Gradients are clipped to this norm; 0 turns clipping off.", Num(ge=0))
    optim: str = setting("adamw_torch_fused", "Optimizer. The paged and 8-bit ones need CUDA; without it the job "
                         "falls back to adamw_torch and says so.",
                         Choice("adamw_torch", "adamw_torch_fused", "adafactor", "sgd", "paged_adamw_32bit",
                                "paged_adamw_8bit", "adamw_8bit", "adamw_bnb_8bit"))
    gradient_checkpointing: bool = setting(False, "Recompute activations in the backward pass: less memory, "
                                           "about 30% slower.", Flag())
    logging_steps: int = setting(1, "Steps between two points of the loss curve.", Int(ge=1))
    save_steps: int = setting(100, "Steps between two checkpoints (what --resume goes on from).", Int(ge=1))
    save_total_limit: int | None = setting(2, "Checkpoints kept; older ones are deleted.", Optional(Int(ge=1)))
    eval_steps: int | None = setting(None, "Steps between two evaluations (when data.eval_size > 0); "
                                     "default: logging_steps x 10.", Optional(Int(ge=1)))
    seed: int = setting(42, "Random seed for the adapter's initialisation and the data order.", Int(ge=0))


SECTIONS = {"model": ModelSection, "lora": LoraSection, "data": DataSection, "training": TrainingSection}

# Keys of peft.LoraConfig that change what trains in ways the count does not model: refused by name
# rather than counted wrongly.
UNSUPPORTED = {
    "lora": {"target_parameters", "trainable_token_indices", "layer_replication", "megatron_config",
             "megatron_core", "loftq_config", "eva_config", "corda_config", "use_qalora", "qalora_group_size",
             "alora_invocation_tokens", "arrow_config", "runtime_config", "lora_ga_config", "layers_to_swap",
             "task_type", "inference_mode", "peft_type", "base_model_name_or_path", "revision"},
}


@dataclass
class RunConfig:
    model: ModelSection = field(default_factory=ModelSection)
    lora: LoraSection = field(default_factory=LoraSection)
    data: DataSection = field(default_factory=DataSection)
    training: TrainingSection = field(default_factory=TrainingSection)
    # Further trl.SFTConfig / TrainingArguments keys the user gave, checked against those classes' fields.
    training_extra: dict = field(default_factory=dict)

    @classmethod
    def from_dict(cls, raw: Any) -> "RunConfig":
        """Build and check a run from its parsed file; raises RunFileError listing every problem."""
        return checks.build_run(cls, raw)

    def to_dict(self) -> dict:
        out = {name: dataclasses.asdict(getattr(self, name)) for name in SECTIONS}
        out["training"].update(self.training_extra)
        return out

    def to_yaml(self) -> str:
        return dump_yaml(self.to_dict())


class _RunDumper(yaml.SafeDumper):
    """Sections and their settings one per line, lists of names on one line: how people write run files."""


_RunDumper.add_representer(list, lambda d, v: d.represent_sequence("tag:yaml.org,2002:seq", v, flow_style=True))
_RunDumper.add_representer(dict, lambda d, v: d.represent_mapping("tag:yaml.org,2002:map", v, flow_style=False))


def dump_yaml(run: dict) -> str:
    """A run file's dict as YAML text, in the layout people write by hand."""
    return yaml.dump(run, Dumper=_RunDumper, sort_keys=False, allow_unicode=True)


def parse_text(text: str, source: str = "run file") -> dict:
    """YAML or JSON text -> a dict (JSON is YAML); one clear line when it does not parse."""
    try:
        data = yaml.safe_load(text) if text.strip() else {}
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise RunFileError(f"{source}: not valid YAML or JSON{where}: {problem}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise RunFileError(f"{source}: must be a mapping with sections model, lora, data, training; "
                           f"got {type(data).__name__}")
    return data


def read_file(path: str | Path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise RunFileError(f"{path}: no such run file")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise RunFileError(f"{path}: cannot be read: {exc}") from None
    return parse_text(text, str(path))


def load_run(path: str | Path) -> RunConfig:
    """Read, parse and check a run file."""
    return RunConfig.from_dict(read_file(path))


def parse_run(text: str) -> RunConfig:
    """Parse and check a run file's text (what the UI and the API take)."""
    return RunConfig.from_dict(parse_text(text))


def overlay(base: dict, top: dict) -> dict:
    """A preset or an edit laid over a run file's dict: sections merge key by key, values replace."""
    out = {k: dict(v) if isinstance(v, dict) else v for k, v in base.items()}
    for section, values in top.items():
        if isinstance(values, dict) and isinstance(out.get(section), dict):
            out[section].update(values)
        else:
            out[section] = values
    return out


def field_help(section: str, key: str) -> str:
    """The one documentation of a field, for UI help text and CLI help."""
    for f in dataclasses.fields(SECTIONS[section]):
        if f.name == key:
            return f.metadata["help"]
    raise KeyError(f"{section}.{key}")
