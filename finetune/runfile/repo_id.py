"""The check of a Hub repository id (`hub.repo_id`), in the run file's own words: the Hub's naming rules
(letters, digits, `-`, `_`, `.`; no `--` or `..`; neither end a `-` or `.`; a name of at most 96 characters),
with the owner required, because a push needs to know whose repository it writes to."""

from __future__ import annotations

import re

from finetune.runfile.validators import Invalid, show

_PART = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?$")
MAX_NAME = 96


def repo_id_problem(value) -> str | None:
    """Why `value` is not a usable "owner/name" model repository id, or None."""
    if not isinstance(value, str) or value.count("/") != 1:
        return f'must be "owner/name" (your Hugging Face user or organization, then the repository), got {show(value)}'
    owner, name = value.split("/")
    for part in (owner, name):
        if not _PART.match(part) or "--" in part or ".." in part:
            return (f"must be \"owner/name\" using letters, digits, '-', '_' and '.' (no '--' or '..', and not "
                    f"starting or ending with '-' or '.'), got {show(value)}")
    if len(name) > MAX_NAME:
        return f"the name after the '/' may have at most {MAX_NAME} characters, got {len(name)}"
    return None


class RepoId:
    """A run-file check (see finetune.runfile.validators): an "owner/name" repository id."""

    def __call__(self, value):
        value = value.strip() if isinstance(value, str) else value
        problem = repo_id_problem(value)
        if problem:
            raise Invalid(problem)
        return value
