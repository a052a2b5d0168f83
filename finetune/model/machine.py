"""What this machine offers a job: the GPUs torch can use and the CPU cores this process may run on. The one
answer the job manager's GPU slots, the dtype rule (`model.dtype: auto`), the memory estimate and the
multi-process launch all read, so a machine never has a GPU for one of them and none for another.

A GPU is one torch.cuda counts. On Linux torch (seconds to import) is asked only when a GPU driver's device
node is there: NVIDIA's (/dev/nvidiactl, /dev/nvidia0), WSL's GPU paravirtualisation (/dev/dxg: WSL has no
/dev/nvidia*) or ROCm's (/dev/kfd: torch's ROCm build answers through torch.cuda too). Elsewhere (Windows,
macOS) there are no such nodes to look at, so torch is asked.
"""

from __future__ import annotations

import os
import sys

DEVICE_NODES = ("/dev/nvidiactl", "/dev/nvidia0", "/dev/dxg", "/dev/kfd")


def gpu_driver_present() -> bool:
    """Whether asking torch for GPUs can find any: False on Linux without a GPU driver's device node."""
    if not sys.platform.startswith("linux"):
        return True
    return any(os.path.exists(node) for node in DEVICE_NODES)


def gpu_count() -> int:
    """The GPUs torch can use in this process (CUDA_VISIBLE_DEVICES applied); 0 without a driver, and 0 when
    torch cannot be imported or cannot reach the driver: no caller can train on a GPU torch does not see."""
    if not gpu_driver_present():
        return 0
    try:
        import torch

        return torch.cuda.device_count() if torch.cuda.is_available() else 0
    except Exception:   # a broken torch or driver install: the same answer for everyone, no GPU
        return 0


def cpu_count() -> int:
    """The CPU cores this process may run on (its affinity mask: a container's or taskset's limit, not the
    machine's total)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:   # not on Linux
        return os.cpu_count() or 1
