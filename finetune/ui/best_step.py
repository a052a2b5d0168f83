"""Which evaluation of a run is its best, for the mark on its loss curve (finetune/ui/plots.py).

The best is judged as the Trainer judges it (TrainingArguments' metric_for_best_model and greater_is_better,
their defaults included), so the step marked is the one whose checkpoint load_best_model_at_end keeps:
- once early stopping has ended the run, the Trainer's own answer, status.json's stopped_early.best_step;
- before that (and in a run without early stopping), the evaluation records in metrics.jsonl, with the
  Trainer's rule: a value replaces the best only when strictly better, so of equal values the first wins.
A run whose metric the records do not carry has no mark until the Trainer names its best.
"""

from __future__ import annotations

import math
from typing import TypeGuard


def metric_rule(settings: dict | None) -> tuple[str, bool]:
    """(the metrics.jsonl key judged, whether greater is better) for a run's settings (its run.yaml as a dict;
    the run file's training section carries TrainingArguments' keys as they were set)."""
    training = (settings or {}).get("training")
    training = training if isinstance(training, dict) else {}
    name = training.get("metric_for_best_model")
    name = name if isinstance(name, str) and name else "loss"   # the eval loss, as watch.py sets for early stopping
    greater = training.get("greater_is_better")
    if not isinstance(greater, bool):
        greater = not name.endswith("loss")   # TrainingArguments' default
    return (name if name.startswith("eval_") else f"eval_{name}"), greater


def _number(value) -> TypeGuard[int | float]:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def best_eval(records: list[dict], stopped_early: dict | None, settings: dict | None) -> tuple[int, float | None] | None:
    """(the best evaluation's step, the eval loss at that step or None when none was recorded there), or None
    while no evaluation has been judged. `stopped_early` is the run's status stopped_early (jobs/report.py)."""
    losses = {int(r["step"]): float(r["eval_loss"]) for r in records
              if _number(r.get("step")) and _number(r.get("eval_loss"))}   # the last record of a step wins, as drawn
    best_step = (stopped_early or {}).get("best_step")
    if isinstance(best_step, int) and not isinstance(best_step, bool):
        return best_step, losses.get(best_step)
    key, greater = metric_rule(settings)
    best: tuple[int, float] | None = None
    for record in records:
        step, value = record.get("step"), record.get(key)
        if not (_number(step) and _number(value)):
            continue
        if best is None or (value > best[1] if greater else value < best[1]):
            best = (int(step), float(value))
    return (best[0], losses.get(best[0])) if best else None
