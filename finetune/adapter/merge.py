"""Base model + adapter as one ordinary model: `python -m finetune merge RUN_FOLDER --out DIR`.

PEFT's merge_and_unload adds each adapter's scaled B @ A into the weight it adapts, so the result needs no
PEFT and runs as fast as the base model; it is saved as safetensors with the tokenizer and loads with
AutoModelForCausalLM.from_pretrained(DIR).

The merge is done on the CPU in the base checkpoint's own dtype (a bfloat16 model stays bfloat16 rather
than doubling in float32), or in model.dtype when the run set one. A run that trained on a 4-bit or 8-bit
base is merged into the unquantized 16-bit weights: adding the update into quantized weights would round it
away, and a quantized merged checkpoint could not be re-quantized or trained further.
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

from finetune.adapter.source import AdapterSource, find_adapter
from finetune.errors import RunFileError

SIXTEEN_BIT = ("bfloat16", "float16")


def merge_dtype(source: AdapterSource) -> tuple[str, str | None]:
    """(the dtype to merge in, a note for the user when quantization was dropped)."""
    from finetune.demo import resolve_model

    model = source.run.model
    stored = checkpoint_dtype(resolve_model(model.name_or_path))
    if model.quantization == "none":
        return (model.dtype if model.dtype != "auto" else stored or "float32"), None
    dtype = model.dtype if model.dtype in SIXTEEN_BIT else stored if stored in SIXTEEN_BIT else "bfloat16"
    return dtype, (f"model.quantization is {model.quantization}: the adapter is merged into the base model's "
                   f"unquantized {dtype} weights (merging into quantized ones would round the update away)")


def checkpoint_dtype(name_or_path: str) -> str | None:
    """The dtype a local model folder's config.json says its weights are stored in (None when unknown, or for
    a Hub id: reading it would need the network, and from_pretrained's "auto" reads it anyway)."""
    config = Path(name_or_path) / "config.json"
    try:
        data = json.loads(config.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    value = data.get("dtype") or data.get("torch_dtype")
    return value if value in ("float32", *SIXTEEN_BIT) else None


def merge_run(run_dir, out_dir, overwrite: bool = False, source: AdapterSource | None = None) -> dict:
    """Merge the run's adapter (adapter/, or its newest checkpoint) into its base model and save it to
    out_dir; returns {"out_dir", "dtype", "note", "adapter", "seconds"}."""
    import torch
    from peft import PeftModel
    from transformers import AutoTokenizer

    from finetune.model.loading import load_base, load_tokenizer, quiet_libraries

    source = source or find_adapter(run_dir)
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise RunFileError(f'--out: "{out_dir}" is a file; give a folder')
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise RunFileError(f'--out: "{out_dir}" already holds files; give a new or empty folder')
    quiet_libraries()
    started = time.perf_counter()
    model = source.run.model
    dtype, note = merge_dtype(source)
    base = load_base(model, dtype=getattr(torch, dtype), quantized=False, device_map={"": "cpu"})
    merged = PeftModel.from_pretrained(base, str(source.adapter_dir)).merge_and_unload()
    if (source.adapter_dir / "tokenizer_config.json").is_file():
        tokenizer = AutoTokenizer.from_pretrained(source.adapter_dir)
    else:
        tokenizer = load_tokenizer(model)
    # Written beside, then moved into place: a merge that fails half-way leaves no half a model at out_dir.
    staging = out.with_name(f".{out.name}.merging")
    shutil.rmtree(staging, ignore_errors=True)
    merged.save_pretrained(staging)   # safetensors: transformers' default
    tokenizer.save_pretrained(staging)
    if out.exists():
        shutil.rmtree(out)
    staging.rename(out)
    return {"out_dir": str(out), "dtype": dtype, "note": note, "adapter": source.label,
            "seconds": round(time.perf_counter() - started, 2)}
