"""Where a run trains and what `--resume` goes on from: the checks on training.output_dir (a folder that holds a
trained run is refused without --resume; --resume needs a complete checkpoint), the built-in demo's next free
folder, the newest complete checkpoint, and a run that was already complete when resumed. train/checkpoints.py
says which checkpoints are complete; train/job.py calls these in its setup and train phases.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from finetune.runfile import RunConfig
from finetune.train import checkpoints, distributed
from finetune.train.plan import Plan
from finetune.train.runfolder import RunFolder


def last_checkpoint(output_dir: str) -> str | None:
    """The newest complete checkpoint (a save cut short is skipped, and said so: train/checkpoints.py)."""
    found, skipped = checkpoints.last_complete(output_dir)
    for path in checkpoints.set_aside(skipped):
        print(f"resume: skipping an incomplete checkpoint (its save did not finish), kept as {path.name}",
              flush=True)
    return str(found) if found else None


def fresh_demo_folder(run: RunConfig, run_path: str, resume: bool) -> str | None:
    """The built-in demo run file (finetune/demo/run.yaml) is there to be run again and again: when its
    output_dir already holds a run, it trains into the next free numbered folder (runs/demo-2, ...) instead of
    refusing. Returns the note saying so, or None. Any other run file keeps the refusal: it protects work."""
    from finetune.demo import RUN_FILE

    if resume or distributed.world_size() > 1 or Path(run_path).resolve() != RUN_FILE.resolve():
        return None
    base = run.training.output_dir
    if not folder_problems(run, resume=False):
        return None
    n = 2
    while os.path.exists(f"{base}-{n}"):
        n += 1
    run.training.output_dir = f"{base}-{n}"
    return f'output: "{base}" holds an earlier demo run; this one goes to "{run.training.output_dir}"'


def folder_problems(run: RunConfig, resume: bool) -> list[str]:
    out_dir = run.training.output_dir
    if (problem := checkpoints.output_dir_problem(out_dir)) is not None:
        return [problem]
    all_checkpoints = checkpoints.checkpoints(out_dir)
    has_checkpoint = bool(all_checkpoints)
    if resume and not has_checkpoint:
        return [f'--resume: training.output_dir "{out_dir}" has no checkpoint-N folder to go on from']
    if resume and checkpoints.last_complete(out_dir)[0] is None:
        return [f'--resume: training.output_dir "{out_dir}" has no complete checkpoint to go on from '
                f"({', '.join(p.name for p in all_checkpoints)}: saves that did not finish)"]
    if not resume and (has_checkpoint or os.path.isdir(os.path.join(out_dir, "adapter"))):
        return [f'training.output_dir: "{out_dir}" already holds a trained run; pass --resume to go on from '
                "its last checkpoint, or choose another output_dir"]
    return []


def finished_step(plan: Plan) -> int | None:
    """The step of the checkpoint --resume goes on from when it already ends the run (nothing left to train),
    else None. Read from its trainer_state.json: the Trainer itself would report "0 steps in 0.0 s" at an
    epoch's end, or train one step past max_steps within an epoch."""
    if not plan.checkpoint:
        return None
    try:
        with open(os.path.join(plan.checkpoint, "trainer_state.json"), encoding="utf-8") as f:
            state = json.load(f)
        step = int(state["global_step"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    t = plan.run.training
    if t.max_steps > 0:
        return step if step >= t.max_steps else None
    same_epochs = state.get("num_train_epochs") == t.num_train_epochs
    return step if same_epochs and step >= int(state.get("max_steps") or 0) > 0 else None


def already_complete(plan: Plan, folder: RunFolder, step: int) -> str:
    """Resuming a finished run: say so; the adapter is the final checkpoint's, written if it is missing."""
    import shutil

    assert plan.checkpoint is not None, "finished_step() finds a step only in a checkpoint"
    print(f"trained: nothing left to train: the run was already complete at step {step} "
          f"({os.path.basename(plan.checkpoint)})", flush=True)
    if distributed.is_main() and not (folder.adapter_dir / "adapter_model.safetensors").is_file():
        folder.adapter_dir.mkdir(parents=True, exist_ok=True)
        for name in ("adapter_config.json", "adapter_model.safetensors"):
            shutil.copy2(os.path.join(plan.checkpoint, name), folder.adapter_dir / name)
        plan.tokenizer.save_pretrained(folder.adapter_dir)
    folder.write_status(step=step, max_steps=plan.run.training.max_steps if plan.run.training.max_steps > 0
                        else step)
    print(f"completed: adapter in {folder.adapter_dir}", flush=True)
    return "completed"
