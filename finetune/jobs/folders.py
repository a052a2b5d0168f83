"""The runs directory: one folder per run, named when and what it is (`20261122-041530-demo-r16`); which
of its folders are runs, finding one by an id that came from a user or over HTTP, making a new one, and
the queue as the folders' status.json files say it is.
"""

from __future__ import annotations

import re
import time
from pathlib import Path

from finetune.errors import FinetuneError
from finetune.runfile import RunConfig
from finetune.runfile.validators import show
from finetune.train.runfolder import RunFolder

RUN_ID = re.compile(r"\A[A-Za-z0-9][A-Za-z0-9._-]{0,127}\Z")  # a folder name, never a path; at most 128 chars


class UnknownRun(FinetuneError, KeyError):
    """Raised for a run id with no run folder (or one that is not a plain folder name)."""

    def __str__(self):
        run_id = self.args[0]
        if not isinstance(run_id, str) or not RUN_ID.match(run_id):
            return ("run id: must be a run folder's name (letters, digits, '.', '_', '-'; at most 128 "
                    f"characters), got {show(run_id)}")
        return f"no run {run_id!r}"


def run_dirs(runs_dir: Path) -> list[Path]:
    return [p for p in runs_dir.iterdir() if p.is_dir() and RUN_ID.match(p.name)]


def lookup(runs_dir: Path, run_id) -> RunFolder:
    """The folder of an existing run; the id comes from users and HTTP, so it must be a plain name."""
    folder = RunFolder(runs_dir / run_id) if isinstance(run_id, str) and RUN_ID.match(run_id) else None
    if folder is None or not folder.exists():
        raise UnknownRun(run_id)  # no such folder, or one under runs_dir that is not a run
    return folder


def queued(runs_dir: Path) -> list[str]:
    """Queued run ids in the order they start (a broken status.json is not queued)."""
    waiting = []
    for path in run_dirs(runs_dir):
        status = RunFolder(path).read_status()
        if status.get("state") == "queued":
            waiting.append((status.get("submitted_at") or 0, path.name))
    return [run_id for _, run_id in sorted(waiting)]


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:24].strip("-") or "run"


def new_folder(runs_dir: Path, run: RunConfig) -> RunFolder:
    """A new folder named when and what: sortable, readable, and unique (mkdir fails if it exists)."""
    base = f"{time.strftime('%Y%m%d-%H%M%S')}-{_slug(Path(run.model.name_or_path).name)}-r{run.lora.r}"
    for n in range(1, 1000):
        path = runs_dir / (base if n == 1 else f"{base}-{n}")
        try:
            path.mkdir()
            return RunFolder(path)
        except FileExistsError:
            continue
    raise RuntimeError(f"cannot make a new run folder in {runs_dir}")
