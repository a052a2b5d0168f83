"""The playground's latency and the merge's exactness, on a trained run folder.

    python benchmarks/bench_playground.py [RUN_FOLDER] [--prompts 5] [--max-new-tokens 64]

Without RUN_FOLDER it first trains the demo for 40 steps in a temporary folder. Measured through the app's own
path (finetune.adapter.service.Playground: a worker process, JSON lines over a pipe), side by side (base and
adapter as one batch of two), greedy:

- cold: from the request to the first token and to the end, worker start and model load included;
- warm: the same for the next prompts, the model kept loaded (medians), and tokens per second;
- merge: `merge_and_unload` time, and the largest logit difference between the merged model and base + adapter
  (PeftModel) on a batch of 8 x 64 random tokens, in the base checkpoint's dtype.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run as a script from anywhere

PROMPTS = ["Where does the fox live?", "What color is a whale?", "How does a cat talk?", "Where do bears live?",
           "What does a rabbit eat?", "Tell me about owls.", "What color is a frog?", "Where does the camel live?"]


def train_demo(folder: Path) -> Path:
    run = folder / "run.yaml"
    out = folder / "run"
    run.write_text(f"model: {{name_or_path: demo}}\ndata: {{path: demo, max_length: 128}}\n"
                   f"training: {{output_dir: {out}, max_steps: 40, per_device_train_batch_size: 8, "
                   f"gradient_accumulation_steps: 1, learning_rate: 1.0e-3, save_steps: 1000}}\n")
    subprocess.run([sys.executable, "-m", "finetune", "train", str(run)], cwd=ROOT, check=True,
                   stdout=subprocess.DEVNULL)
    return out


def timed(playground, run: Path, prompt: str, settings) -> dict:
    started = time.perf_counter()
    first = None
    for event in playground.generate(run, prompt, settings):
        if event["event"] == "text" and first is None:
            first = time.perf_counter() - started
        if event["event"] == "done":
            tokens = sum(event["tokens"].values())
            return {"first": first, "total": time.perf_counter() - started, "tokens": tokens,
                    "gen_s": event["seconds"]}
    raise RuntimeError("no answer")


def merge_error(run: Path, out: Path) -> tuple[float, float]:
    import torch
    from transformers import AutoModelForCausalLM

    from finetune.adapter.generate import load
    from finetune.adapter.merge import merge_run
    from finetune.adapter.source import find_adapter

    result = merge_run(run, out)
    merged = AutoModelForCausalLM.from_pretrained(out).eval()
    peft_model = load(find_adapter(run)).model.to("cpu")
    batch = torch.randint(0, merged.config.vocab_size, (8, 64), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        diff = (merged(batch).logits.float() - peft_model(batch).logits.float()).abs().max().item()
    return result["seconds"], diff


def main() -> None:
    from finetune.adapter.generate import GenSettings
    from finetune.adapter.service import Playground

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("run", nargs="?", help="a run folder with an adapter (default: train the demo)")
    parser.add_argument("--prompts", type=int, default=5)
    parser.add_argument("--max-new-tokens", type=int, default=64)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        run = Path(args.run) if args.run else train_demo(Path(tmp))
        settings = GenSettings(max_new_tokens=args.max_new_tokens)
        playground = Playground(None, idle_timeout=120, log_file=Path(tmp) / "worker.log")
        try:
            cold = timed(playground, run, PROMPTS[0], settings)
            warm = [timed(playground, run, PROMPTS[1 + i % (len(PROMPTS) - 1)], settings) for i in range(args.prompts)]
        finally:
            playground.close()
        merge_s, diff = merge_error(run, Path(tmp) / "merged")
    med = lambda key: statistics.median(w[key] for w in warm)  # noqa: E731
    speed = statistics.median(w["tokens"] / w["gen_s"] for w in warm if w["gen_s"])
    print(f"cold: first token {cold['first']:.2f} s, answers done {cold['total']:.2f} s (worker start + load)")
    print(f"warm (median of {len(warm)}): first token {med('first') * 1000:.0f} ms, answers done "
          f"{med('total') * 1000:.0f} ms for {med('tokens'):.0f} tokens, {speed:.0f} tokens/s (both sides)")
    print(f"merge: {merge_s:.2f} s, largest logit difference merged vs base + adapter: {diff:.2e}")


if __name__ == "__main__":
    main()
