"""benchmarks/bench_gpu.py's plan: its rows, most wanted first, and how long each is expected to take (so the
script runs only what fits the GPU time it has). bench_gpu.py puts the project, tests/ and benchmarks/ on
sys.path before importing this (tiny_configs, bench_memory)."""

from __future__ import annotations

from dataclasses import dataclass, field

FIELDS = ["kind", "model", "side", "pair", "quantization", "r", "batch", "max_length", "steps",
          "gradient_checkpointing", "status", "wall_s", "train_s", "setup_s", "tokens", "tokens_per_s", "first_loss",
          "peak_allocated", "estimate_total", "estimate_overhead", "estimate_error_percent", "device", "note"]


@dataclass
class Row:
    kind: str            # speed | ragged | qlora | memory_grid | build
    model: str           # a FULL name of tests/tiny_configs.py
    side: str            # finetune | liger (finetune with use_liger_kernel) | plain_trl | trl_defaults (plain_trl
                         # with TRL's default gradient checkpointing) (build: the model folder)
    pair: str = ""       # rows compared with each other share it
    quantization: str = "none"
    r: int = 16
    batch: int = 4
    max_length: int = 1024
    steps: int = 25
    gradient_checkpointing: bool = False
    result: dict = field(default_factory=dict)   # status, wall_s... (FIELDS)

    def csv(self, device: str) -> dict:
        shape = FIELDS[:4] if self.kind == "build" else FIELDS[:10]   # a model folder has no batch or steps
        return {**{k: getattr(self, k) for k in shape}, "device": device, **self.result}


@dataclass(frozen=True)
class Profile:
    """What the plan expects, in seconds, a little above what the H200 took on 2026-12-04 (set-up around train()
    19-27 s on either side for 1 or 16 GB of weights; 8B: 0.9 GB/s to save, 8,000 tokens/s; a 0.5B step 0.3-0.5 s).
    The plan is rescaled by how long the finished rows really took."""
    reserve_s: float       # kept for the count at the end and the CSV
    start: dict            # imports, data, tokenizer: per side
    load_s_per_gb: dict    # reading the weights and placing them: per side
    quant_s_per_gb: float  # quantizing them to 4-bit as they load
    build_s: float
    build_s_per_gb: float  # random initialization and save_pretrained
    flops: float           # FLOP/s a LoRA step gets (6 x parameters x tokens, conservatively)
    step_s: float          # each step's fixed cost


GPU = Profile(20, {"finetune": 24, "liger": 27, "plain_trl": 24, "trl_defaults": 24},
              {"finetune": 0.5, "liger": 0.5, "plain_trl": 0.5, "trl_defaults": 0.5}, 0.4, 15, 1.5, 0.4 * 790e12, 0.45)
CPU = Profile(5, {"finetune": 12, "liger": 12, "plain_trl": 12, "trl_defaults": 12},
              {"finetune": 0, "liger": 0, "plain_trl": 0, "trl_defaults": 0}, 0, 8, 0, 1e9, 1.5)
# liger's 27 s start is a guess (finetune's plus Triton compiling its kernels): never measured yet; the plan
# rescales by what the finished rows really took.
OURS = ("finetune", "liger")   # the sides that run `finetune train`
BASELINES = ("plain_trl", "trl_defaults")   # the sides that run plain_trl.py
PAIRED = ("speed", "ragged", "qlora")   # the kinds run as pairs: `finetune train` against plain TRL


def params(model: str) -> int:
    from tiny_configs import FULL
    return FULL[model][1]


def estimate_s(row: Row, p: Profile, smoke: bool) -> float:
    gb = 0 if smoke else 2 * params(row.model) / 1e9   # bf16 weights
    if row.kind == "build":
        return p.build_s + gb * p.build_s_per_gb
    flops = 6 * (1 if smoke else params(row.model)) * row.batch * row.max_length
    per_step = p.step_s + flops / p.flops * (1.35 if row.gradient_checkpointing else 1) * (
        1.7 if row.quantization == "4bit" else 1)
    quant = gb * p.quant_s_per_gb if row.quantization == "4bit" else 0
    return p.start[row.side] + gb * p.load_s_per_gb[row.side] + quant + row.steps * per_step + 3


def plan(args) -> list[Row]:
    """The rows, most wanted first: the speed pairs, the ragged-data pairs, the QLoRA pair, then the memory
    grid."""
    from bench_memory import grid

    rows: list[Row] = []
    shape = dict(batch=args.batch, max_length=args.length, steps=args.steps)

    def pair(kind: str, model: str, quant: str, rep: int) -> None:
        # --kernels: Liger's Triton kernels are one of issue 19's levers; measured beside the pair, never assumed.
        # --trl-defaults: plain TRL as a user who sets nothing trains it (SFTConfig turns checkpointing on).
        speed = kind == "speed"
        sides = ["finetune", *(["liger"] if args.kernels and speed else []), "plain_trl",
                 *(["trl_defaults"] if args.trl_defaults and speed else [])]
        n = sum(1 for r in rows if r.side == "finetune" and r.kind in PAIRED)
        for side in sides if n % 2 == 0 else sides[::-1]:   # alternate which goes first
            rows.append(Row(kind, model, side, f"{kind}-{model}-{quant}-{rep}", quant, **shape,
                            gradient_checkpointing=side == "trl_defaults"))

    for rep in range(args.reps):
        for model in args.models:
            pair("speed", model, "none", rep)
        for model in args.ragged_models:
            pair("ragged", model, "none", rep)
        for model in args.qlora_models:
            pair("qlora", model, "4bit", rep)
    grid_rows = []
    for item in grid(args.grid_models, quick=True):
        *head, quant, r, batch, length, gc_on = item   # (model, [method,] quantization, r, batch, length, gc)
        if head[1:] in ([], ["sft"]):
            grid_rows.append((head[0], quant, r, batch, length, gc_on))
    if args.smoke:   # one row of the grid, in the smoke's small shape (4-bit needs CUDA)
        grid_rows = [g for g in grid_rows if g[1] == "none"][:1]
    for model, quant, r, batch, length, gc_on in grid_rows:
        if args.smoke:
            batch, length = min(batch, args.batch), args.length
        rows.append(Row("memory_grid", model, "finetune", f"grid-{model}-{quant}-{r}-{batch}-{length}-{gc_on}",
                        quant, r, batch, length, 2 if args.smoke else 3, gc_on))
    return rows
