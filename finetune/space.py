"""Whether this app runs on a Hugging Face Space, and what a Space can and cannot do, from its environment
alone. The two answers every module asks here, never of the environment itself:

- `on_space`: the Space's rules apply (sign-in to launch, runs read only uploads, the demo and the Hub, no
  push with the Space's own token, no tracker that sends data away). SPACE_ID set is enough, even by hand
  outside a Space: a rule that protects a Space fails closed.
- `real_space`: what only a real Space provides: its sign-in (Gradio's LoginButton), its proxy (the visitor
  named last in X-Forwarded-For), and its network (listening on 0.0.0.0). The Space sets SYSTEM=spaces beside
  SPACE_ID (what Gradio's own sign-in checks); SPACE_ID alone, set by hand elsewhere, gets none of these.

- `remote_code_allowed` / `own_code_allowed`: whether code that does not come with the app may run (the app
  refuses such run files, the job refuses their rewards, the Axolotl import leaves trust_remote_code out).

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
    """Whether the Space's rules apply: SPACE_ID is set (by the Space, or by hand)."""
    env = os.environ if env is None else env
    return bool(env.get("SPACE_ID"))


def real_space(env: Mapping[str, str] | None = None) -> bool:
    """Whether this process runs on a real Space: SPACE_ID and SYSTEM=spaces, both set by the Space itself."""
    env = os.environ if env is None else env
    return on_space(env) and env.get("SYSTEM") == "spaces"


# Code that does not come with the app (a model repository's own Python, a run file's reward function) runs
# only where the host opts in: the switch, as every refusal names it.
REMOTE_CODE_SWITCH = "FINETUNE_ALLOW_REMOTE_CODE=1"


def remote_code_allowed(env: Mapping[str, str] | None = None) -> bool:
    """Whether code someone else wrote may run here (model.trust_remote_code runs the model repository's
    Python): only where the host set FINETUNE_ALLOW_REMOTE_CODE=1, on a Space or not."""
    env = os.environ if env is None else env
    return env.get("FINETUNE_ALLOW_REMOTE_CODE", "").strip() == "1"


def own_code_allowed(env: Mapping[str, str] | None = None) -> bool:
    """Whether a run file's own code (a GRPO `python` reward) may run here. Outside a Space the run file is
    its author's, run on their own machine; on a Space it is a visitor's, so it is code someone else wrote."""
    return not on_space(env) or remote_code_allowed(env)


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
