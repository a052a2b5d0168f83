"""`training.report_to`: which experiment trackers a run may report to, and whether each can start here.

Checked when the run file is read (CLI, app, API and the job alike), so a tracker that cannot start is one
line naming the field before anything loads, not a traceback from Trainer's constructor after the model
has loaded (what `report_to: [tensorboard]` without the tensorboard package would give).

TensorBoard and Trackio write inside the run folder (the job points them there: finetune/train/watch.py)
and need no credentials, so every server allows them. W&B and MLflow send metrics away with credentials
found in the environment: a user's own machine has the user's; a Space has the Space owner's, so there any
visitor who may launch would report with them, and they stay refused (SPACE_ID set).
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Mapping

from finetune.runfile.validators import Invalid, show
from finetune.space import on_space

# name -> (the module transformers imports for it, what pip installs)
LOCAL = {"tensorboard": ("tensorboard", "tensorboard"), "trackio": ("trackio", "trackio")}
REMOTE = {"wandb": ("wandb", "wandb"), "mlflow": ("mlflow", "mlflow")}
KNOWN = {**LOCAL, **REMOTE}
NONE = "none"


def names(value) -> list[str]:
    """The reporters a checked report_to value names, lower-cased, without "none"."""
    if value is None:
        return []
    listed = value if isinstance(value, list) else [value]
    return [n.strip().lower() for n in listed if n.strip().lower() != NONE]


def installed(module: str) -> bool:
    """Whether `module` can be imported, without importing it (seconds for some trackers)."""
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):   # a parent package missing, or a half-removed module
        return False


class ReportTo:
    """The allowlist's check for report_to: a name or a list of names from KNOWN (or "none"), each of whose
    packages is installed here, and none that sends data away when this server is a Space."""

    def __init__(self, env: Mapping[str, str] | None = None):
        self.env = env   # None: os.environ, read at each check (a test or a Space may set SPACE_ID late)

    def __call__(self, value):
        listed = value if isinstance(value, list) else [value]
        allowed = ", ".join(f'"{n}"' for n in (NONE, *KNOWN))
        if not listed or len(listed) > len(KNOWN) + 1 or not all(
                isinstance(v, str) and v.strip().lower() in (NONE, *KNOWN) for v in listed):
            raise Invalid(f"must be one of {allowed} or a list of them (other integrations are not supported), "
                          f"got {show(value)}")
        chosen = names(value)
        if NONE in [v.strip().lower() for v in listed] and chosen:
            raise Invalid(f'"none" cannot be listed with reporters, got {show(value)}')
        env = os.environ if self.env is None else self.env
        if on_space(env) and (away := [n for n in chosen if n in REMOTE]):
            raise Invalid(f'"{away[0]}" sends metrics with credentials found on this Space, which are its '
                          'owner\'s, not yours: use "tensorboard" or "trackio" (they write inside the run folder)')
        for name in chosen:
            module, package = KNOWN[name]
            if not installed(module):
                raise Invalid(f'"{name}" needs the {package} package, which is not installed here '
                              f"(pip install {package})")
        return value
