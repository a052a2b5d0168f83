"""Cold-start times: the CLI's quick commands and `python app.py` until it answers, each as a whole fresh
process, against its baseline measured in the same run.

    python benchmarks/bench_startup.py [--reps 3] [--skip-app]

Figures (wall seconds and CPU seconds of the process; the minimum over the repetitions, which is the run
least disturbed by the rest of the machine):
  count          `count RUN --json` (the Unsloth preset on a SmolLM2-135M-sized config.json) with the skeleton
                 already in the on-disk cache
  count, no cache  the same with an empty cache (imports torch and transformers to build the skeleton)
  presets, --help, export   `presets`, `--help`, `export finetune/demo/run.yaml --to peft`
  app            `python app.py` until GET /gradio_api/info answers
Baselines: `python -c "import gradio"` (the app cannot start faster than its web framework imports) and
`python -c pass` (the interpreter alone). Goals: count < 1.5 s and presets/--help/export < 1 s on a quiet
machine; app < 1.5x import gradio.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))   # appserver: free_port, answers, interrupt


SMOLLM2_135M = {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": 576,
                "intermediate_size": 1536, "num_hidden_layers": 30, "num_attention_heads": 9,
                "num_key_value_heads": 3, "vocab_size": 49152, "max_position_embeddings": 8192,
                "rms_norm_eps": 1e-05, "tie_word_embeddings": True, "rope_theta": 100000}


def env_for(cache: Path, extra: dict | None = None) -> dict:
    return dict(os.environ, HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", TRANSFORMERS_OFFLINE="1",
                GRADIO_ANALYTICS_ENABLED="False", FINETUNE_CACHE_DIR=str(cache), PYTHONPATH=str(ROOT),
                **(extra or {}))


def cpu_of_children() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def timed(cmd: list[str], env: dict) -> tuple[float, float]:
    """(wall, CPU) seconds of one whole process that must exit 0."""
    cpu, start = cpu_of_children(), time.perf_counter()
    done = subprocess.run(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    wall = time.perf_counter() - start
    if done.returncode != 0:
        sys.exit(f"{' '.join(cmd)} exited {done.returncode}: {done.stderr.decode()[-500:]}")
    return wall, cpu_of_children() - cpu


def app_start(env: dict, runs: Path) -> tuple[float, float]:
    """(wall, CPU) of `python app.py` from spawn until its API answers (CPU read from /proc while it runs)."""
    from appserver import answers, free_port, interrupt

    port = free_port()
    env = dict(env, GRADIO_SERVER_NAME="127.0.0.1", GRADIO_SERVER_PORT=str(port), FINETUNE_RUNS_DIR=str(runs))
    env.pop("SPACE_ID", None)
    start = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "app.py"], cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        while not answers(f"http://127.0.0.1:{port}"):
            if proc.poll() is not None:
                sys.exit(f"the app exited with code {proc.returncode}")
            time.sleep(0.05)
        wall = time.perf_counter() - start
        fields = Path(f"/proc/{proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        cpu = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")   # utime + stime of the app
        return wall, cpu
    finally:
        interrupt(proc)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--skip-app", action="store_true", help="only the CLI figures")
    args = parser.parse_args()
    py = sys.executable
    with tempfile.TemporaryDirectory(prefix="bench-startup-") as tmp:
        tmp = Path(tmp)
        cache, empty = tmp / "cache", tmp / "empty"
        env = env_for(cache)
        # A SmolLM2-135M-sized model (the demo's skeleton ships with the package, so it would never miss).
        model = tmp / "model"
        model.mkdir()
        (model / "config.json").write_text(json.dumps(SMOLLM2_135M))
        run = tmp / "run.yaml"
        run.write_text((ROOT / "presets" / "unsloth.yaml").read_text() + f"model: {{name_or_path: {model}}}\n")
        count = [py, "-m", "finetune", "count", str(run), "--json"]
        timed(count, env)   # fills the cache (and warms the OS file cache for everyone)

        def nocache():
            shutil.rmtree(empty, ignore_errors=True)
            return timed(count, env_for(empty))

        figures = {
            "python -c pass": lambda: timed([py, "-c", "pass"], env),
            "import gradio": lambda: timed([py, "-c", "import gradio"], env),
            "count (cached)": lambda: timed(count, env),
            "count (no cache)": nocache,
            "presets": lambda: timed([py, "-m", "finetune", "presets"], env),
            "--help": lambda: timed([py, "-m", "finetune", "--help"], env),
            "export --to peft": lambda: timed([py, "-m", "finetune", "export", "finetune/demo/run.yaml",
                                               "--to", "peft"], env),
        }
        if not args.skip_app:
            figures["python app.py"] = lambda: app_start(env, tmp / "runs")
        results = {name: [] for name in figures}
        for rep in range(args.reps):   # round-robin, so that a busy spell slows every figure alike
            for name, measure in figures.items():
                results[name].append(measure())
            print(f"rep {rep + 1}/{args.reps} done", file=sys.stderr, flush=True)
    best = {name: (min(w for w, _ in r), min(c for _, c in r)) for name, r in results.items()}
    gradio_wall, gradio_cpu = best["import gradio"]
    print(f"{'figure':<20} {'wall s':>7} {'cpu s':>7} {'x import gradio (wall)':>23} {'x (cpu)':>8}")
    for name, (wall, cpu) in best.items():
        print(f"{name:<20} {wall:7.2f} {cpu:7.2f} {wall / gradio_wall:23.2f} {cpu / gradio_cpu:8.2f}")
    nocache_wall = best["count (no cache)"][0]
    print(f"count cached / count without the cache (wall): {best['count (cached)'][0] / nocache_wall:.2f}")
    if "python app.py" in best:
        print(f"python app.py / import gradio (wall): {best['python app.py'][0] / gradio_wall:.2f} (goal < 1.5)")


if __name__ == "__main__":
    main()
