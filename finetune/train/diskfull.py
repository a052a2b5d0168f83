"""A full disk, said in one line: what it cut short, what is left, what to do.

Left to the libraries, a disk that fills up during a checkpoint ends the job with three tracebacks (98 lines),
status.json left at `running` (writing `failed` needs space too), a partial checkpoint-N and an empty
`.status.*.tmp`.
Each library says "no space" its own way, measured on a 160 KB tmpfs: Python raises OSError(ENOSPC);
tokenizers `Exception("No space left on device (os error 28)")`; safetensors `SafetensorError("...: No
space left on device (os error 28)")`; torch.save `RuntimeError("... unexpected pos 576 vs 534")`, no errno at
all. So it is found by the errno or the words anywhere in the exception's chain, or, for a save that names
neither, by a disk with (almost) nothing left when it failed. A quota (EDQUOT) and a file-size limit (EFBIG:
`ulimit -f`) count as no space too: the cure is the same.

The checkpoint the save cut short is removed: it cannot be resumed from (train/checkpoints.py would skip
it), and its megabytes are what the job needs to record that it failed. The previous checkpoints stay.
"""

from __future__ import annotations

import errno
import os
import re
import shutil
import traceback

from finetune.runfile.limits import cut
from finetune.train import checkpoints
from finetune.train.runfolder import RunFolder

NO_SPACE = {errno.ENOSPC, errno.EFBIG, getattr(errno, "EDQUOT", errno.ENOSPC)}
WORDS = re.compile(r"No space left on device|Disk quota exceeded|File too large|\(os error (\d+)\)")
ALMOST_FULL = 1 << 20   # bytes: a save that fails with less than this free failed for want of space
SAVING = ("save", "write", "append")   # words in the names of the functions a save goes through


def _chain(exc: BaseException | None):
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        yield exc
        exc = exc.__cause__ or exc.__context__


def _functions(exc: BaseException) -> set[str]:
    return {frame.f_code.co_name for e in _chain(exc) for frame, _ in traceback.walk_tb(e.__traceback__)}


def _free(path) -> int | None:
    try:
        return shutil.disk_usage(path).free
    except OSError:
        return None


def why(exc: BaseException, path) -> str | None:
    """The system's words for "no space" when that is why `exc` happened, else None."""
    for e in _chain(exc):
        if isinstance(e, OSError) and e.errno is not None and e.errno in NO_SPACE:
            return os.strerror(e.errno)
        if (found := WORDS.search(str(e))) and (not found.group(1) or int(found.group(1)) in NO_SPACE):
            return os.strerror(int(found.group(1))) if found.group(1) else found.group(0)
    free = _free(path)
    saving = any(word in name.lower() for name in _functions(exc) for word in SAVING)
    return os.strerror(errno.ENOSPC) if saving and free is not None and free < ALMOST_FULL else None


def _size(n: int) -> str:
    if n < 1000:
        return f"{n:,} bytes"
    size = n / 1000
    for unit in ("KB", "MB"):
        if size < 1000:
            return f"{size:,.1f} {unit}"
        size /= 1000
    return f"{size:,.1f} GB"


def report(folder: RunFolder, exc: BaseException, words: str) -> str:
    """Remove what the failed save left half written; the one line that says what happened and what to do."""
    partial = [p for p in checkpoints.checkpoints(folder.path) if not checkpoints.is_complete(p)]
    functions = _functions(exc)
    if partial:
        what = f"saving {partial[-1].name}"
    elif "_save_checkpoint" in functions:
        what = "saving a checkpoint"
    elif "save_pretrained" in functions or "save_model" in functions:
        what = "saving the adapter"
        shutil.rmtree(folder.adapter_dir, ignore_errors=True)   # half an adapter would be offered for download
    else:
        what = "writing the run folder"
    for path in partial:
        shutil.rmtree(path, ignore_errors=True)
    free = _free(folder.path)
    left = f" ({_size(free)} free now)" if free is not None else ""
    done, _ = checkpoints.last_complete(folder.path)
    then = (f"resume (it goes on from {done.name})" if done else
            "launch the run again (no checkpoint was saved to resume from)")
    return f"disk full while {what} ({words}): free space on the disk of {cut(str(folder.path), 160)}{left} and {then}"
