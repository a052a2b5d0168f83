"""Datasets uploaded through the page: kept beside the runs, size-capped, and deleted once stale.

Gradio's upload cache is not the job's business (it is cleaned on Gradio's schedule), so an upload is
copied to `<runs_dir>/.uploads/` (the run list ignores names starting with a dot) and the run file names
that copy. Kept forever, uploads would fill a Space's disk, so each is at most
FINETUNE_MAX_UPLOAD_MB (default 200; the app also gives Gradio this cap, so a larger file is refused
before it is written anywhere), and an upload older than a day that no run folder's run.yaml names is
deleted, whenever a new upload is stored and when the app starts.
"""

from __future__ import annotations

import os
import re
import shutil
import time
from collections.abc import Mapping
from pathlib import Path

from finetune.errors import DataError

DEFAULT_MAX_MB = 200
KEEP_S = 24 * 3600        # an upload no run refers to is deleted after a day
FOLDER = ".uploads"


def uploads_dir(runs_dir=None, env: Mapping[str, str] | None = None) -> Path:
    """`<runs_dir>/.uploads`; runs_dir defaults as the job manager's does (FINETUNE_RUNS_DIR, else runs/)."""
    env = os.environ if env is None else env
    runs = Path(runs_dir) if runs_dir is not None else Path(env.get("FINETUNE_RUNS_DIR") or "runs")
    return (Path.cwd() / runs / FOLDER).resolve()


def max_upload_bytes(env: Mapping[str, str] | None = None) -> int:
    env = os.environ if env is None else env
    try:
        mb = float(env.get("FINETUNE_MAX_UPLOAD_MB") or DEFAULT_MAX_MB)
    except ValueError:
        mb = DEFAULT_MAX_MB
    return int(max(mb, 0) * 1024 * 1024)


def is_upload(path: str, uploads: Path) -> bool:
    """Whether `path` names a file inside the uploads folder (after resolving links and `..`)."""
    try:
        resolved = Path(path).resolve()
        return resolved.is_relative_to(uploads.resolve()) and resolved.is_file()
    except (OSError, ValueError):
        return False


def store(source: str | Path, runs_dir, env: Mapping[str, str] | None = None) -> Path:
    """Copy an uploaded file into the uploads folder under a safe, dated name; returns the copy's path.
    Refuses (DataError, one line) a file over the cap. Stale uploads are pruned first."""
    source = Path(source)
    cap = max_upload_bytes(env)
    size = source.stat().st_size
    if size > cap:
        raise DataError(f"upload: {size / 2**20:,.1f} MB is over this server's limit of {cap / 2**20:,.0f} MB "
                        "(FINETUNE_MAX_UPLOAD_MB)")
    folder = Path(runs_dir) / FOLDER
    folder.mkdir(parents=True, exist_ok=True)
    prune(runs_dir)
    stem = re.sub(r"[^A-Za-z0-9._-]+", "-", source.stem).strip("-.")[:60] or "data"
    suffix = re.sub(r"[^A-Za-z0-9.]+", "", source.suffix)[:10]
    kept = folder / f"{time.strftime('%Y%m%d-%H%M%S')}-{stem}{suffix}"
    n = 1
    while kept.exists():
        n += 1
        kept = folder / f"{time.strftime('%Y%m%d-%H%M%S')}-{stem}-{n}{suffix}"
    shutil.copyfile(source, kept)
    return kept


def prune(runs_dir, now: float | None = None, keep_s: float = KEEP_S) -> list[Path]:
    """Delete uploads older than keep_s that no run folder's run.yaml names; returns what was deleted."""
    folder = Path(runs_dir) / FOLDER
    if not folder.is_dir():
        return []
    now = time.time() if now is None else now
    stale = [p for p in folder.iterdir() if p.is_file() and now - p.stat().st_mtime > keep_s]
    if not stale:
        return []
    named = ""
    for run_yaml in Path(runs_dir).glob("*/run.yaml"):
        try:
            named += run_yaml.read_text(encoding="utf-8", errors="replace")
        except OSError:
            continue
    deleted = []
    for path in stale:
        if path.name not in named:
            path.unlink(missing_ok=True)
            deleted.append(path)
    return deleted
