"""`finetune train` against plain TRL on a GPU, and the memory estimate against measured peaks (issue 19).

    python benchmarks/bench_gpu.py [--budget-s 540] [--out benchmarks/gpu_results.csv] [--reps 1]
    python benchmarks/bench_gpu.py --dry-run     # the plan and its estimated time, nothing run
    python benchmarks/bench_gpu.py --smoke       # the same code paths on the CPU: tiny configs, 2 steps

On the lent GPU machine, with the project's wheels carried along: benchmarks/gpu/README.md says how.

Models: random weights from the FULL configs of tests/tiny_configs.py, made on the GPU itself (no downloads) and
saved once under --cache (config.json, safetensors, the demo's tokenizer: bench_memory.py's layout, so either
script reuses the other's). Rows, most wanted first, each run only while the time left fits its estimate:
  speed        `python -m finetune train RUN` and benchmarks/gpu/plain_trl.py (TRL's SFTTrainer written by hand)
               as whole processes, alternating which goes first: LoRA r=16 on the seven projections, bf16,
               batch 4 x 1024 tokens (plain text longer than that, truncated: every step is 4,096 tokens),
               25 steps, fused AdamW, no gradient checkpointing on either side (TRL's own default is on:
               --trl-defaults adds plain TRL with it, as a user who never sets it trains)
  ragged       the speed pair on ragged text (bench_batches.py's: examples of 1/8 to all of 1024 tokens, spread
               evenly): where the job lays batches flat (train/batches.py) and plain TRL pads them; tokens/s
               counts the real tokens, the same on both sides
  qlora        the same pair with the base model in 4-bit NF4 (the 8B case)
  memory_grid  bench_memory.grid()'s rows (quick: batch 1 x 1024, 4-bit and bf16, checkpointing on and off),
               3 steps of `finetune train` on bench_memory.data_file()
Each row records the whole process's wall time, the time inside trainer.train() (both sides print it),
tokens/s inside it, torch.cuda.max_memory_allocated() (plain_trl.py prints it; gpu/peak.py prints it as
`finetune train` exits) and the estimate of `python -m finetune count RUN --json` (memory.total, and its error
against the peak without the overhead term, as bench_memory.py reports it). One CSV row per measurement.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests"), str(ROOT / "benchmarks")]
GPU_DIR = ROOT / "benchmarks" / "gpu"
ALL7 = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
sys.path.insert(0, str(GPU_DIR))
from gpu_plan import CPU, FIELDS, GPU, OURS, PAIRED, Profile, Row, estimate_s, plan  # noqa: E402
from gpu_report import add_estimates, measure, summary  # noqa: E402

# --- the pieces each row runs -----------------------------------------------------------------------------

def model_dir(model: str, cache: Path, smoke: bool) -> Path:
    return cache / (f"tiny-{model}" if smoke else model)


def is_built(folder: Path) -> bool:
    return (folder / "config.json").is_file() and any(folder.glob("*.safetensors"))


def build(model: str, cache: Path, smoke: bool) -> None:
    """(`--build MODEL`, in its own process) random weights from the config, made on the GPU (the CPU in the
    smoke), saved with the demo's tokenizer; prints one JSON line: the seconds to make and to save, the bytes."""
    import torch
    from tiny_configs import FULL, TINY
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    from finetune.demo import MODEL_DIR

    config = dict(FULL[model][0])
    tokenizer = AutoTokenizer.from_pretrained(MODEL_DIR)
    if smoke:   # the tiny architecture, with room for the demo tokenizer's ids
        config = dict(TINY[config["model_type"]], vocab_size=len(tokenizer))
    folder = model_dir(model, cache, smoke)
    start = time.perf_counter()
    torch.manual_seed(0)
    with torch.device("cpu" if smoke else "cuda"):
        weights = AutoModelForCausalLM.from_config(AutoConfig.for_model(**config),
                                                   dtype=torch.float32 if smoke else torch.bfloat16)
    if not smoke:
        torch.cuda.synchronize()
    made = time.perf_counter()
    weights.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    saved = time.perf_counter()
    size = sum(f.stat().st_size for f in folder.glob("*.safetensors"))
    print(json.dumps({"make_s": round(made - start, 1), "save_s": round(saved - made, 1), "bytes": size}))


def text_data(cache: Path, length: int, examples: int) -> Path:
    """Plain text longer than `length` tokens of the demo's tokenizer (about 8 tokens a pair of words), one
    example per sequence of the run: no epoch ends inside it, and every step trains batch x length tokens."""
    path = cache / f"text-{length}-{examples}.jsonl"
    if not path.is_file():
        words = " ".join(f"word{i % 97} token{i % 13}" for i in range(length // 6 + 16))
        path.write_text("".join(json.dumps({"text": words}) + "\n" for _ in range(examples)), encoding="utf-8")
    return path


def ragged_data(cache: Path, length: int, examples: int) -> Path:
    """bench_batches.py's ragged text: `examples` examples of length/8 to length tokens, one per sequence of the
    run (so every example trains exactly once, in the order the seed shuffles them)."""
    from bench_batches import ragged_text

    path = cache / f"ragged-{length}-{examples}.jsonl"
    if not path.is_file():
        ragged_text(path, examples, max(length // 8, 1), length, even=False)
    return path


def real_tokens(data: Path, folder: Path, length: int) -> int:
    """The tokens a run over all of `data` trains: each text as the model's tokenizer reads it, plus the EOS
    TRL appends, truncated to `length`. Both sides of a pair train the same ones."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(folder)
    texts = [json.loads(line)["text"] for line in data.read_text(encoding="utf-8").splitlines() if line.strip()]
    return sum(min(len(ids) + 1, length) for ids in tokenizer(texts)["input_ids"])


def run_file(row: Row, folder: Path, data: Path, out: Path) -> Path:
    """The run file of `finetune train` for a row; the plain side's row gets one too, for the estimate."""
    raw = {"model": {"name_or_path": str(folder), "quantization": row.quantization},
           "lora": {"r": row.r, "lora_alpha": row.r, "lora_dropout": 0.0, "target_modules": ALL7},
           "data": {"path": str(data), "format": "text", "max_length": row.max_length, "packing": False},
           "training": {"output_dir": str(out / "run"), "max_steps": row.steps, "per_device_train_batch_size":
                        row.batch, "gradient_accumulation_steps": 1, "learning_rate": 2.0e-4, "lr_scheduler_type":
                        "linear", "warmup_steps": 0, "weight_decay": 0.0, "max_grad_norm": 1.0, "optim":
                        "adamw_torch_fused", "gradient_checkpointing": row.gradient_checkpointing,
                        "logging_steps": 1, "save_steps": 100_000, "seed": 42}}
    if row.side == "liger":
        raw["training"]["use_liger_kernel"] = True
    out.mkdir(parents=True, exist_ok=True)
    path = out / "run.json"
    path.write_text(json.dumps(raw, indent=1), encoding="utf-8")
    return path


def command(row: Row, folder: Path, data: Path, out: Path) -> list[str]:
    if row.side in OURS:
        return [sys.executable, str(GPU_DIR / "peak.py"), "-m", "finetune", "train", str(out / "run.json")]
    return [sys.executable, str(GPU_DIR / "plain_trl.py"), str(folder), str(data), str(out / "run"), "--steps",
            str(row.steps), "--batch", str(row.batch), "--length", str(row.max_length), "--quantization",
            row.quantization, *(["--trl-defaults"] if row.side == "trl_defaults" else
                                ["--gradient-checkpointing"] if row.gradient_checkpointing else [])]


def timed(cmd: list[str], log: Path, timeout: float, cache: Path) -> tuple[int | None, float]:
    """(exit code, None when killed at the timeout; wall seconds) of one whole process, output to `log`."""
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", HF_DATASETS_CACHE=str(cache / "datasets"),
               PYTHONPATH=os.pathsep.join([str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])]))
    start = time.perf_counter()
    with log.open("w") as f:
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=f, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            code: int | None = proc.wait(timeout=max(timeout, 1))
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)   # its own session: the job and anything it started
            proc.wait()
            code = None
    return code, time.perf_counter() - start


# --- the run ---------------------------------------------------------------------------------------------

def pair_rest(rows: list[Row], n: int, profile: Profile, smoke: bool) -> float:
    """The estimated seconds of the rows after rows[n] in its pair: one side alone compares with nothing, so a
    pair starts only where all of it fits."""
    row = rows[n]
    if row.kind not in PAIRED:
        return 0.0
    return sum(estimate_s(r, profile, smoke) for r in rows[n + 1:] if r.pair == row.pair)


def show_plan(rows: list[Row], profile: Profile, args) -> None:
    built: set[str] = set()
    total = 0.0
    print(f"plan (budget {args.budget_s:.0f} s, {profile.reserve_s:.0f} s of it kept for the count and the CSV):", flush=True)
    for n, row in enumerate(rows):
        need = estimate_s(row, profile, args.smoke)
        if row.model not in built and not is_built(model_dir(row.model, Path(args.cache), args.smoke)):
            need += estimate_s(Row("build", row.model, "build"), profile, args.smoke)
        built.add(row.model)
        total += need
        whole = total + pair_rest(rows, n, profile, args.smoke)   # a pair runs whole or not at all
        fits = "" if whole + profile.reserve_s <= args.budget_s else "   <- past the budget: skipped unless time is left"
        print(f"  {row.kind:11s} {row.model:16s} {row.side:12s} {row.quantization:4s} b={row.batch} "
              f"s={row.max_length} gc={int(row.gradient_checkpointing)} {row.steps:2d} steps  ~{need:5.0f} s  "
              f"(total ~{total:5.0f} s){fits}", flush=True)


def run_all(rows: list[Row], args, profile: Profile) -> list[Row]:
    cache = Path(args.cache)
    begin = time.perf_counter()
    spent = planned = 0.0   # seconds taken and estimated by what finished: the plan's scale

    def fits(need: float) -> bool:
        scale = max(0.5, spent / planned) if planned else 1.0   # a row past its time is killed: no overrun
        return time.perf_counter() - begin + need * scale + profile.reserve_s <= args.budget_s

    def left() -> float:
        return args.budget_s - profile.reserve_s - (time.perf_counter() - begin)

    built: dict[str, Row] = {}
    done: list[Row] = []
    files: dict[int, Path] = {}
    for n, row in enumerate(rows):
        need = estimate_s(row, profile, args.smoke)
        build_row = built.get(row.model) or Row("build", row.model, "build", "build")
        folder = model_dir(row.model, cache, args.smoke)
        if row.model not in built and not is_built(folder):
            need += estimate_s(build_row, profile, args.smoke)
        first_of_pair = not any(r.pair == row.pair for r in done)
        if not fits(need + (pair_rest(rows, n, profile, args.smoke) if first_of_pair else 0)):
            row.result["status"] = "skipped: does not fit in --budget-s"
        elif any(r.pair == row.pair and r.result.get("status", "").startswith("skipped") for r in done):
            row.result["status"] = "skipped: the rest of its pair was"
        if row.result.get("status"):
            print(f"[{time.perf_counter() - begin:5.0f} s] {row.kind} {row.model} {row.side}: {row.result['status']}",
                  flush=True)
            done.append(row)
            continue
        if row.model not in built:
            built[row.model] = build_row
            done.append(build_row)
            log = cache / f"build-{row.model}.log"
            if is_built(folder):
                build_row.result.update(status="ok", note=f"already in {folder}")
            else:
                est = estimate_s(build_row, profile, args.smoke)
                code, wall = timed([sys.executable, __file__, "--build", row.model, "--cache", str(cache),
                                    *(["--smoke"] if args.smoke else [])], log, left(), cache)
                spent, planned = spent + wall, planned + est
                made = [json.loads(x) for x in log.read_text().splitlines() if x.startswith('{"make_s"')]
                build_row.result.update(status="ok" if code == 0 and made else f"failed (exit {code})", wall_s=round(wall, 1),
                                        note=f"make {made[0]['make_s']} s, save {made[0]['save_s']} s, "
                                             f"{made[0]['bytes'] / 1e9:.2f} GB" if made else f"log: {log}")
                print(f"[{time.perf_counter() - begin:5.0f} s] built {row.model}: {build_row.result['note']} "
                      f"({wall:.0f} s in all)", flush=True)
        if build_row.result["status"] != "ok":
            row.result["status"] = "skipped: the model was not built"
            done.append(row)
            continue
        if row.kind == "memory_grid" and not args.smoke:   # (3M tokens to read: minutes on two cores)
            from bench_memory import data_file
            data = data_file(cache)
        elif row.kind == "ragged":
            data = ragged_data(cache, row.max_length, row.steps * row.batch)
            row.result["tokens"] = real_tokens(data, folder, row.max_length)
        else:
            data = text_data(cache, row.max_length, max(row.steps * row.batch, 8))
        out = cache / "runs" / f"{n:02d}-{row.kind}-{row.model}-{row.side}"
        files[len(done)] = run_file(row, folder, data, out)
        log = out.parent / f"{out.name}.log"
        code, wall = timed(command(row, folder, data, out), log, left(), cache)
        spent, planned = spent + wall, planned + estimate_s(row, profile, args.smoke)
        measure(row, log, out, code, wall)
        done.append(row)
        r = row.result
        print(f"[{time.perf_counter() - begin:5.0f} s] {row.kind} {row.model} {row.side} {row.quantization}: "
              f"{r['status']}  wall {wall:.1f} s  in train() {r['train_s'] or float('nan'):.1f} s  "
              f"{r['tokens_per_s'] or 0:,.0f} tokens/s  peak {(r['peak_allocated'] or 0) / 1e9:.2f} GB", flush=True)
    add_estimates(done, files, args.budget_s - (time.perf_counter() - begin) - 5)
    return done


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="on the CPU: tiny configs, 2 steps, batch 2 x 32")
    parser.add_argument("--budget-s", type=float, default=None, help="seconds for the whole script; rows that "
                        "would not fit are skipped (default 540; 60 with --smoke)")
    parser.add_argument("--out", help="the CSV (default benchmarks/gpu_results.csv; with --smoke, in --cache)")
    parser.add_argument("--cache", default=os.environ.get("FINETUNE_BENCH_CACHE", "/tmp/finetune-bench-memory"),
                        help="model folders, data, run folders and logs (bench_memory.py's default: shared)")
    parser.add_argument("--models", nargs="*", help="speed pairs (Meta-Llama-3-8B Qwen2.5-0.5B; the smoke: "
                        "the first)")
    parser.add_argument("--ragged-models", nargs="*", help="pairs on ragged text (Meta-Llama-3-8B; the smoke: "
                        "the first of --models)")
    parser.add_argument("--qlora-models", nargs="*", help="4-bit pairs (Meta-Llama-3-8B)")
    parser.add_argument("--grid-models", nargs="*", help="bench_memory.grid(quick=True) rows of `finetune train` "
                        "(Qwen2.5-0.5B Meta-Llama-3-8B; the smoke: one row); name none to leave a kind out")
    parser.add_argument("--reps", type=int, default=1, help="the pairs, each in the other order")
    parser.add_argument("--kernels", action="store_true", help="a third row in each speed pair: finetune train "
                        "with use_liger_kernel (the liger-kernel wheel carried: gpu/fetch_wheels.py)")
    parser.add_argument("--trl-defaults", action="store_true", help="a further row in each speed pair: plain "
                        "TRL with SFTConfig's own default, gradient checkpointing on (what a user who sets nothing "
                        "runs; the job's default is off)")
    parser.add_argument("--steps", type=int)
    parser.add_argument("--batch", type=int)
    parser.add_argument("--length", type=int)
    parser.add_argument("--dry-run", action="store_true", help="print the plan only")
    parser.add_argument("--build", metavar="MODEL", help=argparse.SUPPRESS)   # the model-making child process
    args = parser.parse_args()
    if args.build:
        build(args.build, Path(args.cache), args.smoke)
        return
    smoke = args.smoke
    args.steps = args.steps or (2 if smoke else 25)
    args.batch = args.batch or (2 if smoke else 4)
    args.length = args.length or (32 if smoke else 1024)
    args.budget_s = args.budget_s or (60 if smoke else 540)
    if args.models is None:
        args.models = ["Meta-Llama-3-8B"] if smoke else ["Meta-Llama-3-8B", "Qwen2.5-0.5B"]
    if args.ragged_models is None:
        args.ragged_models = args.models[:1] if smoke else ["Meta-Llama-3-8B"]
    if args.qlora_models is None:
        args.qlora_models = args.models[:1] if smoke else ["Meta-Llama-3-8B"]
    if args.grid_models is None:
        args.grid_models = args.models[:1] if smoke else ["Qwen2.5-0.5B", "Meta-Llama-3-8B"]
    import torch

    cuda = torch.cuda.is_available()
    if not smoke and not cuda and not args.dry_run:
        sys.exit("no GPU here: run with --smoke, or on the lent machine (benchmarks/gpu/README.md)")
    profile = CPU if smoke else GPU
    rows = plan(args)
    show_plan(rows, profile, args)
    if args.dry_run:
        return
    Path(args.cache).mkdir(parents=True, exist_ok=True)
    from importlib.metadata import version
    device = torch.cuda.get_device_name() if cuda else "cpu"
    versions = "  ".join(f"{p} {version(p)}" for p in ("torch", "transformers", "peft", "trl", "datasets", "accelerate"))
    print(f"device: {device}; {versions}", flush=True)
    done = run_all(rows, args, profile)
    out = Path(args.out or (Path(args.cache) / "gpu_smoke.csv" if smoke else ROOT / "benchmarks" / "gpu_results.csv"))
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=FIELDS)
        writer.writeheader()
        writer.writerows(row.csv(device) for row in done)
    summary(done)
    print(f"\nwritten: {out}", flush=True)


if __name__ == "__main__":
    main()
