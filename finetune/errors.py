"""The core's own exceptions. The CLI turns them into `error: ...` lines and exit code 2, the UI into messages."""

from collections.abc import Iterable


class RunFileError(ValueError):
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


class DataError(RunFileError):
    """The dataset cannot be used: it names the file, the line (for JSONL) and the columns found."""
