"""What the job manager says about a run, read from its folder alone: the status with its curve, timing and
queue place (JobManager.status), and a one-line summary per run (JobManager.list_runs).

Every value comes from files anyone could have edited, so nothing here assumes more than
finetune/train/runfolder.py guarantees: a status whose keys have the right types (or state `broken`), records
that are JSON objects, and a run.yaml that may be anything (history.settings reads it within the run file
limits; a section that is not a mapping counts as missing).
"""

from __future__ import annotations

import time
from pathlib import Path

from finetune.jobs import history
from finetune.train.runfolder import FINAL_STATES, RunFolder

SAMPLES_SHOWN = 24      # the newest answers /status carries: 3 evaluations of 8 prompts
SAMPLE_CHARS = 1000     # of each prompt and answer
# The method's own curves /status carries beside the loss (TRL's names; SFT logs none of them): at most
# SERIES_MAX of them, each its newest SERIES_POINTS points.
SERIES = ("rewards/margins", "rewards/accuracies", "rewards/chosen", "rewards/rejected", "kl", "reward",
          "reward_std")
SERIES_MAX = 16
SERIES_POINTS = 2000


def status(folder: RunFolder) -> dict:
    """status.json with run_id, losses [[step, loss], ...], eval_losses, tokens_per_second, elapsed_s,
    eta_s, stopped_early and the newest samples' answers (the queue place and the stopping view are the
    manager's to add)."""
    status = folder.read_status()
    metrics = folder.read_metrics()
    out = {"run_id": folder.path.name, "state": "queued", "step": 0, "max_steps": None, "error": None, **status}
    out["losses"] = [[m["step"], m["loss"]] for m in metrics if "step" in m and m.get("loss") is not None]
    out["eval_losses"] = [[m["step"], m["eval_loss"]] for m in metrics
                          if "step" in m and m.get("eval_loss") is not None]
    out["series"] = series(metrics)
    if metrics and "step" in metrics[-1]:
        out["step"] = max(out["step"] or 0, metrics[-1]["step"])
    out["tokens_per_second"] = history.figures(metrics)["tokens_per_second"]
    out["elapsed_s"], out["eta_s"] = timing(out)
    out["stopped_early"] = stopped_early(status.get("stopped_early"))
    out["samples"] = [{"step": r["step"], "prompt": r["prompt"][:SAMPLE_CHARS], "answer": r["answer"][:SAMPLE_CHARS]}
                      for r in folder.read_samples()[-SAMPLES_SHOWN:]]
    return out


def series(metrics: list[dict]) -> dict:
    """{name: [[step, value], ...]} for the method's curves found (each GRPO reward's rewards/<name>/mean too)."""
    names = list(SERIES)
    for m in metrics[-1:]:   # the newest record names each reward of a GRPO run
        names += sorted(k for k in m if k.startswith("rewards/") and k.endswith("/mean"))
    out: dict = {}
    for name in names[:SERIES_MAX]:
        points = [[m["step"], m[name]] for m in metrics if "step" in m and m.get(name) is not None]
        if points:
            out[name] = points[-SERIES_POINTS:]
    return out


def stopped_early(value) -> dict | None:
    """status.json's stopped_early ({step, best_step, best_metric, metric}, written by train/watch.py), or None
    when it is not one: a folder's files are anyone's to edit."""
    if not isinstance(value, dict) or type(value.get("step")) is not int:
        return None
    best_step, metric, name = value.get("best_step"), value.get("best_metric"), value.get("metric")
    return {"step": value["step"], "best_step": best_step if type(best_step) is int else None,
            "best_metric": metric if type(metric) in (int, float) else None,
            "metric": name[:40] if isinstance(name, str) else None}


def summary(path: Path, queue: list[str]) -> dict | None:
    """One run in a list: run_id, state, step, max_steps, error, model, r, loss, submitted_at,
    queue_position (`queue`: the queued run ids in order); None for a folder that is not a run's."""
    folder = RunFolder(path)
    if not folder.exists():
        return None
    status, settings = folder.read_status(), history.settings(folder)
    return {
        "run_id": path.name, "state": status.get("state", "queued"), "step": status.get("step", 0),
        "max_steps": status.get("max_steps"), "error": status.get("error"),
        "model": history.section(settings, "model").get("name_or_path"),
        "r": history.section(settings, "lora").get("r"),
        "loss": history.figures(folder.read_metrics())["last_loss"],
        "submitted_at": status.get("submitted_at") or status.get("started_at") or path.stat().st_mtime,
        "queue_position": queue.index(path.name) + 1 if path.name in queue else None,
    }


def timing(status: dict) -> tuple[float | None, float | None]:
    """Seconds since the job started (until it ended), and the time left at its training pace so far:
    the pace counts from when training began (status `training_started_at`, `start_step`), so model
    loading does not inflate it."""
    now = time.time()
    started = status.get("started_at") or status.get("training_started_at")
    if not started:
        return None, None
    final = status.get("state") in FINAL_STATES
    end = (status.get("finished_at") or status.get("updated_at") or now) if final else now
    elapsed = max(0.0, end - started)
    step, max_steps = status.get("step") or 0, status.get("max_steps") or 0
    trained = step - (status.get("start_step") or 0)
    if final or trained <= 0 or max_steps <= 0 or not status.get("training_started_at"):
        return elapsed, 0.0 if final else None
    pace = (now - status["training_started_at"]) / trained
    return elapsed, pace * max(0, max_steps - step)
