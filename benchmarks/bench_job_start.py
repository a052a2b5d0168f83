"""How soon a job the app launches starts training: forked from the warm process (finetune/jobs/warm.py) against
started cold (FINETUNE_WARM_JOBS=0), through the app's own JobManager, no browser (issue 19: on a GPU, a job
from the app must start within a few seconds).

    python benchmarks/bench_job_start.py [--reps 3] [--steps 6]

Each repetition runs the demo run file (max_steps --steps, a log every step) once each way, alternating which
goes first, in a fresh runs folder. Per job: submit -> the first logged step (what the page's curve waits for)
and submit -> completed. The warm process is started once per manager, as the app does when it starts; its
start-up (the imports it does for every later job) is printed on its own line, since no user waits for it.
Last, whether this process (standing in for the app) imported torch or initialised CUDA: it must not,
since a CUDA driver initialised before a fork is unusable in the forked job.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from finetune.jobs import JobManager  # noqa: E402  (after the path)
from finetune.jobs.warm import ENABLED  # noqa: E402

RUN = "model: {{name_or_path: demo}}\nlora: {{r: 4}}\ndata: {{path: demo}}\ntraining: {{max_steps: {steps}, logging_steps: 1}}\n"


def wait_until(check, timeout: float) -> float:
    """Seconds until check() holds (polling every 20 ms); raises past the timeout."""
    start = time.perf_counter()
    while not check():
        if time.perf_counter() - start > timeout:
            raise TimeoutError("no answer in time")
        time.sleep(0.02)
    return time.perf_counter() - start


def one_job(runs: Path, warm: bool, steps: int) -> dict:
    os.environ[ENABLED] = "1" if warm else "0"
    jobs = JobManager(runs, poll_interval=0.05)
    try:
        ready_s = None
        if jobs.warm_up():
            ready_s = wait_until(lambda: jobs._warm._is_ready() or jobs._warm.ready is False, 300)
            if not jobs._warm.ready:
                sys.exit(f"the warm process did not start: {jobs._warm.why}")
        start = time.perf_counter()
        run_id = jobs.submit(RUN.format(steps=steps))
        first = wait_until(lambda: any("loss" in m for m in jobs.metrics(run_id)), 300)
        status = jobs.wait(run_id, timeout=300)
        done = time.perf_counter() - start
        if status["state"] != "completed":
            sys.exit(f"the job ended {status['state']}: {jobs.log_tail(run_id)}")
        return {"first_step_s": first, "done_s": done, "ready_s": ready_s,
                "warm": bool(status.get("warm")), "run": run_id}
    finally:
        jobs.shutdown(cancel_jobs=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--steps", type=int, default=6)
    args = parser.parse_args()
    results: dict[str, list[dict]] = {"warm": [], "cold": []}
    with tempfile.TemporaryDirectory(prefix="bench-job-start-") as tmp:
        for rep in range(args.reps):
            order = ["warm", "cold"] if rep % 2 == 0 else ["cold", "warm"]
            for mode in order:
                r = one_job(Path(tmp) / f"{mode}-{rep}", mode == "warm", args.steps)
                if r["warm"] != (mode == "warm"):
                    sys.exit(f"a {mode} job was started {'warm' if r['warm'] else 'cold'}")
                results[mode].append(r)
                ready = f"   (warm process ready after {r['ready_s']:.1f} s)" if r["ready_s"] is not None else ""
                print(f"rep {rep + 1}: {mode}  submit -> first step {r['first_step_s']:5.2f} s   -> completed "
                      f"{r['done_s']:5.2f} s{ready}", flush=True)
    for mode, runs in results.items():
        print(f"median {mode}: submit -> first step {statistics.median(r['first_step_s'] for r in runs):5.2f} s, "
              f"-> completed {statistics.median(r['done_s'] for r in runs):5.2f} s")
    torch = sys.modules.get("torch")
    cuda = bool(torch is not None and torch.cuda.is_initialized())
    print(f"this process (the app's place): torch imported {torch is not None}, CUDA initialised {cuda}")
    if cuda:
        sys.exit("CUDA was initialised in the process jobs are started from")


if __name__ == "__main__":
    main()
