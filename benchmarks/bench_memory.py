"""The memory estimate (finetune.model.memory) against what really gets allocated.

    python benchmarks/bench_memory.py            # with CUDA: the GPU grid -> benchmarks/memory_measured.csv
    python benchmarks/bench_memory.py --cpu      # without: the static parts and kept activations, on the CPU
    python benchmarks/bench_memory.py --models Qwen2.5-0.5B gemma-2-2b --quick   # a smaller GPU grid
    python benchmarks/bench_memory.py --methods dpo kto orpo grpo [--quick]  # method rows (GPU; --cpu: demo)

On a GPU, each row is a real run of this project's training job (finetune.train.job, in this process: the same
loading, PEFT, TRL SFTTrainer and optimizer), 3 optimizer steps on examples longer than max_length (so every
sequence is max_length tokens, the estimate's assumption), on a model with random weights made from a
full-size public config (tests/tiny_configs.py FULL) and saved once under --cache. It records the peak of
torch.cuda.max_memory_allocated() (the allocator's own count: no CUDA context, no fragmentation) and the
estimate without its overhead term, which is what that peak stands for, and the relative error of each.
Until this CSV holds GPU rows, the activation term is unvalidated (README). With --methods, each model also
gets a row per method (finetune.model.passes: DPO/ORPO's chosen + rejected, the reference passes, GRPO's
generation), on data whose every sequence fills max_length (GRPO: prompts of max_length tokens, answers of
max_completion_length from a random-weight model that rarely ends them early).

On the CPU (no GPU here), it loads tiny models of several architectures the way the job does and prints, per
component, the estimate against the measured bytes (footprint + quantization constants, trainable tensors
after get_peft_model, gradients after a backward, optimizer state after a step, tensors kept for backward).
"""

from __future__ import annotations

import argparse
import csv
import gc
import json
import os
import sys
import tempfile
import time
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]
warnings.filterwarnings("ignore")
ALL7 = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
GPU_CSV = ROOT / "benchmarks" / "memory_measured.csv"
CPU_CSV = ROOT / "benchmarks" / "memory_static_cpu.csv"
FIELDS = ["model", "method", "quantization", "r", "batch", "max_length", "gradient_checkpointing", "measured", "estimated",
          "error_percent", "weights", "trainable", "gradients", "optimizer", "activations", "overhead", "seconds"]


# --- the GPU grid ----------------------------------------------------------------------------------------

def grid(models: list[str], quick: bool, methods: list[str] | None = None):
    """(model, method, quantization, r, batch, max_length, gradient checkpointing) rows: 1-8B models, r, batch,
    length, checkpointing on/off, 4-bit/16-bit; with methods, only the methods' rows (a shorter grid each)."""
    for model in models:
        for method in methods or []:
            for quant in ("4bit",) if quick else ("4bit", "none"):
                for gc_on in (True,) if quick else (True, False):
                    yield model, method, quant, 16, 2 if method != "grpo" else 4, 512, gc_on
        if methods:
            continue
        for quant in ("4bit", "none"):
            for gc_on in (True, False):
                for batch, length in ([(1, 1024)] if quick else [(1, 512), (1, 2048), (4, 512)]):
                    for r in ([16] if quick else [16, 64]):
                        yield model, "sft", quant, r, batch, length, gc_on


def model_folder(name: str, cache: Path) -> Path:
    """A full-size model with random weights (bf16) and the demo's tokenizer, made once."""
    import torch
    from tiny_configs import FULL
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    from finetune.demo import MODEL_DIR

    folder = cache / name
    if (folder / "config.json").is_file() and any(folder.glob("*.safetensors")):
        return folder
    config = AutoConfig.for_model(**FULL[name][0])
    with torch.device("cuda"):
        model = AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16)
    model.save_pretrained(folder)
    AutoTokenizer.from_pretrained(MODEL_DIR).save_pretrained(folder)
    del model
    torch.cuda.empty_cache()
    return folder


def data_file(cache: Path) -> Path:
    """Plain-text examples far longer than any max_length in the grid: every sequence is full."""
    path = cache / "long.jsonl"
    if not path.is_file():
        words = " ".join(f"word{i % 97} token{i % 13}" for i in range(6000))
        path.write_text("".join(json.dumps({"text": words}) + "\n" for _ in range(64)), encoding="utf-8")
    return path


METHOD_RUNS = {"dpo": {"name": "dpo"}, "kto": {"name": "kto"}, "orpo": {"name": "orpo"},
               "grpo": {"name": "grpo", "num_generations": 4, "max_completion_length": 256,
                        "rewards": [{"type": "contains", "text": "word1"}]}}


def method_data(cache: Path, method: str, folder: Path, length: int) -> Path:
    """The method's data shape, every sequence filling max_length: preference pairs and labelled answers of
    the long text; GRPO's prompts cut to exactly `length` tokens (TRL 1.16 does not truncate them)."""
    from transformers import AutoTokenizer

    path = cache / f"{method}-{length}.jsonl"
    if path.is_file():
        return path
    words = " ".join(f"word{i % 97} token{i % 13}" for i in range(6000))
    half = words[: len(words) // 2]
    if method == "grpo":
        tok = AutoTokenizer.from_pretrained(folder)
        rows = [{"prompt": tok.decode(tok(words)["input_ids"][:length], skip_special_tokens=True)}] * 64
    elif method == "kto":
        rows = [{"prompt": half, "completion": half, "label": i % 2 == 0} for i in range(64)]
    else:
        rows = [{"prompt": half, "chosen": half, "rejected": half[::-1]} for _ in range(64)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def gpu(args) -> None:
    import torch

    from finetune.model.count import count_run
    from finetune.model.memory import estimate, settings_of
    from finetune.runfile import RunConfig, dump_yaml
    from finetune.train.job import main as train

    cache = Path(args.cache)
    cache.mkdir(parents=True, exist_ok=True)
    rows = []
    for name, method, quant, r, batch, length, gc_on in grid(args.models, args.quick, args.methods):
        folder = model_folder(name, cache)
        out = Path(tempfile.mkdtemp(dir=cache))
        data = ({"path": str(data_file(cache)), "format": "text"} if method == "sft"
                else {"path": str(method_data(cache, method, folder, length))})
        raw = {"model": {"name_or_path": str(folder), "quantization": quant},
               "lora": {"r": r, "lora_alpha": r, "target_modules": ALL7}, "method": METHOD_RUNS.get(method, {}),
               "data": {**data, "max_length": length},
               "training": {"output_dir": str(out / "run"), "max_steps": 3, "per_device_train_batch_size": batch,
                            "gradient_accumulation_steps": 1, "gradient_checkpointing": gc_on,
                            "save_steps": 1000, "logging_steps": 1}}
        run = RunConfig.from_dict(raw)
        path = out / "run.yaml"
        path.write_text(dump_yaml(raw), encoding="utf-8")
        memory = estimate(count_run(run), settings_of(run))
        gc.collect()
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
        start = time.perf_counter()
        code = train(str(path))
        seconds = time.perf_counter() - start
        measured = torch.cuda.max_memory_allocated()
        gc.collect()
        torch.cuda.empty_cache()
        if code != 0:
            print(f"{name} {method} {quant} r={r} b={batch} s={length} gc={gc_on}: the job failed ({code}); see {out}")
            continue
        estimated = memory.total - memory.overhead
        row = dict(model=name, method=method, quantization=quant, r=r, batch=batch, max_length=length, gradient_checkpointing=gc_on,
                   measured=measured, estimated=estimated, error_percent=round(100 * (estimated - measured) / measured, 1),
                   **{k: getattr(memory, k) for k in ("weights", "trainable", "gradients", "optimizer", "activations",
                                                      "overhead")}, seconds=round(seconds, 1))
        rows.append(row)
        print(f"{name:16s} {method:4s} {quant:5s} r={r:<3} b={batch} s={length:<5} gc={int(gc_on)}  measured "
              f"{measured / 1e9:6.2f} GB  estimated {estimated / 1e9:6.2f} GB  ({row['error_percent']:+.1f}%)", flush=True)
    write(rows, Path(args.out or GPU_CSV))


# --- the CPU: static parts -------------------------------------------------------------------------------

CPU_CASES = [  # (architecture, quantization, dtype, lora)
    ("llama", "none", "bfloat16", {}), ("llama", "4bit", "bfloat16", {}), ("llama", "8bit", "bfloat16", {}),
    ("gemma2", "none", "bfloat16", {}), ("gemma2", "4bit", "bfloat16", {"modules_to_save": ["lm_head"]}),
    ("gpt2", "none", "float32", {}), ("gpt2", "4bit", "bfloat16", {}), ("qwen2", "4bit", "bfloat16", {"bias": "all"}),
    ("qwen3", "none", "bfloat16", {"use_dora": True}), ("phi3", "8bit", "bfloat16", {}),
    ("opt", "none", "bfloat16", {}), ("gpt_neox", "4bit", "bfloat16", {}),
]


def cpu_methods(methods: list[str]) -> None:
    """One measured step of each method's TRL trainer on the demo model (memory_probe.compare_method), beside
    the estimate for the shape that step had: kept activations, and the step's allocator peak against the
    estimate's activations + gradients."""
    import memory_probe as mp

    print(f"{'method':6s} {'kept measured':>14s} {'estimated':>10s} {'peak measured':>14s} {'estimated':>10s}")
    for method in methods:
        work = tempfile.mkdtemp()
        spec = {**METHOD_RUNS.get(method, {"name": method})}
        if method == "grpo":
            spec.update(max_completion_length=32, rewards=[{"type": "contains", "text": "helper"}])
        got = mp.compare_method(mp.method_run(spec, str(Path(work) / "run")), work)
        m = got["measured"]
        print(f"{method:6s} {m['saved']:>14,} {100 * (got['saved'] - m['saved']) / m['saved']:+9.1f}% "
              f"{m['peak']:>14,} {100 * (got['peak'] - m['peak']) / m['peak']:+9.1f}%", flush=True)


def cpu(args) -> None:
    if args.methods:
        cpu_methods(["sft", *args.methods])
        return
    import memory_probe as mp
    import torch
    from tiny_configs import TINY
    from transformers import AutoConfig, AutoModelForCausalLM

    from finetune.model.activations import activation_parts, layout
    from finetune.model.count import count_run
    from finetune.model.dtypes import CPU
    from finetune.model.loading import load_model
    from finetune.model.memory import estimate, settings_of
    from finetune.runfile import RunConfig

    root = Path(tempfile.mkdtemp())
    rows = []
    print(f"{'model':9s} {'quant':5s} {'dtype':8s}  " + "  ".join(f"{k:>18s}" for k in
          ("weights", "trainable", "gradients", "optimizer", "kept activations")))
    for arch, quant, dtype, lora in CPU_CASES:
        folder = root / arch
        if not folder.exists():
            torch.manual_seed(0)
            AutoModelForCausalLM.from_config(AutoConfig.for_model(**TINY[arch])).save_pretrained(folder)
        run = RunConfig.from_dict({"model": {"name_or_path": str(folder), "quantization": quant, "dtype": dtype},
                                   "lora": {"r": 8, "target_modules": "all-linear", **lora},
                                   "data": {"max_length": 64}, "training": {"per_device_train_batch_size": 1}})
        measured = {"weights": mp.weights_bytes(load_model(run.model, False))}
        model, _ = mp.prepare(run)
        optimizer = mp.build_optimizer(model, run)
        mp.add_job_loss(model)
        model.train()
        ids = torch.randint(3, 90, (1, 64))
        measured["kept activations"] = mp.saved_activation_bytes(model, ids, torch.ones_like(ids), mp.autocast_for(run))
        with mp.autocast_for(run):
            model(input_ids=ids, attention_mask=torch.ones_like(ids), labels=ids, fused_lm_head=True).loss.backward()
        optimizer.step()
        measured.update(trainable=mp.trainable_bytes(model), gradients=mp.gradient_bytes(model),
                        optimizer=mp.optimizer_bytes(optimizer))
        count = count_run(run)
        s = settings_of(run, CPU)
        memory = estimate(count, s)
        est = {k: getattr(memory, k) for k in ("weights", "trainable", "gradients", "optimizer")}
        est["kept activations"] = activation_parts(count, layout(count._skel), s)[0]
        cells = []
        for k in ("weights", "trainable", "gradients", "optimizer", "kept activations"):
            err = 100 * (est[k] - measured[k]) / measured[k]
            cells.append(f"{measured[k]:>9,} {err:+6.1f}%")
            rows.append(dict(model=arch, quantization=quant, dtype=dtype, lora=json.dumps(lora), component=k,
                             measured=measured[k], estimated=est[k], error_percent=round(err, 2)))
        print(f"{arch:9s} {quant:5s} {dtype:8s}  " + "  ".join(f"{c:>18s}" for c in cells), flush=True)
    with open(args.out or CPU_CSV, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    print(f"\nwritten: {args.out or CPU_CSV}")


def write(rows: list[dict], path: Path) -> None:
    if not rows:
        return
    new = not path.is_file()
    with open(path, "a", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=FIELDS)
        if new:
            writer.writeheader()
        writer.writerows(rows)
    print(f"\nappended {len(rows)} rows to {path}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cpu", action="store_true", help="measure the static parts on the CPU (default without CUDA)")
    parser.add_argument("--models", nargs="+", default=["Qwen2.5-0.5B", "gemma-2-2b", "Phi-3-mini-4k",
                                                         "Meta-Llama-3-8B"])
    parser.add_argument("--quick", action="store_true", help="one length, one rank per model")
    parser.add_argument("--methods", nargs="*", choices=["dpo", "kto", "orpo", "grpo"],
                        help="rows per method (on the CPU: one step of each on the demo model)")
    parser.add_argument("--cache", default=os.environ.get("FINETUNE_BENCH_CACHE", "/tmp/finetune-bench-memory"),
                        help="where the random-weight models and the data are kept")
    parser.add_argument("--out", help="the CSV to write (default benchmarks/memory_measured.csv on a GPU)")
    args = parser.parse_args()
    import torch

    if args.cpu or not torch.cuda.is_available():
        cpu(args)
    else:
        gpu(args)


if __name__ == "__main__":
    main()
