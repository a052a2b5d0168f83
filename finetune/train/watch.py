"""Watching a run as it trains: early stopping (with the best checkpoint kept as the adapter), the experiment
trackers of training.report_to, and the callbacks that answer the samples. job.py calls these; the run
file's side is finetune/runfile/evaluation.py and finetune/runfile/reporters.py.
"""

from __future__ import annotations

import math
import os
import sys
from pathlib import Path

from finetune.runfile import RunConfig
from finetune.runfile.reporters import names
from finetune.space import on_space
from finetune.train import distributed
from finetune.train.runfolder import RunFolder

# A tracker started on a Space must not reach the Space owner's own trackio Space or server: these say where.
TRACKIO_REMOTE_ENV = ("TRACKIO_SPACE_ID", "TRACKIO_SERVER_URL", "TRACKIO_BUCKET_ID", "TRACKIO_DATASET_ID",
                      "TRACKIO_WRITE_TOKEN")


def trainer_args(run: RunConfig, kwargs: dict, has_eval: bool) -> list[str]:
    """Adjust the SFTConfig keyword arguments (the user's keys already in them) for early stopping and the
    trackers; returns lines for train.log saying what was chosen for the user. A key the user set is kept:
    TrainingArguments then judges the combination, in its own words."""
    notes: list[str] = []
    extra, t = run.training_extra, run.training
    if t.early_stopping_patience is not None and has_eval:
        notes += _early_stopping_args(run, kwargs)
    reporters = names(kwargs.get("report_to"))
    if "trackio" in reporters:
        # `project` names trackio's database; a run file may not set it (allowlist.py): the run's folder does.
        kwargs["project"] = os.path.basename(os.path.normpath(t.output_dir)) or "run"
        if "run_name" not in extra:
            kwargs["run_name"] = kwargs["project"]
    if reporters:
        notes.append(f"report_to: {', '.join(reporters)}{tracker_places(t.output_dir, reporters)}")
    return notes


def _early_stopping_args(run: RunConfig, kwargs: dict) -> list[str]:
    extra, notes = run.training_extra, []
    if "metric_for_best_model" not in extra:
        kwargs["metric_for_best_model"] = "loss"   # eval_loss; EarlyStoppingCallback needs one named
    if kwargs.get("save_strategy") == "no":
        notes.append("early stopping: save_strategy is \"no\", so no checkpoint is kept to go back to: the "
                     "adapter will be the last step's, not the best one's")
        return notes
    if "load_best_model_at_end" not in extra:
        kwargs["load_best_model_at_end"] = True
    if not kwargs.get("load_best_model_at_end") or kwargs.get("save_strategy") == "best":
        return notes
    if kwargs.get("eval_strategy") == "epoch" and "save_strategy" not in extra:
        kwargs["save_strategy"] = "epoch"
        notes.append("early stopping: a checkpoint at every evaluation (each epoch), so the best can be kept")
    elif kwargs.get("eval_strategy") == "steps" and kwargs.get("save_strategy") == "steps":
        every, save = kwargs["eval_steps"], kwargs["save_steps"]
        if save != every:   # the best can be loaded again only if its evaluation left a checkpoint
            kwargs["save_steps"] = every
            notes.append(f"early stopping: a checkpoint at every evaluation (every {every} steps, not "
                         f"save_steps={save}), so the best can be kept")
    return notes


def tracker_places(output_dir: str, reporters: list[str]) -> str:
    """Where each local tracker writes, and how to open it, for train.log."""
    places = []
    if "tensorboard" in reporters:
        places.append(f"tensorboard --logdir {os.path.join(output_dir, 'tensorboard')}")
    if "trackio" in reporters:
        places.append(f"TRACKIO_DIR={os.path.join(output_dir, 'trackio')} trackio show")
    return f" (open with: {'; '.join(places)})" if places else ""


def tracker_env(run: RunConfig, folder: RunFolder) -> list[str]:
    """Point the local trackers into the run folder (before Trainer builds their callbacks: trackio reads
    TRACKIO_DIR when it is imported). Returns notes for train.log."""
    reporters, notes = names(run.training_extra.get("report_to")), list[str]()
    if "tensorboard" in reporters:
        os.environ["TENSORBOARD_LOGGING_DIR"] = str(folder.path.resolve() / "tensorboard")
    if "trackio" in reporters:
        os.environ["TRACKIO_DIR"] = str(folder.path.resolve() / "trackio")
        _repoint_trackio(folder.path.resolve() / "trackio")
        if on_space():
            for key in TRACKIO_REMOTE_ENV:
                os.environ.pop(key, None)
    return notes


def _repoint_trackio(path: Path) -> None:
    """trackio reads TRACKIO_DIR once, at import, into module constants, and TRL imports it with its trainers
    (trl/extras/profiling.py) when it is installed: in a job forked from the app's warm process, or a test
    process, it was imported before this run chose its folder. Its already-loaded modules are pointed here."""
    derived = {"TRACKIO_DIR": path, "MEDIA_DIR": path / "media", "ARTIFACTS_DIR": path / "artifacts"}
    for name, module in list(sys.modules.items()):
        if module is not None and (name == "trackio" or name.startswith("trackio.")):
            for attr, value in derived.items():
                if isinstance(getattr(module, attr, None), Path):
                    setattr(module, attr, value)


def callbacks(plan, folder: RunFolder) -> list:
    """The callbacks that watch evaluations: early stopping, and the samples' answers."""
    from transformers import EarlyStoppingCallback

    from finetune.train.samples import SamplesCallback, prompts_for

    run = plan.run
    out: list = []
    t = run.training
    if t.early_stopping_patience is not None and plan.examples.eval is not None:
        out.append(EarlyStoppingCallback(t.early_stopping_patience, t.early_stopping_threshold or 0.0))
    prompts = prompts_for(run, plan.examples, plan.tokenizer)
    sharded = distributed.world_size() > 1 and t.strategy != "ddp"
    if prompts and sharded:
        print(f"samples: not answered with strategy {t.strategy} (the weights are split across processes)",
              flush=True)
    elif prompts:
        out.append(SamplesCallback(folder, plan.tokenizer, prompts, run.samples.max_new_tokens,
                                   run.data.max_length))
    return out


def stopped_early(trainer, result, folder: RunFolder) -> dict | None:
    """When early stopping ended the run: says so in one line and in status.json (`stopped_early`: step,
    best_step, best_metric, metric), and returns that; else None."""
    from transformers import EarlyStoppingCallback

    found = [c for c in trainer.callback_handler.callbacks if isinstance(c, EarlyStoppingCallback)]
    state, args = trainer.state, trainer.args
    if not found or found[0].early_stopping_patience_counter < found[0].early_stopping_patience:
        return None
    if result.global_step >= state.max_steps:
        return None   # patience ran out at the very last step: the run went its full length
    metric = args.metric_for_best_model or "loss"
    metric = metric if metric.startswith("eval_") else f"eval_{metric}"
    best = state.best_metric if state.best_metric is not None and math.isfinite(state.best_metric) else None
    info = {"step": result.global_step, "best_step": state.best_global_step or None, "best_metric": best,
            "metric": metric}
    kept = "the adapter is" if args.load_best_model_at_end and state.best_model_checkpoint else \
        "the adapter is the last step's; the best was"
    shown = f"{best:.4f}" if best is not None else "?"
    print(f"stopped early: {metric} did not improve for {found[0].early_stopping_patience} evaluation(s); "
          f"stopped at step {result.global_step} of {state.max_steps}; {kept} step {info['best_step']}'s "
          f"({metric} {shown})", flush=True)
    if distributed.is_main():
        folder.write_status(stopped_early=info)
    return info
