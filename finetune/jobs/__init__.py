"""Background jobs: the manager (queue on disk, GPU slots, cancel, re-attach) and the processes it starts."""

from finetune.jobs.manager import JobManager, UnknownRun

__all__ = ["JobManager", "UnknownRun"]
