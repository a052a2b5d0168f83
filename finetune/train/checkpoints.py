"""A run folder's checkpoints, the one owner of what counts as one: the job's --resume, the job manager's
resume(), the runs table and the Playground all ask here. And the run folder's two failure modes on disk: a
folder the job cannot write (setup says so in one line, exit 2, before anything is loaded), and a checkpoint
whose save did not finish.

A checkpoint is a folder named `checkpoint-N` (N its step, digits only: the Trainer's own names). A save cut
short (disk full, a kill mid-save) leaves one that cannot be resumed from. The Trainer writes
trainer_state.json last in a checkpoint (after the weights, the optimizer, the scheduler and the RNG states),
so a checkpoint counts as complete when that file parses and a weights file is there; --resume goes on from
the newest complete one and says which it skipped, and a run whose checkpoints are all incomplete is not
resumable (`resumable`).
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
PARSED_MAX = 4096   # state files whose verdict is kept (a few per run)
_parsed: dict[str, tuple[tuple[int, int, int], bool]] = {}   # trainer_state.json -> (its stat, parses as one)


def checkpoints(output_dir: str | os.PathLike) -> list[Path]:
    """Every checkpoint-N folder, oldest first."""
    try:
        children = list(Path(output_dir).iterdir())
    except OSError:   # no such folder (yet), not a folder, or removed while a page reads it
        return []
    found = [(int(m.group(1)), p) for p in children if (m := CHECKPOINT.match(p.name)) and p.is_dir()]
    return [p for _, p in sorted(found)]


def step_of(checkpoint: Path) -> int:
    """N of a `checkpoint-N` folder that checkpoints() listed."""
    match = CHECKPOINT.match(checkpoint.name)
    if match is None:
        raise ValueError(f"not a checkpoint-N folder: {checkpoint.name}")
    return int(match.group(1))


def is_complete(checkpoint: Path) -> bool:
    """trainer_state.json parses with a global_step, and a weights file is there. The page asks for every run
    every second: a state file is parsed once per version (tens of KB: milliseconds each)."""
    state_file = checkpoint / "trainer_state.json"
    try:
        st = state_file.stat()
    except OSError:
        return False
    key, sig = str(state_file), (st.st_ino, st.st_mtime_ns, st.st_size)
    hit = _parsed.get(key)
    if hit is not None and hit[0] == sig:
        state_ok = hit[1]
    else:
        try:
            state = json.loads(state_file.read_text(encoding="utf-8"))
            state_ok = isinstance(state, dict) and "global_step" in state
        except (OSError, ValueError):
            state_ok = False
        if len(_parsed) >= PARSED_MAX:
            _parsed.clear()
        _parsed[key] = (sig, state_ok)
    return state_ok and any((checkpoint / w).is_file() for w in WEIGHTS)


def last_complete(output_dir: str | os.PathLike) -> tuple[Path | None, list[Path]]:
    """(the newest complete checkpoint or None, the newer incomplete ones skipped)."""
    skipped: list[Path] = []
    for checkpoint in reversed(checkpoints(output_dir)):
        if is_complete(checkpoint):
            return checkpoint, skipped
        skipped.append(checkpoint)
    return None, skipped


def complete_steps(output_dir: str | os.PathLike) -> list[int]:
    """The steps of the complete checkpoints, ascending: those --resume can go on from."""
    return [step_of(p) for p in checkpoints(output_dir) if is_complete(p)]


def resumable(output_dir: str | os.PathLike) -> bool:
    """Whether `train --resume` would go on in this folder rather than refuse: it holds a complete checkpoint."""
    return last_complete(output_dir)[0] is not None


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
