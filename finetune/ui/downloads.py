"""Downloads of a run's files (the adapter zip, the merged model's zip): handed out, never served in place.

Gradio serves only what it stored itself (its cache, GRADIO_TEMP_DIR) and what `launch(allowed_paths=...)`
names. With the runs folder among the allowed paths, everything in it would be anyone's to fetch: logs,
errors, run files, uploaded datasets. So it is in `blocked_paths` (app.py), and a download is handed out
like this:

1. the handler checks the sign-in rule (access.may_use, as for launching);
2. `handout()` links (or copies, across file systems) the zip into a folder of its own with a random name
   in Gradio's cache, named after the run;
3. the DownloadButton gets that path; Gradio adds it to the button's temporary files, which
   `gr.Blocks(delete_cache=...)` deletes after an hour, and all of them when the server stops.

The link names the same bytes without a second copy (a merged model's zip is up to 2 GB). Its random folder
is its only secret: whoever is handed it may fetch it until it is deleted, nobody else can guess it.
"""

from __future__ import annotations

import os
import secrets
import shutil
from pathlib import Path

from gradio.utils import get_upload_folder

FOLDER = "launchpad-downloads"   # under Gradio's cache


def handout(source: str | Path, name: str, reuse: str | None = None) -> str:
    """A path in Gradio's cache holding `source`'s bytes under the file name `name`. `reuse`: what an earlier
    call handed out for the same download; returned again while it still holds the same file."""
    source, home = Path(source), Path(get_upload_folder()) / FOLDER
    if reuse and Path(reuse).parent.parent == home and _same(Path(reuse), source):
        os.utime(reuse)   # Gradio ages its files by ctime: one handed out again is not deleted an hour after the first time
        return reuse
    folder = home / secrets.token_urlsafe(24)
    folder.mkdir(parents=True)
    target = folder / name
    try:
        os.link(source, target)
    except OSError:   # another file system (or one without hard links): a copy
        shutil.copyfile(source, target)
    return str(target)


def _same(handed: Path, source: Path) -> bool:
    """Whether a handed-out file still holds `source`: the same inode for a link; same size and not older for
    a copy (a zip is rewritten under a new inode when its run changes)."""
    try:
        a, b = handed.stat(), source.stat()
    except OSError:
        return False
    if (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino):
        return True
    return a.st_dev != b.st_dev and a.st_size == b.st_size and a.st_mtime >= b.st_mtime
