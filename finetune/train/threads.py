"""How many CPU threads a job's torch may use when it shares the machine with the app serving its page.

A job the app started (finetune.jobs marks it with FINETUNE_SERVING=1) trains beside the web server and,
often, the browser drawing its loss curve. With one torch thread per core, every redraw took a core from
the job's threads, whose steps then waited on the slowest: the demo trained at a quarter to a third of the
CLI's tokens/s (benchmarks/bench_page_vs_cli.py). Leaving one core to the page costs little: on two cores
the demo model trains as fast on one thread as on two (its matrices are too small to split). A run from the
CLI keeps every core; OMP_NUM_THREADS set by the user always wins; GPU jobs and multi-process runs
(finetune.train.launch shares the cores between ranks) are left alone.
"""

from __future__ import annotations

import os
import sys

from finetune.model.machine import cpu_count as cores

SERVING = "FINETUNE_SERVING"


def leave_a_core_to_the_page(devices) -> int | None:
    """Call before torch is imported (or in a job forked with torch imported). Sets OMP_NUM_THREADS for a single-device CPU job started by the app
    (`devices: auto` without a GPU is one device); returns the thread count chosen, or None when it left
    the default."""
    from finetune.model.dtypes import this_device

    if os.environ.get(SERVING) != "1" or "OMP_NUM_THREADS" in os.environ or devices not in (1, "auto"):
        return None
    if os.environ.get("WORLD_SIZE", "1") != "1" or this_device().cuda:
        return None
    n = max(1, cores() - 1)
    os.environ["OMP_NUM_THREADS"] = str(n)
    if "torch" in sys.modules:   # a job forked warm (finetune/jobs/warm.py): torch read the variable already
        sys.modules["torch"].set_num_threads(n)
    return n


def wait_policy() -> str | None:
    """Call before torch loads its OpenMP runtime. In a job the app started, threads that wait for work sleep
    instead of spinning: spinning threads fight the app serving the page, its browser and other jobs, and a
    CPU run on 2 cores then fell to a tenth of its speed (benchmarks/bench_page_vs_cli.py). A CLI run has the
    machine to itself and keeps OpenMP's default, which spins briefly before sleeping: forcing PASSIVE there
    made a 120-step CPU run 0.63x plain TRL's speed (benchmarks/bench_train_vs_trl.py). A user's own
    OMP_WAIT_POLICY always wins. Returns the policy set, or None."""
    if os.environ.get(SERVING) != "1" or "OMP_WAIT_POLICY" in os.environ:
        return None
    os.environ["OMP_WAIT_POLICY"] = "PASSIVE"
    return "PASSIVE"
