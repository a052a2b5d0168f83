"""`python benchmarks/gpu/peak.py -m finetune train RUN`: runs the module exactly as `python -m` does, then prints
torch.cuda.max_memory_allocated() as the process exits (`peak_allocated: BYTES`). `finetune train` does not
record its own peak; this adds nothing to the job but an exit hook (bench_gpu.py, its finetune side)."""

import atexit
import os
import runpy
import sys


def report() -> None:
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available() and torch.cuda.is_initialized():
        print(f"peak_allocated: {torch.cuda.max_memory_allocated()}", flush=True)


if __name__ == "__main__":
    if len(sys.argv) < 3 or sys.argv[1] != "-m":
        sys.exit("usage: python benchmarks/gpu/peak.py -m MODULE [ARGS...]")
    atexit.register(report)
    module, sys.argv = sys.argv[2], [sys.argv[2], *sys.argv[3:]]
    sys.path[0] = os.getcwd()   # as with python -m: the current folder first, not this script's
    runpy.run_module(module, run_name="__main__", alter_sys=True)
