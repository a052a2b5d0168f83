"""How many of the job manager's slots (one per GPU; one in all without a GPU) a run takes, and which.

A run with `training.devices: N` holds N slots at once and starts only when N are free; the queue is served
in order, so a 2-GPU run at its head is not overtaken by 1-GPU runs behind it (it would wait for ever).
`auto` takes every slot free when its turn comes. Without a GPU the slots are CPU time, not devices: a
multi-process CPU run takes at most every slot there is.
"""

from __future__ import annotations

from finetune.errors import RunFileError
from finetune.train.distributed import machine_problems

AUTO = "auto"


def needed(devices, has_gpus: bool, total: int):
    """Slots a run's `devices` takes: a number, or AUTO."""
    if devices == AUTO:
        return AUTO
    try:
        n = max(1, int(devices))
    except (TypeError, ValueError):
        n = 1
    return n if has_gpus else min(n, total)


def pick(need, total: int, taken: set[int]) -> list[int] | None:
    """The slots to start on (lowest first), or None while too few are free."""
    free = [slot for slot in range(total) if slot not in taken]
    count = len(free) if need == AUTO else need
    if count < 1 or len(free) < count:
        return None
    return free[:count]


def too_many(need, total: int) -> str | None:
    """Why a run can never start under this manager, or None."""
    if need != AUTO and need > total:
        return (f"training.devices: {need}, but this job manager has {total} GPU slot{'s' * (total != 1)} "
                "(one per GPU it sees)")
    return None


def refuse_unfit(run, gpus: list[str], total: int) -> None:
    """More devices than this machine or this manager has, or a strategy it cannot run: RunFileError now,
    when the run is submitted, not when its turn comes."""
    problems = machine_problems(run, gpus)
    need = needed(run.training.devices, bool(gpus), total)
    if not problems and (reason := too_many(need, total)):
        problems.append(reason)
    if problems:
        raise RunFileError(problems)
