"""A warm start for training jobs: a process that has already imported torch, transformers, peft, trl and
datasets, and forks one child per job.

A job spends most of its first seconds importing: on a 2-core CPU, `import torch, transformers, trl, peft,
datasets` takes 9-15 s and the demo's own setup under 2 s, so a run launched from the page drew its first
point 15-18 s after the click. The app (finetune/ui) starts one of these when it starts; each job forked
from it begins with the imports done. The child is a whole job as `python -m finetune train RUN` would be:
its own session (a cancel signals its group), its output in train.log, the job's environment and working
folder; it is watched by its pid, as a job re-attached after a restart is (finetune/jobs/process.py).

Used only when it is safe, else a job starts as a fresh process (WarmStarter.spawn returns None):
- the variables the libraries read when they are imported (READ_AT_IMPORT) are as this process had them
  (the child gets the job's whole environment, but a library read those already);
- CUDA was not initialised here (a forked child cannot use it then) and no other thread runs here (a lock
  held by one at the fork would stay held in the child);
- the imports are done (until then, about the first 10 s after the app starts, jobs start cold);
- on a GPU machine, nothing here touches CUDA (a driver initialised before the fork is unusable in the
  child): torch answers is_available() from NVML here (PYTORCH_NVML_BASED_CUDA_CHECK, fork-safe), and peft
  and trl are left to the child, because importing bitsandbytes (which peft does) asks each GPU for its
  compute capability, which initialises CUDA. Each forked job initialises CUDA itself. The GPU case is
  proved on the CPU by tests/jobs/test_warm_start.py, which counts the CUDA queries of these imports.
FINETUNE_WARM_JOBS=0 turns it off.

Protocol, one JSON object per line: this process writes {"ready": true} once its imports are done (or
{"ready": false, "why": ...} and exits), then for each request {"argv": [...], "log": ..., "cwd": ...,
"env": {...}} it reads on stdin, it forks and answers {"pid": N}. It exits at the end of stdin (the app
stopped); its children go on, as jobs started cold do.
"""

from __future__ import annotations

import json
import os
import select
import subprocess
import sys
import threading
from pathlib import Path

ENABLED = "FINETUNE_WARM_JOBS"
# Prefixes of the variables torch, transformers, huggingface_hub, datasets and friends read at import.
READ_AT_IMPORT = ("HF_", "HUGGINGFACE_", "TRANSFORMERS_", "TORCH", "PYTORCH_", "OMP_", "MKL_", "KMP_", "CUDA_",
                  "NCCL_", "TOKENIZERS_", "DATASETS_", "ACCELERATE_", "BNB_", "PEFT_", "TRL_", "PYTHON", "LD_",
                  "XDG_", "HOME")
# CUDA_VISIBLE_DEVICES: read when CUDA first initialises, in the child. TORCHINDUCTOR_CACHE_DIR: torch sets
# it to its default when imported, in the app as here.
NOT_AT_IMPORT = {"CUDA_VISIBLE_DEVICES", "TORCHINDUCTOR_CACHE_DIR"}
MODULES = ("torch", "transformers", "peft", "trl", "datasets", "accelerate")
# On a GPU machine: what imports without a CUDA query (peft imports bitsandbytes, which queries each GPU).
GPU_SAFE_MODULES = ("torch", "transformers", "datasets", "accelerate")


class WarmStarter:
    """The app's side: starts the warm process and asks it for jobs."""

    def __init__(self, env: dict, log_file: Path, gpu: bool = False):
        self.env = dict(env)
        self.ready: bool | None = None   # None: still importing
        self.why = ""
        self.declined = ""   # why the last job had to start cold
        with Path(log_file).open("ab") as log:   # its own errors, if any
            self.proc = subprocess.Popen([sys.executable, "-c", f"from finetune.jobs.warm import serve; serve(gpu={gpu})"],
                                         env=self.env,
                                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log,
                                         start_new_session=True)
        self._lock = threading.Lock()

    def spawn(self, argv: list[str], log_file: Path, cwd: Path, env: dict) -> int | None:
        """Fork a job running `argv` (`python -m MODULE ARGS...`); its pid, or None when it must start cold."""
        module = argv[2] if len(argv) >= 3 and argv[1] == "-m" else None
        if module is None:
            return None
        with self._lock:
            if not self._is_ready():
                self.declined = f"the warm process is not ready{': ' + self.why if self.why else ''}"
                return None
            if changed := self._changed(env):
                self.declined = f"the environment changed since the warm process started ({', '.join(changed)})"
                return None
            request = {"argv": [module, *argv[3:]], "log": str(log_file), "cwd": str(cwd), "env": env}
            try:
                assert self.proc.stdin is not None
                self.proc.stdin.write((json.dumps(request) + "\n").encode())
                self.proc.stdin.flush()
                answer = self._read_line(timeout=10)
            except (OSError, ValueError):
                answer = None
            if not answer or not isinstance(answer.get("pid"), int):
                self._give_up("it did not answer a request")
                return None
            return answer["pid"]

    def close(self) -> None:
        """End the warm process (its jobs go on)."""
        try:
            if self.proc.stdin:
                self.proc.stdin.close()
            self.proc.wait(timeout=5)
        except (OSError, subprocess.TimeoutExpired):
            self.proc.kill()

    def _changed(self, env: dict) -> list[str]:
        """The variables read at import whose value for this job differs from the warm process's."""
        keys = {k for k in set(env) | set(self.env) if k.startswith(READ_AT_IMPORT)} - NOT_AT_IMPORT
        return sorted(k for k in keys if env.get(k) != self.env.get(k))

    def _is_ready(self) -> bool:
        if self.ready is None and self.proc.poll() is None:
            line = self._read_line(timeout=0)
            if line is not None:
                self.ready, self.why = bool(line.get("ready")), str(line.get("why") or "")
        if self.proc.poll() is not None:
            self.ready = False
        return bool(self.ready)

    def _read_line(self, timeout: float) -> dict | None:
        assert self.proc.stdout is not None
        fd = self.proc.stdout.fileno()
        if not select.select([fd], [], [], timeout)[0]:
            return None
        line = self.proc.stdout.readline()
        return json.loads(line) if line.strip() else None

    def _give_up(self, why: str) -> None:
        self.ready, self.why = False, why
        self.proc.kill()


# ----- the warm process itself -----

def _say(message: dict) -> None:
    sys.stdout.write(json.dumps(message) + "\n")
    sys.stdout.flush()


def _run_child(request: dict) -> None:
    """In the forked child: become the job, run it, and exit; never returns to the serving loop."""
    import atexit
    import io
    import runpy
    import signal

    code = 1
    try:
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)   # the job waits on its own children (torchrun ranks)
        os.setsid()
        log = os.open(request["log"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0)
        os.dup2(log, 1)
        os.dup2(log, 2)
        os.close(log)
        os.close(null)
        sys.stdin = open(0, closefd=False)   # noqa: SIM115 (fd 0 lives as long as the process)
        sys.stdout = io.TextIOWrapper(io.FileIO(1, "w", closefd=False), write_through=True, line_buffering=True)
        sys.stderr = io.TextIOWrapper(io.FileIO(2, "w", closefd=False), write_through=True, line_buffering=True)
        os.chdir(request["cwd"])
        os.environ.clear()
        os.environ.update(request["env"])
        module, *args = request["argv"]
        sys.argv = [module, *args]
        runpy.run_module(module, run_name="__main__", alter_sys=True)
        code = 0
    except SystemExit as exc:
        if exc.code is None or isinstance(exc.code, int):
            code = exc.code or 0
        else:
            print(exc.code, file=sys.stderr)
    except BaseException:
        import traceback

        traceback.print_exc()
    finally:
        try:
            atexit._run_exitfuncs()
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            os._exit(code)


def warm_imports(gpu: bool) -> None:
    """Import what every job imports, touching CUDA never when `gpu` (see the module's docstring)."""
    import importlib

    # Every job forked from here is the app's (FINETUNE_SERVING=1): what it would set for itself before torch
    # loads its OpenMP runtime (finetune/train/threads.py wait_policy), set here, where torch loads.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    if gpu:
        # Read by torch at each is_available() call: here NVML answers, in the child (whose environment is
        # the job's) the CUDA runtime does, as in any job.
        os.environ["PYTORCH_NVML_BASED_CUDA_CHECK"] = "1"
    for name in GPU_SAFE_MODULES if gpu else MODULES:
        importlib.import_module(name)
    from transformers import AutoModelForCausalLM, AutoTokenizer  # noqa: F401  (lazy modules: load them)
    if not gpu:
        from trl import SFTConfig, SFTTrainer  # noqa: F401


def serve(gpu: bool = False) -> None:
    import signal

    try:
        warm_imports(gpu)
        import torch

        if torch.cuda.is_initialized():
            _say({"ready": False, "why": "CUDA was initialised while importing"})
            return
    except Exception as exc:
        _say({"ready": False, "why": f"{type(exc).__name__}: {exc}"})
        return
    if threading.active_count() > 1:
        _say({"ready": False, "why": f"{threading.active_count()} threads after the imports"})
        return
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)   # children are reaped at once: the app watches them by pid
    signal.signal(signal.SIGINT, signal.SIG_IGN)    # the app's Ctrl-C is the app's
    _say({"ready": True})
    for line in sys.stdin:
        if not line.strip():
            continue
        request = json.loads(line)
        pid = os.fork()
        if pid == 0:
            signal.signal(signal.SIGINT, signal.default_int_handler)
            _run_child(request)
        _say({"pid": pid})


if __name__ == "__main__":
    serve()
