"""What benchmarks/bench_gpu.py reads back from each row's process: the times, tokens/s and peak in its log
(`measure`), the estimate of one `finetune count --json` for every row (`add_estimates`), and the printed table
with the ratios of each pair (`summary`). bench_gpu.py puts the project on sys.path before importing this."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

from gpu_plan import BASELINES, OURS, PAIRED, Row

ROOT = Path(__file__).resolve().parents[2]


def measure(row: Row, log: Path, out: Path, code: int | None, wall: float) -> None:
    text = log.read_text(errors="replace")
    trained = re.findall(r"trained: (\d+) steps in ([\d.]+) s", text)
    peak = re.findall(r"peak_allocated: (\d+)", text)
    flat = re.findall(r"^batches: \d+ of \d+ padding-free", text, re.M)   # what the job laid flat (train.log)
    # The first step's loss: the same data, seed and LoRA give the same number on both sides.
    first = re.findall(r"step 1/\d+\s+loss ([\d.]+)" if row.side in OURS else r"'loss': '?([\d.]+)", text)
    steps, train_s = (int(trained[-1][0]), float(trained[-1][1])) if trained else (0, None)
    if row.side in OURS and (out / "run" / "status.json").is_file():
        state = json.loads((out / "run" / "status.json").read_text()).get("state")
    else:
        state = "completed" if code == 0 and steps else None
    tokens = row.result.get("tokens") or steps * row.batch * row.max_length   # ragged rows: counted beforehand
    ok = code == 0 and steps == row.steps and state == "completed"
    row.result.update(status="ok" if ok else ("timeout" if code is None else f"failed (exit {code}, {state})"),
                      wall_s=round(wall, 2), train_s=train_s, setup_s=round(wall - train_s, 2) if train_s else None,
                      tokens=tokens, tokens_per_s=round(tokens / train_s, 1) if train_s else None,
                      first_loss=float(first[0]) if first else None,
                      peak_allocated=int(peak[-1]) if peak else None,
                      note="; ".join([*flat[-1:], f"log: {log}"]))


def add_estimates(rows: list[Row], files: dict[int, Path], timeout: float) -> None:
    """One `finetune count --json` for every row that ran: memory.total and its error against the peak."""
    if not files:
        return
    cmd = [sys.executable, "-m", "finetune", "count", *map(str, files.values()), "--json"]
    try:
        done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=max(timeout, 5),
                              env=dict(os.environ, PYTHONPATH=os.pathsep.join(
                                  [str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])])))
    except subprocess.TimeoutExpired:
        print("count: timed out; no estimates", flush=True)
        return
    by_file = {}
    for line in done.stdout.splitlines():
        if line.startswith("{"):
            item = json.loads(line)
            by_file[item["config"]] = item.get("memory")
    for i, path in files.items():
        memory, row = by_file.get(str(path)), rows[i]
        if not memory:
            continue
        row.result.update(estimate_total=memory["total"], estimate_overhead=memory["overhead"])
        if row.result.get("peak_allocated"):
            peak = row.result["peak_allocated"]
            row.result["estimate_error_percent"] = round(100 * (memory["total"] - memory["overhead"] - peak) / peak, 1)


def summary(rows: list[Row]) -> None:
    def gb(x):
        return f"{x / 1e9:7.2f}" if x else "      -"

    def num(x, fmt):
        return format(x, fmt) if isinstance(x, (int, float)) else "-"

    print(f"\n{'kind':11s} {'model':16s} {'side':12s} {'quant':5s} gc {'wall s':>7s} {'train s':>7s} {'setup s':>7s} "
          f"{'tokens/s':>9s} {'peak GB':>7s} {'est GB':>7s} {'est err':>7s}  status")
    for row in rows:
        r = row.result
        if row.kind == "build":
            print(f"{'build':11s} {row.model:16s} {'':12s} {'':5s}    {num(r.get('wall_s'), '7.1f'):>7s}  "
                  f"{r.get('note', '')}  {r['status']}")
            continue
        err = r.get("estimate_error_percent")
        print(f"{row.kind:11s} {row.model:16s} {row.side:12s} {row.quantization:5s} {int(row.gradient_checkpointing):2d} "
              f"{num(r.get('wall_s'), '7.1f'):>7s} {num(r.get('train_s'), '7.1f'):>7s} {num(r.get('setup_s'), '7.1f'):>7s} "
              f"{num(r.get('tokens_per_s'), '9,.0f'):>9s} {gb(r.get('peak_allocated'))} {gb(r.get('estimate_total'))} "
              f"{(f'{err:+.1f}%' if err is not None else '-'):>7s}  {r['status']}")
    pairs: dict[str, dict[str, dict]] = {}
    for row in rows:
        if row.kind in PAIRED and row.result.get("status") == "ok":
            pairs.setdefault(row.pair, {})[row.side] = row.result
    print("\nfinetune train against plain TRL (above 1.00x: finetune is faster):")
    for name, sides in pairs.items():
        for (side, ours), baseline in ((s, b) for s in sides.items() for b in BASELINES):
            plain = sides.get(baseline)
            if plain is None or side not in OURS:
                continue
            label = (name if side == "finetune" else f"{name} with {side}") + (
                " vs TRL's defaults (checkpointing on)" if baseline == "trl_defaults" else "")
            memory = (f", peak memory {ours['peak_allocated'] / plain['peak_allocated']:.2f}x"
                      if ours.get("peak_allocated") and plain.get("peak_allocated") else "")
            print(f"  {label}: tokens/s in train() {ours['tokens_per_s'] / plain['tokens_per_s']:.2f}x, whole "
                  f"process {plain['wall_s'] / ours['wall_s']:.2f}x (set-up around train(): {ours['setup_s']:.1f} s "
                  f"against {plain['setup_s']:.1f} s){memory}")
