"""How long a parameter count takes: LoRA Launchpad's closed form against PEFT's get_peft_model, both on the
meta device (no weights), for full-size configs.

    python benchmarks/bench_count.py            # Llama-3-70B, Llama-3-8B, Qwen2.5-0.5B, gpt2

Columns, in milliseconds:
  first      the first count of a model in this process: read config.json, build on meta, walk, match, add up
             (torch and transformers already imported; the architecture's modeling module too, after the
             first model of that family: `first*` marks a model whose family was imported inside the timing)
  cached     one more count of the same model, moving r (what a slider does): median of 200
  new target a count with target_modules never counted before (matching redone on the cached
             skeleton): median of 21, over all-linear, [q_proj, v_proj] and the four attention projections
  peft       build on meta + get_peft_model(low_cpu_mem_usage=True) + get_nb_trainable_parameters: median of 3
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]
warnings.filterwarnings("ignore")

MODELS = ["Meta-Llama-3-70B", "Meta-Llama-3-8B", "Qwen2.5-0.5B", "gpt2"]
TARGETS = ["all-linear", ["q_proj", "v_proj"], ["q_proj", "k_proj", "v_proj", "o_proj"]]


def ms(seconds: float) -> str:
    return f"{seconds * 1000:9.2f}"


def timed(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    start = time.perf_counter()
    import torch
    import transformers  # noqa: F401
    print(f"import torch + transformers: {time.perf_counter() - start:.2f} s (once per process, not counted)")

    from tiny_configs import FULL, write_config

    from finetune.model import architecture
    from finetune.model.count import count_run
    from finetune.runfile import RunConfig

    start = time.perf_counter()
    import peft
    print(f"import peft: {time.perf_counter() - start:.2f} s (the count never imports it)\n")

    tmp = Path(tempfile.mkdtemp())
    print(f"{'model':<18}{'params':>16}{'first':>11}{'cached':>10}{'new target':>11}{'peft':>10}  exact")
    families = set()
    for name in MODELS:
        config, _ = FULL[name]
        folder = str(write_config(tmp / name, config))
        runs = [RunConfig.from_dict({"model": {"name_or_path": folder}, "lora": {"r": r}}) for r in range(1, 201)]
        targets = [RunConfig.from_dict({"model": {"name_or_path": folder},
                                        "lora": {"target_modules": t if "gpt2" not in name else ["c_attn"]}})
                   for t in TARGETS]

        architecture.clear_cache()
        start = time.perf_counter()
        count = count_run(runs[15])
        first = time.perf_counter() - start
        mark = "*" if config["model_type"] not in families else " "
        families.add(config["model_type"])

        cached = iter(runs)
        cached_s = timed(lambda cached=cached: count_run(next(cached)), 200)
        skel = architecture.inspect_model(folder)

        def new_target(i=iter(range(10**6)), skel=skel, targets=targets):
            skel.memo.clear()   # as if these targets were never counted on this model
            count_run(targets[next(i) % len(targets)])
        target_s = timed(new_target, 21)

        def with_peft(folder=folder, runs=runs):
            from transformers import AutoConfig, AutoModelForCausalLM
            with torch.device("meta"):
                model = AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(folder))
            lora = peft.LoraConfig(**__import__("dataclasses").asdict(runs[15].lora))
            return peft.get_peft_model(model, lora, low_cpu_mem_usage=True).get_nb_trainable_parameters()

        theirs = with_peft()
        peft_s = timed(with_peft, 3)
        exact = (count.trainable, count.total) == theirs
        print(f"{name:<18}{skel.total:>16,}{ms(first)}{mark}{ms(cached_s)}{ms(target_s):>11}{ms(peft_s):>10}  "
              f"{'yes' if exact else f'NO: {theirs}'}")


if __name__ == "__main__":
    main()
