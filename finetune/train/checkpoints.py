"""The run folder's two failure modes on disk: a folder the job cannot write, and a checkpoint whose save
did not finish.

Before, `train` with output_dir a file or a read-only folder loaded the model and the data and then died
with two tracebacks; now setup says so in one line (exit 2) before anything is loaded. And a save cut
short (disk full, a kill mid-save) left a `checkpoint-N/` that `--resume` picked as the newest and failed
on. The Trainer writes trainer_state.json last in a checkpoint (after the weights, the optimizer, the
scheduler and the RNG states), so a checkpoint counts as complete when that file parses and a weights
file is there; --resume goes on from the newest complete one and says which it skipped.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from pathlib import Path

from finetune.runfile.limits import cut

CHECKPOINT = re.compile(r"^checkpoint-(\d+)$")
WEIGHTS = ("adapter_model.safetensors", "adapter_model.bin", "model.safetensors", "pytorch_model.bin")


def checkpoints(output_dir: str | os.PathLike) -> list[Path]:
    """Every checkpoint-N folder, oldest first."""
    folder = Path(output_dir)
    if not folder.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in folder.iterdir() if (m := CHECKPOINT.match(p.name)) and p.is_dir()]
    return [p for _, p in sorted(found)]


def is_complete(checkpoint: Path) -> bool:
    try:
        state = json.loads((checkpoint / "trainer_state.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(state, dict) and "global_step" in state and any((checkpoint / w).is_file() for w in WEIGHTS)


def last_complete(output_dir: str | os.PathLike) -> tuple[Path | None, list[Path]]:
    """(the newest complete checkpoint or None, the newer incomplete ones skipped)."""
    skipped: list[Path] = []
    for checkpoint in reversed(checkpoints(output_dir)):
        if is_complete(checkpoint):
            return checkpoint, skipped
        skipped.append(checkpoint)
    return None, skipped


def output_dir_problem(output_dir: str) -> str | None:
    """Why the job could not write its run folder, or None. Probes with a temporary file in the folder (or
    in its nearest existing parent, which the job would create it in): permission bits say nothing to root,
    nor about a read-only file system."""
    path = Path(output_dir)
    shown = f'training.output_dir: "{cut(output_dir)}"'
    if path.exists() and not path.is_dir():
        return f"{shown} is a file, not a folder"
    existing = path
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        return f'{shown} cannot be made: "{cut(str(existing))}" is a file, not a folder'
    try:
        fd, probe = tempfile.mkstemp(prefix=".write-test-", dir=existing)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        where = "" if existing == path else f' (in "{cut(str(existing))}")'
        return f"{shown} cannot be written{where}: {exc.strerror or exc}"
    return None


def set_aside(incomplete: list[Path]) -> list[Path]:
    """Rename incomplete checkpoints to `incomplete-checkpoint-N` (kept for a look, no longer a checkpoint-N):
    left in place, the Trainer's rotation (save_total_limit) would count them as the newest and could delete
    the complete ones instead."""
    moved = []
    for path in incomplete:
        target = path.with_name(f"incomplete-{path.name}")
        n = 1
        while target.exists():
            n += 1
            target = path.with_name(f"incomplete-{path.name}-{n}")
        path.rename(target)
        moved.append(target)
    return moved
