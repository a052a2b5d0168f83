"""Which adapter a run folder offers: `adapter/` once the job has saved it (completed or cancelled), else the
newest `checkpoint-N/` (a run still training), with the run file that says which base model it belongs to.

Every problem is one line naming the folder, raised as RunFileError like the run file's own problems.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from finetune.errors import RunFileError
from finetune.runfile import RunConfig, load_run
from finetune.train import checkpoints as saved
from finetune.train.runfolder import RunFolder


@dataclass
class AdapterSource:
    folder: RunFolder
    run: RunConfig          # the run file the job resolved (run.yaml): the base model, the data, the settings
    adapter_dir: Path       # adapter_config.json + adapter_model.safetensors
    checkpoint: int | None  # the step of a checkpoint-N, None for the final adapter/
    state: str              # status.json's state ("completed", "running", ...)

    @property
    def label(self) -> str:
        """What the answers come from, for people: "final adapter" or "checkpoint-40 (running)"."""
        if self.checkpoint is None:
            return "final adapter"
        return f"checkpoint-{self.checkpoint}" + (f" ({self.state})" if self.state else "")

    @property
    def key(self) -> str:
        """Changes whenever the weights on disk change: what a loaded model is cached under."""
        weights = self.adapter_dir / "adapter_model.safetensors"
        stamp = weights.stat().st_mtime_ns if weights.exists() else 0
        return f"{self.adapter_dir.resolve()}@{stamp}"


def checkpoints(path: Path) -> list[tuple[int, Path]]:
    """(step, folder) of the checkpoints (as finetune/train/checkpoints.py lists them) holding an adapter,
    oldest first. Trying one needs only its adapter, not the optimizer state a resume needs: PEFT writes
    adapter_config.json after the weights, so a checkpoint whose save goes on (or was cut short) after them
    can be tried already."""
    return [(saved.step_of(p), p) for p in saved.checkpoints(path) if (p / "adapter_config.json").is_file()]


def find_adapter(run_dir) -> AdapterSource:
    """The adapter to try in `run_dir`: adapter/ when it exists (and the run is not training again from a
    resume), else the newest checkpoint; raises RunFileError when there is none yet."""
    path = Path(run_dir)
    folder = RunFolder(path)
    if not folder.run_yaml.is_file():
        what = "no such folder" if not path.is_dir() else "no run.yaml in it: it is not a run folder"
        raise RunFileError(f'run folder "{run_dir}": {what}')
    try:
        run = load_run(folder.run_yaml)
    except RunFileError as exc:
        raise RunFileError([f'run folder "{run_dir}": run.yaml: {p}' for p in exc.problems]) from None
    state = folder.read_status().get("state", "")
    final = folder.adapter_dir / "adapter_config.json"
    saved = checkpoints(path)
    if final.is_file() and not (state == "running" and saved and saved[-1][1].stat().st_mtime > final.stat().st_mtime):
        return AdapterSource(folder, run, folder.adapter_dir, None, state)
    if saved:
        step, newest = saved[-1]
        return AdapterSource(folder, run, newest, step, state)
    why = {"queued": "it has not started yet", "running": "it has saved no checkpoint yet (one comes every "
           f"training.save_steps = {run.training.save_steps} steps)", "failed": "it failed before saving one"}
    raise RunFileError(f'run folder "{run_dir}": no adapter to try: {why.get(state, "there is no adapter/ and no checkpoint-N/ in it")}')
