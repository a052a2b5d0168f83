"""Stopping a job gracefully on SIGTERM or SIGINT (what the job manager's cancel and Ctrl-C send).

The current step finishes, a checkpoint and the adapter are saved, and the job ends `cancelled`. Before
training starts there is nothing to save, so a signal stops it at once. Once a graceful stop is under way,
further signals change nothing, so that a second Cancel (or an impatient second Ctrl-C) cannot stop the
job at once and throw away the save the first one asked for. Stopping without saving is an explicit act: the
page's "Force stop" / `cancel(force=True)` (SIGKILL), or Ctrl-\\ (SIGQUIT) in a terminal.

Standard library only: the handler is installed before the seconds-long imports of torch and transformers,
so an early cancel is caught too.
"""

from __future__ import annotations

import signal


class Cancelled(Exception):
    """A stop was asked for before training began."""


class Stopper:
    """Catches SIGTERM and SIGINT. Before `training()` a signal raises Cancelled where the job is (loading a
    model can take minutes); after it, the signal only sets `requested` and the callback ends the step.
    Further signals while that stop is under way are acknowledged and otherwise ignored."""

    def __init__(self):
        self.requested = False
        self.in_training = False
        self.signal_name = ""
        self.previous = {}

    def install(self) -> Stopper:
        for sig in (signal.SIGTERM, signal.SIGINT):
            self.previous[sig] = signal.signal(sig, self._handle)
        return self

    def uninstall(self) -> None:
        """Give the signals back (main() may run inside a longer-lived process, such as a test)."""
        for sig, handler in self.previous.items():
            signal.signal(sig, handler)

    def training(self) -> None:
        self.in_training = True
        if self.requested:
            raise Cancelled(self.signal_name)

    def _handle(self, signum, frame):
        name = signal.Signals(signum).name
        if self.requested:
            print(f"{name} again: already stopping after this step, then saving (to stop without saving: "
                  "Force stop, or Ctrl-\\ in a terminal)", flush=True)
            return
        self.requested, self.signal_name = True, name
        if not self.in_training:
            raise Cancelled(name)
        print(f"{name}: finishing this step, then saving a checkpoint and the adapter", flush=True)
