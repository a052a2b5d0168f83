"""The job as one of several processes (ranks): who it is, what the machine allows, what the trainer is told.

A multi-device run is N copies of `python -m finetune.train RUN` started by torch.distributed's launcher
(finetune.train.launch here, or `accelerate launch` / `torchrun` on a cluster), which gives each one RANK,
LOCAL_RANK and WORLD_SIZE. accelerate, behind the Trainer, does the rest; this module only adds what the run
folder contract needs on top:

- rank 0 alone writes the run folder (status.json, metrics.jsonl, the adapter); every rank prints to the
  same train.log, each line prefixed `[rankN] `;
- the ranks agree before they start (one set of `error:` lines for a bad data file, not one per rank) and
  before they stop (a cancel ends every rank after the same step: a rank that stopped alone would leave the
  others waiting in their next all-reduce);
- a rank whose launcher is gone (killed with SIGKILL, say) exits, so a cancel leaves no process behind.
"""

from __future__ import annotations

import importlib.util
import os
import sys
import threading
import time

from finetune.model.machine import cpu_count, gpu_count
from finetune.runfile.parallel import AUTO, deepspeed_config, fsdp_config

LAUNCHER_ENV = "FINETUNE_LAUNCHER_PID"  # set by finetune.train.launch for the ranks it starts
PARENT_CHECK_S = 0.5                    # how often a rank looks for its launcher


# ----- who this process is -----

def is_rank() -> bool:
    """Started by a distributed launcher (ours, torchrun, accelerate launch, deepspeed): it sets these."""
    return "RANK" in os.environ and "WORLD_SIZE" in os.environ


def rank() -> int:
    return int(os.environ.get("RANK", 0))


def local_rank() -> int:
    return int(os.environ.get("LOCAL_RANK", 0))


def world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", 1)) if is_rank() else 1


def is_main() -> bool:
    return rank() == 0


def launcher_pid() -> int:
    """The pid whose process group a cancel signals: our launcher's for ranks it started, else our own."""
    value = os.environ.get(LAUNCHER_ENV)
    return int(value) if value and value.isdigit() and is_rank() else os.getpid()


# ----- what the machine allows -----

def visible_gpus() -> list[int]:
    """The GPUs this process sees (the job manager shows a job only those it reserved)."""
    return list(range(gpu_count()))


def resolve_devices(training, gpus: list) -> int:
    """training.devices as a number: `auto` is every GPU this process sees (the job manager shows a job only
    the GPUs it reserved), and 1 without a GPU: CPU processes are never started unasked."""
    if training.devices == AUTO:
        return max(1, len(gpus))
    return int(training.devices)


def machine_problems(run, gpus: list, cpus: int | None = None) -> list[str]:
    """What this machine cannot run, one line each, before anything starts."""
    t = run.training
    n = resolve_devices(t, gpus)
    cpus = cpus or cpu_count()
    out = []
    if gpus and n > len(gpus):
        out.append(f"training.devices: {n}, but this machine has {len(gpus)} GPU{'s' * (len(gpus) != 1)}")
    elif not gpus and n > cpus:
        out.append(f"training.devices: {n}, but this machine has no GPU and {cpus} CPU core{'s' * (cpus != 1)}; "
                   "without a GPU each device is one CPU process")
    if n > 1 and t.strategy == "fsdp" and not gpus:
        # accelerate builds its FSDP plugin only for GPU process groups: on the CPU it would train plain ddp.
        out.append('training.strategy: "fsdp" needs CUDA GPUs (accelerate shards only on GPUs; on the CPU it '
                   "would silently train ddp); use ddp on the CPU")
    if n > 1 and t.strategy == "deepspeed":
        if not gpus:
            out.append('training.strategy: "deepspeed" needs CUDA GPUs and this machine has none; use ddp on '
                       "the CPU")
        elif importlib.util.find_spec("deepspeed") is None:
            out.append('training.strategy: "deepspeed" needs the deepspeed package: pip install deepspeed')
    if n > 1 and not gpus and run.model.quantization != "none":
        out.append(f"model.quantization: {run.model.quantization} with several devices needs CUDA GPUs "
                   "(bitsandbytes); use none on the CPU")
    return out


def checkpoint_world_size(checkpoint: str) -> int:
    """How many processes wrote a Trainer checkpoint: one RNG state file per rank (rng_state_N.pth), or one
    rng_state.pth from a single process."""
    names = os.listdir(checkpoint) if os.path.isdir(checkpoint) else []
    per_rank = [n for n in names if n.startswith("rng_state_") and n.endswith(".pth")]
    return len(per_rank) or 1


def resume_problems(checkpoint: str | None, size: int) -> list[str]:
    """A checkpoint goes on only with the world size that wrote it: the data order, the global batch and
    (with fsdp or deepspeed) the sharded optimizer state all depend on it."""
    if not checkpoint:
        return []
    wrote = checkpoint_world_size(checkpoint)
    if wrote == size:
        return []
    return [f"--resume: {os.path.basename(checkpoint)} was written by {wrote} process{'es' * (wrote != 1)} and "
            f"this run has {size}; resume with training.devices: {wrote}"]


# ----- what the trainer is told -----

def trainer_args(run, size: int, cuda: bool) -> dict:
    """trl.SFTConfig keyword arguments for the strategy (none for one process). accelerate builds its DDP,
    FSDP or DeepSpeed plugin from them; the run file's own training_extra still goes last."""
    if size <= 1:
        return {}
    t = run.training
    # LoRA trains every adapter on every step, so DDP need not look for unused parameters (a whole extra
    # pass over the autograd graph per step, and a warning per rank).
    out: dict[str, object] = {"ddp_backend": "nccl" if cuda else "gloo", "ddp_find_unused_parameters": False}
    if t.strategy == "fsdp":
        out["fsdp"] = True
        out["fsdp_config"] = fsdp_config(run)
    elif t.strategy == "deepspeed":
        out["deepspeed"] = deepspeed_config(t.zero_stage)
    return out


# ----- a rank's life -----

class _Prefixed:
    """A text stream that starts every line with `[rankN] `, so the lines of all ranks can share train.log."""

    def __init__(self, stream, prefix: str):
        self._stream, self._prefix, self._at_start = stream, prefix, True

    def write(self, text: str) -> int:
        out = []
        for piece in text.splitlines(keepends=True):
            if self._at_start:
                out.append(self._prefix)
            out.append(piece)
            self._at_start = piece.endswith("\n")
        self._stream.write("".join(out))
        return len(text)

    def __getattr__(self, name):  # flush, fileno, reconfigure, encoding...: the stream's own
        return getattr(self._stream, name)


def plain(stream):
    """The stream under a rank's prefix: the CLI's `error:` lines start at the line's start."""
    return stream._stream if isinstance(stream, _Prefixed) else stream


def start_rank() -> None:
    """Before anything else in a rank: prefixed output, the process group, and a watch on the launcher."""
    prefix = f"[rank{rank()}] "
    if not isinstance(sys.stdout, _Prefixed):
        sys.stdout, sys.stderr = _Prefixed(sys.stdout, prefix), _Prefixed(sys.stderr, prefix)
    import torch
    import torch.distributed as dist

    if not dist.is_initialized():
        cuda = gpu_count() > 0
        if cuda:
            torch.cuda.set_device(local_rank())
        # accelerate finds the group made and uses it (it only initialises one when there is none).
        dist.init_process_group("nccl" if cuda else "gloo")
    if os.environ.get(LAUNCHER_ENV):
        threading.Thread(target=_exit_with_launcher, args=(os.getppid(),), daemon=True,
                         name="launcher-watch").start()


def _exit_with_launcher(parent: int) -> None:
    """torch.distributed starts each rank in a session of its own, so a SIGKILL to the launcher's process
    group (a cancel that timed out) does not reach the ranks: they leave when their launcher is gone."""
    while True:
        time.sleep(PARENT_CHECK_S)
        if os.getppid() != parent:
            print("the launcher is gone: stopping now", file=sys.stderr, flush=True)
            os._exit(1)


def _group():
    import torch.distributed as dist

    return dist if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1 else None


def any_rank(flag: bool) -> bool:
    """True on every rank when it is True on any (one small all-reduce; the flag itself with one process)."""
    dist = _group()
    if dist is None:
        return flag
    import torch

    device = torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else "cpu"
    value = torch.tensor([1 if flag else 0], device=device)
    dist.all_reduce(value, op=dist.ReduceOp.MAX)
    return bool(value.item())


def gather_problems(problems: list[str]) -> list[str]:
    """Every rank's setup problems, on every rank, each line once, in order."""
    dist = _group()
    if dist is None:
        return problems
    everyone: list[list[str] | None] = [None] * dist.get_world_size()
    dist.all_gather_object(everyone, problems)
    return list(dict.fromkeys(p for mine in everyone for p in (mine or [])))


def end_rank() -> None:
    dist = _group()
    if dist is not None:
        dist.destroy_process_group()
