"""Runs ranked against each other, read from their run folders alone (status.json and metrics.jsonl through
RunFolder), so the CLI's sweep, the HTTP API and a page rank the same runs the same way, during a sweep
or long after it.

    rank_folders(folders, values=None) -> [{"rank", "values", "state", "final_loss", "best_eval_loss",
                                            "tokens_per_second", "step", "max_steps", "error", "output_dir"}]

The order: runs that completed, by best eval loss when any run evaluated (data.eval_size > 0), else by final
train loss; then runs still going or stopped early (running, cancelled) by the same figure; then runs that
have not started (queued, not run); failed runs last. Within each group a run without the figure goes last.
`ranked_by` on each entry says which figure decided ("eval_loss" or "loss").
"""

from __future__ import annotations

from collections.abc import Sequence

from finetune.errors import RunFileError
from finetune.jobs.history import figures
from finetune.train.runfolder import RunFolder

NOT_RUN = "not run"   # a folder with no status.json: its job never started (a sweep stopped before it)
GROUPS = {"completed": 0, "running": 1, "cancelled": 1, "queued": 2, NOT_RUN: 2, "failed": 3}
KEYS = ("rank", "values", "state", "final_loss", "best_eval_loss", "tokens_per_second", "ranked_by", "step",
        "max_steps", "error", "output_dir")


def _numbers(metrics: list[dict], key: str) -> list[float]:
    return [m[key] for m in metrics if isinstance(m.get(key), (int, float)) and not isinstance(m[key], bool)]


def summarise(folder: RunFolder) -> dict:
    """One run's figures, as every list of runs shows them (finetune/jobs/history.figures): the last train
    loss, the lowest eval loss and tokens/s."""
    status, metrics = folder.read_status(), folder.read_metrics()
    shown = figures(metrics)
    steps = _numbers(metrics, "step")
    return {"state": status.get("state") or NOT_RUN,
            "final_loss": shown["last_loss"],
            "best_eval_loss": shown["best_eval_loss"],
            "tokens_per_second": shown["tokens_per_second"],
            "step": max([status.get("step") or 0, *steps]), "max_steps": status.get("max_steps"),
            "error": status.get("error"), "output_dir": str(folder.path)}


def rank(entries: list[dict]) -> list[dict]:
    """Entries with summarise()'s figures, sorted as the module says, each given `rank` (1 = best) and
    `ranked_by`."""
    by = "best_eval_loss" if any(e.get("best_eval_loss") is not None for e in entries) else "final_loss"

    def order(e: dict) -> tuple:
        figure = e.get(by)
        return GROUPS.get(str(e.get("state")), 2), figure is None, figure if figure is not None else 0.0

    ranked = sorted(entries, key=order)   # stable: ties keep the sweep's order
    return [{**e, "rank": i, "ranked_by": "eval_loss" if by == "best_eval_loss" else "loss"}
            for i, e in enumerate(ranked, 1)]


def run_settings(folder: RunFolder) -> dict:
    """The run's settings as {"section.key": value} from its run.yaml ({} when it has none yet)."""
    from finetune.runfile import read_file

    try:
        raw = read_file(folder.run_yaml)
    except RunFileError:
        return {}
    return {f"{section}.{key}": value for section, values in raw.items() if isinstance(values, dict)
            for key, value in values.items() if f"{section}.{key}" != "training.output_dir"}


def differing_settings(folders: Sequence[RunFolder]) -> list[dict]:
    """For each folder, the settings in which the runs differ: what a sweep varied, found again from the
    folders alone."""
    settings = [run_settings(f) for f in folders]
    keys = sorted({k for s in settings for k in s})
    differ = [k for k in keys if len({repr(s.get(k)) for s in settings}) > 1]
    return [{k: s.get(k) for k in differ} for s in settings]


def rank_folders(folders: Sequence[RunFolder], values: Sequence[dict] | None = None) -> list[dict]:
    """The runs ranked; `values`: what each varied (default: the settings in which their run.yaml differ)."""
    folders = list(folders)
    values = list(values) if values is not None else differing_settings(folders)
    entries = [{"values": v, **summarise(f)} for f, v in zip(folders, values, strict=True)]
    return [{k: e.get(k) for k in KEYS} for e in rank(entries)]
