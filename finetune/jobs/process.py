"""A training job as an operating-system process: start it detached with its output in a file, tell whether
it still runs, signal it, and say why it ended. The bookkeeping around it (queue, slots, run folders) is
finetune.jobs'.
"""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

import psutil  # a dependency of accelerate, peft and trl

from finetune.model.machine import gpu_count
from finetune.runfile.limits import cut
from finetune.train.runfolder import RunFolder

LOST = "the job's process ended without a final status (killed?)"
PACKAGE_ROOT = str(Path(__file__).resolve().parents[2])  # so `-m finetune` imports from any cwd


def detect_gpus() -> list[str]:
    """CUDA_VISIBLE_DEVICES values, one per GPU this process may use (finetune/model/machine.py counts them);
    [] without a GPU."""
    count = gpu_count()
    if count == 0:
        return []
    visible = [v.strip() for v in os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",") if v.strip()]
    return visible[:count] if visible else [str(i) for i in range(count)]


def job_env(gpu: str | None) -> dict:
    """The environment a job gets: ours, plus what follows."""
    env = dict(os.environ, PYTHONUNBUFFERED="1")  # the log streams instead of arriving in 8 KiB blocks
    env["FINETUNE_SERVING"] = "1"   # it shares the machine with the page: finetune/train/threads.py
    env["PYTHONPATH"] = os.pathsep.join(p for p in (PACKAGE_ROOT, env.get("PYTHONPATH")) if p)
    if gpu is not None:
        env["CUDA_VISIBLE_DEVICES"] = gpu
    return env


def spawn(argv: list[str], log_file: Path, cwd: Path, env: dict) -> subprocess.Popen:
    """Start a job detached from us. Its output goes to `log_file`: a pipe nobody drains fills up and stalls
    training. Its own session keeps the app's Ctrl-C away from it and lets a cancel signal its whole group."""
    with log_file.open("ab") as log:
        return subprocess.Popen(argv, cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=log,
                                stderr=subprocess.STDOUT, start_new_session=True)


def started_at(pid: int) -> float | None:
    """When the process began (the kernel's clock): with the pid, it names one process, never a later one
    that reused the pid."""
    try:
        return psutil.Process(pid).create_time()
    except psutil.Error:
        return None


def is_job_process(pid, folder: RunFolder) -> bool:
    """Whether `pid` is alive (a zombie is not) and is a training job, not a process that reused the id."""
    try:
        proc = psutil.Process(int(pid))
        if proc.status() == psutil.STATUS_ZOMBIE:
            return False
        cmdline = proc.cmdline()
        began = proc.create_time()
    except (psutil.Error, ValueError, TypeError):
        return False
    # The process this manager (or an earlier one) started for this folder: a job forked by the warm
    # starter (finetune/jobs/warm.py) has the warm process's command line, so the pid and its start time
    # recorded at launch are what name it.
    recorded = folder.read_status().get("pid_started")
    if isinstance(recorded, (int, float)) and abs(began - recorded) < 0.5:
        return True
    if str(folder.run_yaml) in cmdline:
        return True
    # A job started by hand (`python -m finetune train my.yaml`) counts only if it runs this folder: a
    # status.json can name any PID, and counting every `finetune train` would adopt (and cancel) another
    # user's job.
    run_file = _run_file_argument(cmdline)
    if run_file is None:
        return False
    try:
        cwd = Path(proc.cwd())
        path = (cwd / run_file).resolve()
        if path == folder.run_yaml.resolve():
            return True
        from finetune.runfile.text import read_file

        output_dir = (read_file(path).get("training") or {}).get("output_dir")
        return isinstance(output_dir, str) and (cwd / output_dir).resolve() == folder.path.resolve()
    except Exception:
        return False


def _run_file_argument(cmdline: list[str]) -> str | None:
    """The run file of `... -m finetune train RUN`, else None."""
    for i, arg in enumerate(cmdline):
        if arg == "train" and i and cmdline[i - 1].endswith("finetune"):
            rest = [a for a in cmdline[i + 1:] if not a.startswith("-")]
            return rest[0] if rest else None
    return None


def signal_job(pid: int, sig: int) -> None:
    """Signal the job's whole process group (its data-loader workers too) when it leads one."""
    try:
        if os.getpgid(pid) == pid:
            os.killpg(pid, sig)
        else:
            os.kill(pid, sig)
    except ProcessLookupError:
        pass


def exit_reason(folder: RunFolder, returncode: int | None) -> str:
    """Why a job that wrote no final status ended (None: not our child, so its exit code is unknown). A job
    that refused its settings says why in `error:` lines (exit 2); one forked from the warm process, or
    re-attached after a restart, has no exit code here, so its log is read all the same."""
    if returncode is not None and returncode < 0:
        try:
            name = signal.Signals(-returncode).name
        except ValueError:
            name = f"signal {-returncode}"
        return f"the job's process ended without a final status (killed by {name})"
    lines = [line.strip() for line in folder.log_tail(8000).splitlines() if line.strip()]
    # train.log is appended to by every attempt (a resume): only this job's lines, from its first one on
    starts = [i for i, line in enumerate(lines) if line.startswith("run: ")]
    lines = lines[starts[-1]:] if starts else lines
    errors = [line.removeprefix("error: ") for line in lines if line.startswith("error: ")]
    if errors:
        return cut("; ".join(errors), 500)
    if returncode is None:
        return LOST
    last = f": {cut(lines[-1], 200)}" if lines else ""
    return f"the job's process exited with code {returncode} without a final status{last}"
