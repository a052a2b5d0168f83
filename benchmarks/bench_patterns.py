"""What matching a user's regular expressions costs the live count: the demo model and a 32-layer Llama
skeleton (Meta-Llama-3-8B's config), with regexes of the kind a user types.

    python benchmarks/bench_patterns.py

Columns, in milliseconds (median of --repeat):
  cached   one more count with the same patterns, moving r (what a slider does)
  new      a count with patterns never matched before in this process: the skeleton's memo and the
           pattern cache (finetune.model.patterns, where it exists) are emptied first
The first count of each model (config.json, meta build) is done before timing and not shown.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

CASES = {
    "targets .*\\.(q_proj|v_proj)": {"target_modules": r".*\.(q_proj|v_proj)"},
    "targets model.layers.\\d+.self_attn.(q|k|v)_proj": {"target_modules": r"model.layers.\d+.self_attn.(q|k|v)_proj"},
    "list + rank_pattern {q_proj: 4, .*v_proj: 8}": {"target_modules": ["q_proj", "v_proj"],
                                                      "rank_pattern": {"q_proj": 4, r".*v_proj": 8}},
    "list + modules_to_save [lm_head]": {"target_modules": ["q_proj", "v_proj"], "modules_to_save": ["lm_head"]},
    "list, no regex": {"target_modules": ["q_proj", "v_proj"]},
}


def forget(skel) -> None:
    skel.memo.clear()
    try:
        from finetune.model import patterns
    except ImportError:   # before the pattern module existed
        return
    patterns.forget()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=41)
    args = parser.parse_args()

    from tiny_configs import FULL, write_config

    from finetune.model import architecture
    from finetune.model.count import count_run
    from finetune.runfile import RunConfig

    llama = str(write_config(Path(tempfile.mkdtemp()) / "llama", FULL["Meta-Llama-3-8B"][0]))
    print(f"{'model':<10}{'case':<52}{'cached':>9}{'new':>9}{'trainable':>14}")
    for model in ("demo", llama):
        skel = architecture.inspect_model(model)
        for case, lora in CASES.items():
            runs = [RunConfig.from_dict({"model": {"name_or_path": model}, "lora": {**lora, "r": r}})
                    for r in range(1, args.repeat + 2)]
            trainable = count_run(runs[0]).trainable
            cached, new = [], []
            for run in runs[1:]:
                start = time.perf_counter()
                count_run(run)
                cached.append(time.perf_counter() - start)
                forget(skel)
                start = time.perf_counter()
                count_run(run)
                new.append(time.perf_counter() - start)
            label = "demo" if model == "demo" else "llama-32"
            print(f"{label:<10}{case:<52}{statistics.median(cached) * 1000:9.2f}"
                  f"{statistics.median(new) * 1000:9.2f}{trainable:>14,}")


if __name__ == "__main__":
    main()
