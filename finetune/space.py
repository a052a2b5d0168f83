"""What a Hugging Face Space this app runs on can and cannot do, from its environment alone.

- ZeroGPU hardware lends a GPU only to short calls inside the app's own process (functions decorated
  with `spaces.GPU`, capped at minutes); a training job is a separate process running for minutes to
  hours, so it never gets a GPU there. The `spaces` package recognises ZeroGPU by SPACES_ZERO_GPU.
- A Space's own disk is wiped by every restart (the old /data persistent disk is gone): runs survive only
  in a Storage Bucket mounted into the Space (FINETUNE_RUNS_DIR pointing into it) or pushed to the Hub.
"""

from __future__ import annotations

import os
from collections.abc import Mapping


def on_space(env: Mapping[str, str] | None = None) -> bool:
    env = os.environ if env is None else env
    return bool(env.get("SPACE_ID"))


def zero_gpu(env: Mapping[str, str] | None = None) -> bool:
    env = os.environ if env is None else env
    return (env.get("SPACES_ZERO_GPU") or "").strip().lower() in ("1", "t", "true")


def notices(env: Mapping[str, str] | None = None) -> list[str]:
    """Lines for the top of the page: what this Space cannot do, and what to change."""
    env = os.environ if env is None else env
    out = []
    if zero_gpu(env):
        out.append("**This Space runs on ZeroGPU: training jobs get no GPU here.** ZeroGPU lends a GPU only to "
                   "short calls inside the app itself, capped at minutes, while a training job is a process of its "
                   "own that runs for minutes to hours, so it would train on the CPU. Choose dedicated GPU hardware "
                   "(an L4, A10G, L40S or A100 in the Space's settings) to train; the demo still runs on the CPU.")
    if on_space(env) and not env.get("FINETUNE_RUNS_DIR"):
        out.append("Runs are kept on this Space's own disk, which every restart wipes. To keep them, mount a "
                   "Storage Bucket into the Space and set `FINETUNE_RUNS_DIR` to a folder in it, or push each run "
                   "to the Hub (`hub.repo_id` when launching, or **Push** in the Playground).")
    return out
