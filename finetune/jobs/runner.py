"""Which job manager starts jobs for a runs directory: the one holding an flock on `<runs_dir>/.jobs.lock`.

Any number of managers may share a runs directory (an app restarted, a second server on the same folder); all
of them read, submit to the queue on disk and cancel, but exactly one starts jobs, so no run starts twice. The
OS drops the lock when its holder dies, and the next manager to ask takes the role over. Without flock
(Windows) every manager acts as the runner.
"""

from __future__ import annotations

import os
from pathlib import Path

try:
    import fcntl
except ImportError:  # Windows
    fcntl = None  # type: ignore[assignment]  # a module or None: acquire() checks for None before use


class RunnerLock:
    def __init__(self, runs_dir: Path):
        self.path = Path(runs_dir) / ".jobs.lock"
        self._fd: int | None = None

    def acquire(self) -> bool:
        """Whether this manager is the runner now: True once it holds the lock (asking again is free)."""
        if self._fd is not None or fcntl is None:
            return True
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            return False
        self._fd = fd
        return True

    def release(self) -> None:
        """Give the role up: another manager on the same folder takes it at its next poll."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
