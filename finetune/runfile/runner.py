"""Where a run trains: `runner: local` (this machine: the default, and what every run file without the key
means) or `runner: {hf_jobs: {flavor: a10g-small, timeout: 2h}}`, a container on Hugging Face's machines
(finetune/jobs/hf_jobs.py), followed from here into the same run folder.

The file form has the machine's name as its only key, so a later runner adds a key, never a mode switch;
in memory it is one flat section (`where` plus the hf_jobs settings).
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field
from pathlib import Path

from finetune.demo import DEMO
from finetune.runfile.flavors import DEFAULT_FLAVOR, FLAVORS
from finetune.runfile.validators import Choice, Invalid, OrNull, Str, build_section, show

LOCAL, HF_JOBS = "local", "hf_jobs"
DEFAULT_IMAGE = "python:3.11-slim-bookworm"   # the job installs requirements.txt's pins into it
MIN_TIMEOUT, MAX_TIMEOUT = 5 * 60, 7 * 24 * 3600
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_NAMESPACE = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9._-]{0,94}[A-Za-z0-9])?$")


class Duration:
    """A timeout: seconds as a number, or "90m", "2h", "1.5h", "1d"; from 5 minutes to 7 days (a job past its
    timeout is stopped by Hugging Face, so a run must say how long it may bill)."""

    def __call__(self, value):
        seconds = _seconds(value)
        if seconds is None or not MIN_TIMEOUT <= seconds <= MAX_TIMEOUT:
            raise Invalid(f'must be a duration from 5m to 7d, e.g. "30m", "2h" or 7200 (seconds), got {show(value)}')
        return value if isinstance(value, str) else int(seconds)


def _seconds(value) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str) and (m := re.fullmatch(r"\s*(\d{1,6}(?:\.\d{1,3})?)\s*([smhd]?)\s*", value)):
        return float(m.group(1)) * _UNITS[m.group(2) or "s"]
    return None


def timeout_seconds(value) -> int:
    """A checked timeout in whole seconds."""
    seconds = _seconds(value)
    assert seconds is not None, value
    return int(seconds)


class Namespace:
    def __call__(self, value):
        if not isinstance(value, str) or not _NAMESPACE.match(value.strip()):
            raise Invalid(f"must be a Hugging Face user or organization name, got {show(value)}")
        return value.strip()


def _setting(default, help: str, check):
    return field(default=default, metadata={"help": help, "check": check})


@dataclass
class RunnerSection:
    where: str = _setting(LOCAL, "Where the run trains: `local` (this machine) or `hf_jobs` (a machine rented from "
                          "Hugging Face Jobs, billed per minute to whoever launches it).", Choice(LOCAL, HF_JOBS))
    flavor: str = _setting(DEFAULT_FLAVOR, "The Hugging Face Jobs machine, e.g. `a10g-small` (one 24 GB A10G), "
                           "`l40sx1` (48 GB), `a100-large` (80 GB), `h200`; `cpu-basic` costs almost nothing and "
                           "trains the demo. (hf_jobs)", Choice(*FLAVORS))
    timeout: str | int = _setting("2h", "How long the job may run before Hugging Face stops it (and stops billing): "
                                  "\"30m\", \"2h\", \"1d\" or seconds; 5 minutes to 7 days. (hf_jobs)", Duration())
    namespace: str | None = _setting(None, "Whose account the job runs (and bills) in: a user or an organization "
                                     "you belong to; default your own. (hf_jobs)", OrNull(Namespace()))
    image: str = _setting(DEFAULT_IMAGE, "The container image the job starts from; it installs this project's "
                          "pinned requirements at start. (hf_jobs)", Str(nonempty=True))

    @property
    def remote(self) -> bool:
        return self.where == HF_JOBS


HF_JOBS_KEYS = [f.name for f in dataclasses.fields(RunnerSection) if f.name != "where"]
SHAPE = "must be `local` or a mapping {hf_jobs: {flavor: a10g-small, timeout: 2h}}"


def build_runner(raw, problems: list) -> RunnerSection:
    """The run file's `runner` value, checked; problems are named as the user wrote them
    (`runner.hf_jobs.flavor: ...`)."""
    if raw is None or (isinstance(raw, str) and raw.strip().lower() == LOCAL) or raw == {LOCAL: None} \
            or raw == {LOCAL: {}}:
        return RunnerSection()
    if isinstance(raw, str) and raw.strip().lower() in (HF_JOBS, "hf-jobs"):
        return RunnerSection(where=HF_JOBS)
    if not isinstance(raw, dict) or len(raw) != 1 or next(iter(raw)) != HF_JOBS:
        problems.append(f"runner: {SHAPE}, got {show(raw)}")
        return RunnerSection()
    settings = raw[HF_JOBS]
    if settings is not None and (not isinstance(settings, dict) or "where" in settings):
        problems.append(f"runner.hf_jobs: must be a mapping of settings ({', '.join(HF_JOBS_KEYS)}), got "
                        f"{show(settings)}")
        return RunnerSection(where=HF_JOBS)
    section, _ = build_section(RunnerSection, "runner.hf_jobs", settings or {}, problems)
    section.where = HF_JOBS
    return section


def runner_dict(section: RunnerSection):
    """The run file's form: None for local (the key is left out, so a local run's file is unchanged)."""
    if not section.remote:
        return None
    return {HF_JOBS: {k: getattr(section, k) for k in HF_JOBS_KEYS}}


def remote_problems(run) -> list[str]:
    """What a run on Hugging Face's machines cannot have: files only this machine holds. The job gets the run
    file and this project's code, nothing else, so a local model folder or dataset file would be missing there
    (the built-in demo ships with the code)."""
    if not run.runner.remote:
        return []
    out = [f"{key}: {show(value)} is a file on this machine, which a job on Hugging Face's machines cannot read; "
           "use a Hub id (push the model or dataset to the Hub first) or the built-in demo, or train with runner: "
           "local" for key, value in (("model.name_or_path", run.model.name_or_path), ("data.path", run.data.path))
           if _local(value)]
    out += [f"method.rewards: the python reward {show(r.get('path'))} is a file on this machine, which a job on "
            "Hugging Face's machines cannot read; use the built-in reward types there" for r in run.method.rewards or ()
            if isinstance(r, dict) and r.get("type") == "python"]
    return out


def _local(value: str) -> bool:
    if value == DEMO:
        return False
    return value.startswith(("/", "./", "../", "~")) or value.endswith((".jsonl", ".json", ".csv", ".parquet")) or \
        Path(value).expanduser().exists()
