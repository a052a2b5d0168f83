"""The core's own exceptions. The CLI turns them into `error: ...` lines and exit code 2, the UI into messages."""


class RunFileError(ValueError):
    """A run file (or something it names) is invalid. `problems` holds one short line per problem,
    each naming the field and the value, e.g. `lora.r: must be a whole number >= 1, got 0`."""

    def __init__(self, problems):
        self.problems = [problems] if isinstance(problems, str) else list(problems)
        super().__init__("\n".join(self.problems))


class DataError(RunFileError):
    """The dataset cannot be used: it names the file, the line (for JSONL) and the columns found."""
