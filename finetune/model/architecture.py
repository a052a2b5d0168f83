"""What a model is made of, read from its config.json alone: every module and parameter, without weights.

The model is built on PyTorch's meta device (shapes, no memory), walked once, and dropped; what is kept is
plain data (a `Skeleton`), cheap to hold even for a 70B config. `finetune.model.count` computes PEFT's numbers from
it, and the UI shows one checkbox per adaptable module group (`Skeleton.adaptable()`).
"""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path

from finetune.errors import RunFileError
from finetune.model import skeleton_cache

# The plain-data types live in skeleton.py (the cache reads them too); the model's modules import them from here.
from finetune.model.skeleton import ADAPTABLE, CONV1D, EMBEDDING, LINEAR, OTHER, Group, Module, Skeleton  # noqa: F401

FIELD = "model.name_or_path"

# --- reading config.json --------------------------------------------------------------------------------

def _config_file(source: str, path: str, revision: str | None) -> Path:
    """The local config.json of a folder, or of a Hub repository (downloaded alone, and cached by the Hub client)."""
    local = Path(path).expanduser()
    if local.is_dir():
        found = local / "config.json"
        if not found.is_file():
            raise RunFileError(f'{FIELD}: the folder "{source}" has no config.json')
        return found
    if local.exists():
        raise RunFileError(f'{FIELD}: "{source}" is a file; give the model folder (with config.json) or a Hub id')
    looks_local = path.startswith(("/", "./", "../", "~")) or path.count("/") > 1 or (os.sep != "/" and os.sep in path)
    if looks_local:
        raise RunFileError(f'{FIELD}: no such folder "{source}"')
    return _hub_config(source, path, revision)


def _hub_config(source: str, repo_id: str, revision: str | None) -> Path:
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import (
        GatedRepoError,
        HFValidationError,
        LocalEntryNotFoundError,
        RemoteEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    where = f'"{source}"' + (f" at revision {revision!r}" if revision else "")
    try:
        return Path(hf_hub_download(repo_id, "config.json", revision=revision))
    except HFValidationError:
        raise RunFileError(f'{FIELD}: "{source}" is neither a local folder nor a valid Hub model id') from None
    except GatedRepoError:
        raise RunFileError(f"{FIELD}: {where} is gated on the Hugging Face Hub; accept its terms and log in "
                           "(hf auth login or HF_TOKEN)") from None
    except RepositoryNotFoundError:
        raise RunFileError(f'{FIELD}: no local folder or Hub model named "{source}" (a private model needs '
                           "HF_TOKEN)") from None
    except RevisionNotFoundError:
        raise RunFileError(f'model.revision: {revision!r} is not a branch, tag or commit of "{source}"') from None
    except RemoteEntryNotFoundError:
        raise RunFileError(f"{FIELD}: the Hub repository {where} has no config.json") from None
    except (LocalEntryNotFoundError, Exception):
        # Offline mode, no network, a proxy, a timeout: all say the same to the user.
        raise RunFileError(_offline(where)) from None


def _offline(where: str) -> str:
    return (f"{FIELD}: cannot read config.json of {where} from the Hugging Face Hub (offline?); "
            "check the name and the network, or give a local model folder")


def _load_config(source: str, config_file: Path, trust_remote_code: bool, hub_id: str | None, revision):
    from transformers import AutoConfig

    try:
        raw = json.loads(config_file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise RunFileError(f'{FIELD}: config.json of "{source}" cannot be read: {exc}') from None
    if not isinstance(raw, dict) or (not raw.get("model_type") and "auto_map" not in raw):
        raise RunFileError(f'{FIELD}: config.json of "{source}" has no "model_type", so transformers cannot '
                           "tell which architecture it is")
    if raw.get("model_type") not in _known_types():
        if "auto_map" not in raw:
            raise RunFileError(f'{FIELD}: "{source}" is a {raw.get("model_type")!r} model, an architecture this '
                               "version of transformers does not know (upgrade transformers?)")
        if not trust_remote_code:
            raise RunFileError(f'{FIELD}: "{source}" uses its own model code; set model.trust_remote_code: true '
                               "if you trust its author")
    # Remote code from the Hub needs the repository's .py files next to config.json: let transformers fetch them.
    where = hub_id if (hub_id and trust_remote_code and "auto_map" in raw) else str(config_file.parent)
    try:
        return AutoConfig.from_pretrained(where, revision=revision if where == hub_id else None,
                                          trust_remote_code=trust_remote_code)
    except (ValueError, KeyError, TypeError) as exc:
        raise RunFileError(f'{FIELD}: config.json of "{source}" is not valid: {_first_line(exc)}') from None
    except Exception as exc:
        raise RunFileError(f'{FIELD}: config.json of "{source}" cannot be loaded: {_first_line(exc)}') from None


def _known_types() -> set:
    from transformers.models.auto.configuration_auto import CONFIG_MAPPING_NAMES
    return set(CONFIG_MAPPING_NAMES)


def _first_line(exc: Exception) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0]


# --- walking the model ----------------------------------------------------------------------------------

def _build(source: str, config, trust_remote_code: bool):
    import torch
    from transformers import AutoModelForCausalLM

    try:
        with torch.device("meta"):
            return AutoModelForCausalLM.from_config(config, trust_remote_code=trust_remote_code)
    except ValueError as exc:
        if "Unrecognized configuration class" in str(exc):
            raise RunFileError(f'{FIELD}: "{source}" is a {config.model_type!r} model, which transformers cannot '
                               "load as a causal language model (AutoModelForCausalLM)") from None
        raise RunFileError(f'{FIELD}: transformers cannot build "{source}" from its config.json: '
                           f"{_first_line(exc)}") from None
    except Exception as exc:  # a config with impossible sizes fails deep inside the model's constructor
        raise RunFileError(f'{FIELD}: transformers cannot build "{source}" from its config.json: '
                           f"{_first_line(exc)}") from None


def _walk(source: str, model) -> Skeleton:
    import torch
    from transformers.pytorch_utils import Conv1D

    param_index: dict[int, int] = {}
    names: list[str] = []
    numels: list[int] = []
    for name, p in model.named_parameters():   # dedups tied weights exactly as PEFT's count does
        param_index[id(p)] = len(names)
        names.append(name)
        numels.append(p.numel())

    out_emb, in_emb = model.get_output_embeddings(), model.get_input_embeddings()
    output_name = input_name = None
    modules = []
    for name, mod in model.named_modules():
        if mod is out_emb:
            output_name = name
        if mod is in_emb:
            input_name = name
        if not name:
            continue
        own = tuple((local, param_index[id(p)]) for local, p in mod.named_parameters(recurse=False))
        bias = getattr(mod, "bias", None)
        has_bias = isinstance(bias, torch.nn.Parameter)
        if isinstance(mod, torch.nn.Linear):
            kind, fin, fout = LINEAR, mod.in_features, mod.out_features
        elif isinstance(mod, Conv1D):
            kind, (fin, fout) = CONV1D, tuple(mod.weight.shape)   # stored (in, out): PEFT reads it that way
        elif isinstance(mod, torch.nn.Embedding):
            kind, fin, fout = EMBEDDING, mod.num_embeddings, mod.embedding_dim
        else:
            kind, fin, fout = OTHER, 0, 0
        modules.append(Module(name, kind, type(mod).__name__, fin, fout, has_bias, own))

    tied = bool(out_emb is not None and in_emb is not None
                and getattr(out_emb, "weight", None) is getattr(in_emb, "weight", 0))
    return Skeleton(source=source, model_type=model.config.model_type, architecture=type(model).__name__,
                    modules=tuple(modules), param_names=tuple(names), param_numels=tuple(numels),
                    output_name=output_name, input_name=input_name, tied=tied, total=sum(numels))


# --- the cache ------------------------------------------------------------------------------------------

_cache: dict[tuple, Skeleton] = {}
_failures: dict[tuple, tuple[float, RunFileError]] = {}
_lock = threading.Lock()   # the UI counts from several threads at once: build each model once
KEEP = 32                  # skeletons kept; a 70B one is about a thousand small records
RETRY_AFTER_S = 60.0       # an unreachable Hub id is not asked again (each try can take ~25 s) for this long


def inspect_model(name_or_path: str, revision: str | None = None, trust_remote_code: bool = False) -> Skeleton:
    """The skeleton of a model, from its config.json only (local folder, Hub id, or "demo").
    Raises RunFileError with one line when the config cannot be found, read or built."""
    from finetune.demo import resolve_model

    path = resolve_model(name_or_path)
    local = Path(path).expanduser()
    # A local config.json may be edited between two counts: its modification time is part of the key.
    config_json = local / "config.json"
    stamp = config_json.stat().st_mtime_ns if config_json.is_file() else None
    key = (path, revision, bool(trust_remote_code), stamp)
    found = _cache.get(key)
    if found is not None:
        return found
    with _lock:
        found = _cache.get(key)
        if found is not None:
            return found
        failed = _failures.get(key)
        if failed and time.monotonic() - failed[0] < RETRY_AFTER_S:
            raise failed[1]
        try:
            found = _read(name_or_path, path, revision, trust_remote_code, local.is_dir())
        except RunFileError as exc:
            if not local.is_dir():
                _failures[key] = (time.monotonic(), exc)
            raise
        while len(_cache) >= KEEP:
            _cache.pop(next(iter(_cache)))
        _cache[key] = found
        return found


def _read(source: str, path: str, revision, trust_remote_code: bool, is_local: bool, disk: bool = True) -> Skeleton:
    """The skeleton from the on-disk cache (finetune.model.skeleton_cache) when this config.json was built
    before with the same libraries; else built (importing torch and transformers, seconds) and stored."""
    config_file = _config_file(source, path, revision)
    key = _disk_key(config_file, trust_remote_code) if disk else None
    if key is not None:
        found = skeleton_cache.load(key, source)
        if found is not None:
            return found
    config = _load_config(source, config_file, trust_remote_code, None if is_local else path, revision)
    model = _build(source, config, trust_remote_code)
    skel = _walk(source, model)   # the model itself is dropped here: only plain data is kept
    if key is not None:
        skeleton_cache.save(key, skel)
    return skel


def _disk_key(config_file: Path, trust_remote_code: bool) -> str | None:
    """The cache key of a config.json, or None when it cannot be kept (unreadable: _load_config says why;
    a model with its own code)."""
    try:
        data = config_file.read_bytes()
        if not skeleton_cache.cacheable(json.loads(data)):
            return None
    except (OSError, ValueError):
        return None
    return skeleton_cache.cache_key(data, trust_remote_code)


def clear_cache() -> None:
    _cache.clear()
    _failures.clear()


def ship_demo() -> Path:
    """(Re)write finetune/demo/skeleton.json (skeleton_cache.SHIPPED) from a fresh build of the demo model with
    the installed libraries: `python -m finetune.model.architecture`. Here, beside _read, which it calls."""
    from finetune.demo import MODEL_DIR
    config = (MODEL_DIR / "config.json").read_bytes()
    skel = _read("demo", str(MODEL_DIR), None, False, is_local=True, disk=False)
    data = skeleton_cache.to_json(skel, skeleton_cache.cache_key(config, False))
    skeleton_cache.SHIPPED.write_text(json.dumps(data, separators=(",", ":")) + "\n", encoding="utf-8")
    return skeleton_cache.SHIPPED


if __name__ == "__main__":
    print(f"wrote {ship_demo()}")
