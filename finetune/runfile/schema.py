"""The run file: four sections of typed settings, loaded from YAML or JSON and checked before any library
sees them. Each field is documented once, here; the CLI help and the UI's help text are read from it.

Section keys are the libraries' own argument names (`peft.LoraConfig`, `trl.SFTConfig`), so a user can
paste what they know. Checks that need the model (which modules exist) live in `finetune.model.count`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from finetune.demo import DEMO
from finetune.errors import RunFileError
from finetune.runfile.allowlist import check_training_extra
from finetune.runfile.data_formats import NAMES as FORMAT_NAMES
from finetune.runfile.evaluation import SamplesSection, evaluation_problems
from finetune.runfile.limits import MAX_NODES, count_values
from finetune.runfile.method import MethodSection, as_dict, data_problems, settle
from finetune.runfile.parallel import Devices, strategy_problems
from finetune.runfile.repo_id import RepoId
from finetune.runfile.runner import RunnerSection, build_runner, remote_problems, runner_dict
from finetune.runfile.text import dump_yaml, parse_text, read_file
from finetune.runfile.validators import (
    Choice,
    DictOf,
    Flag,
    FractionOrCount,
    Int,
    IntOrList,
    Num,
    OrNull,
    Str,
    StrOrList,
    build_section,
    did_you_mean,
    show,
)

ALL_LINEAR = "all-linear"  # PEFT's shorthand for every Linear but the output layer; PEFT reads it in any case


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
    revision: str | None = setting(None, "Branch, tag or commit of a Hub model.", OrNull(Str(nonempty=True)))
    trust_remote_code: bool = setting(False, "Run the model repository's own Python code. Off unless you "
                                      "trust its author.", Flag())
    dtype: str = setting("auto", "Weights' dtype: `auto` is bfloat16 on a GPU that supports it, float32 on "
                         "the CPU.", Choice("auto", "bfloat16", "float16", "float32"))


@dataclass
class LoraSection:
    r: int = setting(16, "Rank of the update matrices B (out x r) and A (r x in), 1 to 4,096; trainable "
                     "parameters grow linearly with it.", Int(ge=1, le=4096))
    lora_alpha: float = setting(16, "Scale of the update: it is multiplied by lora_alpha / r (or "
                                "lora_alpha / sqrt(r) with rsLoRA); above 0, at most 65,536.", Num(gt=0, le=65_536))
    lora_dropout: float = setting(0.0, "Dropout on the adapter's input during training, a probability in "
                                  "[0, 1).", Num(ge=0, lt=1))
    target_modules: Any = setting(ALL_LINEAR, "Modules that get an adapter: a list of names (a name matches "
                                  "a module whose path ends with it), one regular expression matched against "
                                  "the full path, or `all-linear` (every Linear but the output layer).",
                                  StrOrList(nonempty=True))
    exclude_modules: Any = setting(None, "Modules never to adapt, as names or one regular expression.",
                                   OrNull(StrOrList(nonempty=True)))
    bias: str = setting("none", "Which biases train: `none`, `all` (every bias in the model) or `lora_only` "
                        "(biases of adapted layers).", Choice("none", "all", "lora_only"))
    use_rslora: bool = setting(False, "Rank-stabilized LoRA: scale by lora_alpha / sqrt(r) instead of "
                               "lora_alpha / r.", Flag())
    use_dora: bool = setting(False, "DoRA: also learn a magnitude vector per output feature of each adapted "
                             "layer.", Flag())
    lora_bias: bool = setting(False, "Give each adapter's B matrix a trainable bias.", Flag())
    modules_to_save: Any = setting(None, "Modules trained in full and saved with the adapter (e.g. "
                                   "embed_tokens, lm_head after adding tokens).", OrNull(StrOrList(nonempty=True)))
    layers_to_transform: Any = setting(None, "Only these layer indices get adapters (one index or a list; "
                                       "indices from 0 to 9,999).", OrNull(IntOrList(ge=0, le=9_999)))
    layers_pattern: Any = setting(None, "Name of the module list that holds the layers (e.g. `layers`, `h`), "
                                  "used with layers_to_transform.", OrNull(StrOrList(nonempty=True)))
    rank_pattern: dict = setting({}, "Per-module ranks: {regular expression or name: r}, overriding r; "
                                 "each from 1 to 4,096.",
                                 DictOf(Int(ge=1, le=4096)))
    alpha_pattern: dict = setting({}, "Per-module alphas: {regular expression or name: lora_alpha}; each "
                                  "above 0, at most 65,536.", DictOf(Num(gt=0, le=65_536)))
    init_lora_weights: Any = setting(True, "How adapters start: true (B = 0, so training starts from the base "
                                     "model), `gaussian`, `pissa`, `olora`...", Choice(True, False, "gaussian",
                                     "pissa", "pissa_niter_4", "pissa_niter_16", "olora", "orthogonal"))
    fan_in_fan_out: bool = setting(False, "The base weight is stored as (in, out), as in GPT-2's Conv1D; set "
                                   "automatically for Conv1D layers.", Flag())

    def __post_init__(self):
        # PEFT takes the shorthand in any case; one spelling here means one comparison everywhere else.
        if isinstance(self.target_modules, str) and self.target_modules.lower() == ALL_LINEAR:
            self.target_modules = ALL_LINEAR


@dataclass
class DataSection:
    path: str = setting(DEMO, "A .jsonl, .json, .csv or .parquet file, or a Hub dataset id; `demo` is the "
                        "built-in sample.", Str(nonempty=True))
    format: str = setting("auto", "How examples are read: `auto` recognises a `messages` column (chat), "
                          "`prompt` + `completion`, `instruction` (+ `input`) + `output` (Alpaca) and `text`.",
                          Choice("auto", *FORMAT_NAMES))
    name: str | None = setting(None, "Configuration name of a Hub dataset.", OrNull(Str(nonempty=True)))
    split: str = setting("train", "Split of a Hub dataset to train on.", Str(nonempty=True))
    max_length: int = setting(512, "Tokens per example, 8 to 1,048,576; longer examples are truncated "
                              "(and counted). GRPO: tokens per prompt; a longer prompt stops the run before "
                              "training.",
                              Int(ge=8, le=1_048_576))
    packing: bool = setting(False, "Pack several short examples into each sequence of max_length tokens.", Flag())
    eval_size: float = setting(0.0, "Held out for evaluation: a fraction in (0, 1) or a whole number of "
                               "examples up to 10,000,000; 0 for none.", FractionOrCount(le=10_000_000))


@dataclass
class TrainingSection:
    output_dir: str = setting("runs/run", "Run folder: status, metrics, log, checkpoints and the adapter "
                              "go here.", Str(nonempty=True))
    learning_rate: float = setting(2e-4, "Peak learning rate of the adapter's optimizer.", Num(gt=0, le=1))
    num_train_epochs: float = setting(1, "Passes over the training data (ignored when max_steps > 0); "
                                    "above 0, at most 10,000.", Num(gt=0, le=10_000))
    max_steps: int = setting(-1, "Optimizer steps to train, at most 10,000,000; -1 to use "
                             "num_train_epochs.", Int(ge=-1, le=10_000_000))
    per_device_train_batch_size: int = setting(2, "Examples per forward pass on each device, "
                                               "1 to 65,536.", Int(ge=1, le=65_536))
    gradient_accumulation_steps: int = setting(4, "Forward passes per optimizer step, 1 to 65,536: "
                                               "the effective batch is this times the batch size.",
                                               Int(ge=1, le=65_536))
    lr_scheduler_type: str = setting("linear", "How the learning rate changes over training.",
                                     Choice("linear", "cosine", "constant", "constant_with_warmup",
                                            "cosine_with_restarts", "polynomial", "inverse_sqrt"))
    warmup_steps: float = setting(0, "Warm-up: a whole number of steps (at most 10,000,000), or a "
                                  "fraction of all steps when below 1.", FractionOrCount(le=10_000_000))
    weight_decay: float = setting(0.0, "Decoupled weight decay of AdamW on the adapter's weights.", Num(ge=0))
    max_grad_norm: float = setting(1.0, "Gradients are clipped to this norm; 0 turns clipping off.", Num(ge=0))
    optim: str = setting("adamw_torch_fused", "Optimizer. The paged and 8-bit ones need CUDA; without it the job "
                         "falls back to adamw_torch and says so.",
                         Choice("adamw_torch", "adamw_torch_fused", "adafactor", "sgd", "paged_adamw_32bit",
                                "paged_adamw_8bit", "adamw_8bit", "adamw_bnb_8bit"))
    gradient_checkpointing: bool = setting(False, "Recompute activations in the backward pass: less memory, "
                                           "about 30% slower.", Flag())
    logging_steps: int = setting(1, "Steps between two points of the loss curve, 1 to "
                               "10,000,000.", Int(ge=1, le=10_000_000))
    save_steps: int = setting(100, "Steps between two checkpoints (what --resume goes on "
                            "from), 1 to 10,000,000.", Int(ge=1, le=10_000_000))
    save_total_limit: int | None = setting(2, "Checkpoints kept (1 to 10,000); older ones are "
                                          "deleted.", OrNull(Int(ge=1, le=10_000)))
    eval_steps: int | None = setting(None, "Steps between two evaluations (when data.eval_size > 0); "
                                     "default: logging_steps x 10; at most 10,000,000.",
                                     OrNull(Int(ge=1, le=10_000_000)))
    early_stopping_patience: int | None = setting(None, "Stop after this many evaluations in a row without "
                                                  "improving the eval loss (or metric_for_best_model), 1 to 1,000, "
                                                  "and keep the best checkpoint as the adapter; needs "
                                                  "data.eval_size.", OrNull(Int(ge=1, le=1000)))
    early_stopping_threshold: float | None = setting(None, "How much an evaluation must improve on the best "
                                                     "so far to count as better (default 0).", OrNull(Num(ge=0)))
    seed: int = setting(42, "Random seed for the adapter's initialisation and the data "
                    "order, 0 to 4,294,967,295 (what numpy takes).", Int(ge=0, le=2**32 - 1))
    # How many processes train and how they share the model: launch settings, not SFTConfig keys
    # (finetune.runfile.parallel.LAUNCH_FIELDS).
    devices: Any = setting(1, "Devices to train on, one process each, every one on different examples (the "
                           "effective batch grows with it): a number up to 1,024, or `auto` for every free GPU. "
                           "Without a GPU each device is one CPU process.", Devices())
    strategy: str = setting("ddp", "How several devices share the model: `ddp` keeps a whole copy on each; "
                            "`fsdp` shards the base weights across them (for a model too big for one GPU; with "
                            "4-bit they are stored in the compute dtype so they can be sharded); `deepspeed` "
                            "partitions with ZeRO (stage zero_stage). Ignored on one device.",
                            Choice("ddp", "fsdp", "deepspeed"))
    zero_stage: int = setting(2, "DeepSpeed ZeRO stage for strategy deepspeed: 2 partitions the gradients and the "
                              "optimizer state, 3 the weights too (not with quantization).", Choice(2, 3))


@dataclass
class HubSection:
    """Keeping the result on the Hugging Face Hub when the run completes (finetune.adapter.hub)."""
    repo_id: str | None = setting(None, "Push the result to this Hub model repository (\"owner/name\") when the run "
                                  "completes, with a model card; created if missing. Locally the job pushes with "
                                  "your own token (HF_TOKEN or `hf auth login`); on a Space the app pushes with the "
                                  "launcher's own sign-in, never the Space's token.", OrNull(RepoId()))
    private: bool = setting(False, "Create the repository as private (an existing one keeps its visibility).",
                            Flag())
    merged: bool = setting(False, "Push the base model merged with the adapter (full 16-bit weights that load "
                           "without PEFT) instead of the adapter alone.", Flag())


SECTIONS = {"model": ModelSection, "lora": LoraSection, "data": DataSection, "training": TrainingSection,
            "method": MethodSection, "hub": HubSection, "samples": SamplesSection}

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
    method: MethodSection = field(default_factory=MethodSection)
    lora: LoraSection = field(default_factory=LoraSection)
    data: DataSection = field(default_factory=DataSection)
    training: TrainingSection = field(default_factory=TrainingSection)
    hub: HubSection = field(default_factory=HubSection)
    samples: SamplesSection = field(default_factory=SamplesSection)
    # Further trl.SFTConfig / TrainingArguments keys the user gave, checked against those classes' fields.
    training_extra: dict = field(default_factory=dict)
    runner: RunnerSection = field(default_factory=RunnerSection)   # where it trains (finetune/runfile/runner.py)

    @classmethod
    def from_dict(cls, raw: Any) -> RunConfig:
        """Build and check a run from its parsed file; raises RunFileError listing every problem."""
        return check_run(cls, raw)

    def to_dict(self) -> dict:
        out = {name: dataclasses.asdict(getattr(self, name)) for name in SECTIONS}
        out["training"].update(self.training_extra)
        if (method := as_dict(self.method)) is None:
            del out["method"]   # an SFT run is written as it was before methods existed
        else:
            out["method"] = method
        if (runner := runner_dict(self.runner)) is not None:
            out["runner"] = runner
        return out

    def to_yaml(self) -> str:
        return dump_yaml(self.to_dict())


def load_run(path: str | Path) -> RunConfig:
    """Read, parse and check a run file."""
    return RunConfig.from_dict(read_file(path))


def parse_run(text: str) -> RunConfig:
    """Parse and check a run file's text (what the UI and the API take)."""
    return RunConfig.from_dict(parse_text(text))


def field_help(section: str, key: str) -> str:
    """The one documentation of a field, for UI help text and CLI help."""
    for f in dataclasses.fields(SECTIONS[section]):
        if f.name == key:
            return f.metadata["help"]
    raise KeyError(f"{section}.{key}")


def training_extra(key: str, value):
    """A training key TrainingSection does not declare: the allowlist decides, its fields feed the hint."""
    return check_training_extra(key, value, [f.name for f in dataclasses.fields(TrainingSection)])


def check_run(run_cls, raw: dict):
    """Every section built and checked, every problem collected; raises RunFileError listing them."""
    if not isinstance(raw, dict):
        raise RunFileError(f"run file: must be a mapping with sections {', '.join(SECTIONS)}, got {show(raw)}")
    problems: list[str] = []
    for key in raw:
        if key not in SECTIONS and key != "runner":
            problems.append(f"{key}: unknown section{did_you_mean(key, [*SECTIONS, 'runner'])}; "
                            f"the sections are {', '.join(SECTIONS)} (and runner)")
    built, extra = {}, {}
    for name, cls in SECTIONS.items():
        extra_ok = training_extra if name == "training" else None
        built[name], found = build_section(cls, name, raw.get(name), problems, extra_ok, UNSUPPORTED.get(name, ()))
        extra.update(found)
    run = run_cls(**built, training_extra=extra, runner=build_runner(raw.get("runner"), problems))
    # A rewards list refused above is left empty: "grpo needs at least one reward" would say it twice.
    refused = {p.split(":", 1)[0] for p in problems}
    problems += [p for p in cross_checks(run) + size_problems(run) if p.split(":", 1)[0] not in refused]
    if problems:
        raise RunFileError(problems)
    return run


def size_problems(run) -> list[str]:
    """The job writes the resolved run (every default filled in) to run.yaml and reads it back within the
    run-file limits: a file just under them, with one long list, would be accepted here and refused there."""
    resolved = run.to_dict()
    if count_values(resolved) <= MAX_NODES:
        return []
    size, name = max((count_values(v), f"{s}.{k}") for s, body in resolved.items() for k, v in body.items())
    return [f"{name}: {size:,} values; with the rest of the run (every default filled in) the run file would hold "
            f"more than {MAX_NODES:,}"]


def cross_checks(run) -> list[str]:
    """Rules that involve two fields."""
    out = []
    lora = run.lora
    if lora.layers_pattern is not None and lora.layers_to_transform is None:
        out.append("lora.layers_pattern: only means something with lora.layers_to_transform, which is not set")
    if lora.layers_to_transform is not None and lora.target_modules == ALL_LINEAR:
        out.append("lora.layers_to_transform: cannot be combined with target_modules all-linear (PEFT refuses "
                   "the pair); list the module names instead")
    elif lora.layers_to_transform is not None and isinstance(lora.target_modules, str):
        out.append("lora.layers_to_transform: cannot be combined with a regular expression in "
                   "lora.target_modules (PEFT ignores it there); list the module names instead")
    if run.training.max_steps == 0:
        out.append("training.max_steps: must be -1 (use num_train_epochs) or a whole number >= 1, got 0")
    out += settle(run.method) + data_problems(run.method.name, run.data.packing)
    out += strategy_problems(run) + evaluation_problems(run) + remote_problems(run)
    return out
