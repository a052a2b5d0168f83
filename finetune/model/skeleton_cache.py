"""The skeletons finetune.model.architecture builds, kept on disk so that a fresh process counts a model it has
seen before without importing torch and transformers (seconds) to rebuild it.

A skeleton is a pure function of three things: the bytes of config.json, the installed transformers and torch
(which decide the module tree built from it), and trust_remote_code. The key hashes exactly those, plus the
skeleton's own field names, so a changed config, an upgrade, or a new Skeleton field each miss, never reuse.
Models with their own code (auto_map) are not kept: their .py files can change under the same config.

Where: $FINETUNE_CACHE_DIR, else $XDG_CACHE_HOME/lora-launchpad/skeletons (~/.cache/... by default). A cache
that cannot be written is skipped silently: it only ever saves time. The demo model's skeleton also ships in
the package (finetune/demo/skeleton.json, written by `python -m finetune.model.architecture`), so the
app's first page needs no torch even on a machine (or a Space) with an empty cache.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import os
from importlib import metadata
from pathlib import Path

from finetune.model.skeleton import Module, Skeleton

FORMAT = 1
SHIPPED = Path(__file__).resolve().parents[1] / "demo" / "skeleton.json"


def cache_dir() -> Path:
    env = os.environ.get("FINETUNE_CACHE_DIR")
    if env:
        return Path(env).expanduser() / "skeletons"
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "lora-launchpad" / "skeletons"


@functools.lru_cache(maxsize=1)
def versions() -> tuple:
    """The libraries a skeleton depends on, read from their installed metadata (no import)."""
    found = []
    for name in ("transformers", "torch"):
        try:
            # The local part (+cpu, +cu124) is the build, not the code: a CPU and a CUDA torch build the same tree.
            found.append(f"{name}=={metadata.version(name).split('+')[0]}")
        except metadata.PackageNotFoundError:
            found.append(f"{name}==none")
    return tuple(found)


def cache_key(config_bytes: bytes, trust_remote_code: bool) -> str:
    shape = [f.name for f in dataclasses.fields(Skeleton)] + [f.name for f in dataclasses.fields(Module)]
    head = json.dumps([FORMAT, versions(), bool(trust_remote_code), shape]).encode()
    return hashlib.sha256(head + b"\0" + config_bytes).hexdigest()


def cacheable(raw: dict) -> bool:
    return isinstance(raw, dict) and "auto_map" not in raw


# --- Skeleton <-> JSON ------------------------------------------------------------------------------------

def to_json(skel: Skeleton, key: str) -> dict:
    return {"key": key, "versions": list(versions()), "model_type": skel.model_type,
            "architecture": skel.architecture, "output_name": skel.output_name, "input_name": skel.input_name,
            "tied": skel.tied, "total": skel.total, "param_names": list(skel.param_names),
            "param_numels": list(skel.param_numels),
            # One short list per module: a 70B model has about a thousand, so the file stays small.
            "modules": [[m.name, m.kind, m.cls, m.in_features, m.out_features, m.has_bias,
                         [list(p) for p in m.params]] for m in skel.modules]}


def from_json(data: dict, source: str) -> Skeleton:
    modules = tuple(Module(name, kind, cls, fin, fout, bool(bias), tuple((local, int(i)) for local, i in params))
                    for name, kind, cls, fin, fout, bias, params in data["modules"])
    return Skeleton(source=source, model_type=data["model_type"], architecture=data["architecture"],
                    modules=modules, param_names=tuple(data["param_names"]),
                    param_numels=tuple(int(n) for n in data["param_numels"]), output_name=data["output_name"],
                    input_name=data["input_name"], tied=bool(data["tied"]), total=int(data["total"]))


# --- reading and writing ----------------------------------------------------------------------------------

def load(key: str, source: str) -> Skeleton | None:
    """The skeleton stored under `key` (in the cache, or the shipped demo one), or None."""
    for path in (cache_dir() / f"{key}.json", SHIPPED):
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            if data.get("key") == key:
                return from_json(data, source)
        except (OSError, ValueError, KeyError, TypeError):
            continue   # missing, half-written by a crashed process, or from an older format: a miss
    return None


def save(key: str, skel: Skeleton) -> None:
    """Store atomically (write, then rename), so that concurrent processes never read half a file."""
    folder = cache_dir()
    try:
        folder.mkdir(parents=True, exist_ok=True)
        tmp = folder / f".{key}.{os.getpid()}.tmp"
        tmp.write_text(json.dumps(to_json(skel, key), separators=(",", ":")), encoding="utf-8")
        os.replace(tmp, folder / f"{key}.json")
    except OSError:
        pass

