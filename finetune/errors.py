"""The project's own exceptions, under one base. The CLI turns a RunFileError into `error: ...` lines and exit
code 2; the UI's one boundary (finetune/ui/guard.py) turns any FinetuneError into a message.

    FinetuneError
    ├── RunFileError (ValueError)             a run file, or something it names, is invalid
    │   └── DataError                         the dataset cannot be used
    ├── UnknownRun (KeyError)                 finetune/jobs/folders.py: no run by that id
    ├── GenerationError                       finetune/adapter/service.py: the Playground could not answer
    │   └── WorkerCrashed                     its worker process died
    └── PushError                             finetune/adapter/hub.py: the Hub refused a push, or no network

The exit codes of every command (`python -m finetune ...`, the training job, its launcher) are here too, beside
the errors that decide them.
"""

from collections.abc import Iterable

EXIT_OK = 0        # done
EXIT_FAILED = 1    # the work itself failed: a job while training, a push the Hub refused, a sweep with a failed run
EXIT_INVALID = 2   # invalid input, refused before any work: one `error: ...` line per problem (argparse's code too)


class FinetuneError(Exception):
    """An error the project raises on purpose, saying what went wrong in words a user can act on: what the UI
    shows and the CLI prints instead of a traceback. Anything else reaching a boundary is a bug."""

    def lines(self) -> list[str]:
        """The message as the user sees it, one line per problem."""
        return str(self).splitlines() or [type(self).__name__]


class RunFileError(FinetuneError, ValueError):
    """A run file (or something it names) is invalid. `problems` holds one short line per problem,
    each naming the field and the value, e.g. `lora.r: must be a whole number >= 1, got 0`."""

    MAX_PROBLEMS = 30   # beyond these, "... and N more": a message must stay readable (and small: users
    MAX_CHARS = 500     # on a Space can send anything, and messages end up in logs and status files)

    def __init__(self, problems: str | Iterable[str]) -> None:
        given = [problems] if isinstance(problems, str) else list(problems)
        more = len(given) - self.MAX_PROBLEMS
        self.problems: list[str] = [
            p if len(p) <= self.MAX_CHARS else p[:self.MAX_CHARS - 3] + "..." for p in given[:self.MAX_PROBLEMS]
        ] + ([f"... and {more} more problems"] if more > 0 else [])
        super().__init__("\n".join(self.problems))

    def lines(self) -> list[str]:
        return list(self.problems)


class DataError(RunFileError):
    """The dataset cannot be used: it names the file, the line (for JSONL) and the columns found."""
