"""The exact parameter count of a LoRA run, in closed form from the model's skeleton (finetune.model.architecture):
the same `trainable` and `total` PEFT's `PeftModel.get_nb_trainable_parameters()` reports after
`get_peft_model(model, LoraConfig(...))`, without building adapters (and without importing peft, ~10 s).

Per adapted layer with `in` inputs and `out` outputs at rank r (PEFT's lora/layer.py):
  Linear / Conv1D   A (r x in) + B (out x r)      + out with lora_bias (B's bias)   + out with DoRA (magnitude)
  Embedding         A (r x vocab) + B (dim x r)                                     + dim with DoRA
modules_to_save adds a full trainable copy of each module (to the total as well), and bias="all" or
"lora_only" unfreezes existing biases. Quantized models (4-bit, 8-bit) count as unquantized, as PEFT does.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from dataclasses import dataclass, field
from functools import cached_property

from finetune.errors import RunFileError
from finetune.model import patterns
from finetune.model.architecture import EMBEDDING, Skeleton, inspect_model
from finetune.model.dtypes import SAFETENSORS_NAME, resolve_dtype
from finetune.model.targets import Match, match
from finetune.runfile.validators import show

DTYPE_BYTES = {"F32": 4, "BF16": 2, "F16": 2}


@dataclass
class Count:
    trainable: int
    total: int
    # short name -> {"layers", "shape": [in, out] (or a list of them), "r" (or "ranks"), "params"}; full copies
    # (modules_to_save) are keyed by their entry with "full": true, trained biases by "bias".
    modules: dict
    scaling: float           # lora_alpha / r (or / sqrt(r) with rsLoRA) of the default rank and alpha
    # What adapter_bytes needs, kept so that the (rarely read) file size costs nothing per count.
    _skel: Skeleton | None = field(repr=False, default=None)
    _match: Match | None = field(repr=False, default=None)
    _lora: object = field(repr=False, default=None)
    _base_dtype: str = field(repr=False, default="F32")

    @property
    def percent(self) -> float:
        return 100.0 * self.trainable / self.total if self.total else 0.0

    def to_json(self, config_name: str) -> dict:
        """The object `count --json` prints for one run file, and the app's /count endpoint returns."""
        return {"config": config_name, "trainable": self.trainable, "total": self.total,
                "percent": round(self.percent, 4), "modules": self.modules}

    @cached_property
    def adapter_bytes(self) -> int:
        """Size of the adapter_model.safetensors PEFT's save_pretrained writes: adapters in float32 (PEFT
        keeps them there), trained biases and full copies in the base model's dtype, plus the file's header."""
        assert self._skel is not None and self._match is not None, "a Count made by count_lora"
        return safetensors_size(adapter_tensors(self._skel, self._match, self._lora, self._base_dtype))


def count_run(run) -> Count:
    """Count a RunConfig. Raises RunFileError (one line per problem) when its settings do not fit the model."""
    skel = inspect_model(run.model.name_or_path, run.model.revision, run.model.trust_remote_code)
    return count_lora(skel, run.lora, base_dtype(run.model.dtype))


def base_dtype(dtype: str) -> str:
    """The safetensors dtype the frozen model (and so its biases and full copies) will have."""
    return SAFETENSORS_NAME[resolve_dtype(dtype)]


def count_lora(skel: Skeleton, lora, dtype: str = "F32") -> Count:
    """Count a LoraSection on a skeleton; `dtype` is the frozen model's, for adapter_bytes."""
    problems = []
    if lora.lora_bias and lora.use_dora:
        problems.append("lora.lora_bias: PEFT does not support it together with lora.use_dora")
    if lora.lora_bias and lora.init_lora_weights not in (True, False):
        problems.append(f"lora.lora_bias: PEFT supports it only with init_lora_weights true or false, got "
                        f"{show(lora.init_lora_weights)}")
    try:
        with patterns.budget():   # every pattern of this run file, together
            found = match(skel, lora)
            ranks = _ranks(skel, found, lora)
    except RunFileError as exc:
        raise RunFileError(problems + exc.problems) from None
    embedding = next((skel.modules[i].name for i in found.adapted if skel.modules[i].kind == EMBEDDING), None)
    if lora.lora_bias and embedding:
        problems.append(f"lora.lora_bias: PEFT does not support it on embedding layers, and {embedding} is one")
    if problems:
        raise RunFileError(problems)

    modules: dict = {}
    trainable = 0
    for (short, _kind, fin, fout, _), per_rank in ranks["buckets"].items():
        for rank, layers in per_rank.items():
            r = rank or lora.r
            each = r * (fin + fout)
            if lora.lora_bias:
                each += fout
            if lora.use_dora:
                each += fout
            trainable += each * layers
            _add(modules, short, layers, (fin, fout), r, each * layers)
    adapters = trainable

    bias_tensors, bias_params = _biases(skel, found, ranks, lora.bias)
    if bias_params:
        modules["bias"] = {"layers": bias_tensors, "params": bias_params}
        trainable += bias_params
    for i, entry, params in zip(found.saved, found.saved_entry, found.saved_sizes, strict=True):
        m = skel.modules[i]
        row = modules.setdefault(entry if entry not in modules else f"{entry} (full)",
                                 {"layers": 0, "shape": [m.in_features, m.out_features] if m.in_features else None,
                                  "params": 0, "full": True})
        row["layers"] += 1
        row["params"] += params
    trainable += found.saved_params

    scaling = lora.lora_alpha / (math.sqrt(lora.r) if lora.use_rslora else lora.r)
    return Count(trainable=trainable, total=skel.total + adapters + found.saved_params, modules=modules,
                 scaling=scaling, _skel=skel, _match=found, _lora=lora, _base_dtype=dtype)


def _add(modules: dict, short: str, layers: int, shape: tuple, r: int, params: int) -> None:
    row = modules.get(short)
    if row is None:
        modules[short] = {"layers": layers, "shape": list(shape), "r": r, "params": params}
        return
    row["layers"] += layers
    row["params"] += params
    shapes = row["shape"] if isinstance(row["shape"][0], list) else [row["shape"]]
    if list(shape) not in shapes:
        row["shape"] = [*shapes, list(shape)]
    ranks = row.pop("r", None)
    ranks = set(row.get("ranks", [])) | ({ranks} if ranks else set()) | {r}
    if len(ranks) == 1:
        row["r"] = r
        row.pop("ranks", None)
    else:
        row["ranks"] = sorted(ranks)


def _ranks(skel: Skeleton, found: Match, lora) -> dict:
    """Adapted layers bucketed by (short name, kind, in, out, bias) and rank_pattern's rank (0: the default r),
    cached per match and patterns: a count then loops over a handful of buckets, not over every layer."""
    key = ("ranks", found.key, tuple(lora.rank_pattern.items()), tuple(lora.alpha_pattern.items()))
    cached = skel.memo.get(key)
    if cached is not None:
        if isinstance(cached, RunFileError):
            raise cached
        return cached
    problems: list[str] = []
    names = tuple(skel.modules[i].name for i in found.adapted)
    keys, valid = {}, {}
    for field_name in ("rank_pattern", "alpha_pattern"):
        keys[field_name], valid[field_name] = _pattern_keys(field_name, getattr(lora, field_name), names, problems)
    buckets: dict = {}
    used: dict[str, set[str]] = {"rank_pattern": set(), "alpha_pattern": set()}
    for i, name in zip(found.adapted, names, strict=True):
        m = skel.modules[i]
        rank = 0
        for field_name, table in keys.items():
            hit = table.get(name)
            if hit is not None:
                used[field_name].add(hit)
                if field_name == "rank_pattern":
                    rank = lora.rank_pattern[hit]
        per_rank = buckets.setdefault((m.short, m.kind, m.in_features, m.out_features, m.has_bias), Counter())
        per_rank[rank] += 1
    for field_name, written in valid.items():
        for k in written:
            if k not in used[field_name]:
                problems.append(f"lora.{field_name}: {show(k)} matches no adapted module (it is matched against "
                                "the end of each adapted module's full name, e.g. "
                                f"{skel.modules[found.adapted[0]].name})")
    # A failure is remembered too: the same settings are asked about again at every slider move.
    skel.memo[key] = RunFileError(problems) if problems else {"buckets": buckets}
    if problems:
        raise skel.memo[key]
    return skel.memo[key]


def _pattern_keys(field_name: str, table: dict, names: tuple, problems: list) -> tuple[dict, list]:
    """PEFT's get_pattern_key for every name at once: {name: the first key, in the order written, whose
    regex (.*\\.)?(key)$ matches the name}, and the keys that are regular expressions (the others are problems).
    A key too costly to match raises patterns.TooCostly."""
    first: dict[str, str] = {}
    valid = []
    for k in table:
        try:
            found = patterns.find(f"lora.{field_name}", k, rf"(.*\.)?({k})$", names, "match")
        except patterns.Invalid as exc:
            problems += exc.problems
            continue
        valid.append(k)
        for name, hit in zip(names, found, strict=True):
            if hit:
                first.setdefault(name, k)
    return first, valid


def _biases(skel: Skeleton, found: Match, ranks: dict, bias: str) -> tuple[int, int]:
    """(tensors, parameters) of existing biases made trainable: every parameter named *.bias outside the full
    copies' originals with bias="all"; the adapted layers' own biases with "lora_only"."""
    if bias == "all":
        key = ("bias-all", found.key)
        cached = skel.memo.get(key)
        if cached is None:
            hits = [n for i, (name, n) in enumerate(zip(skel.param_names, skel.param_numels, strict=True))
                    if (name == "bias" or name.endswith(".bias")) and i not in found.frozen]
            cached = skel.memo[key] = (len(hits), sum(hits))
        return cached
    if bias == "lora_only":
        tensors = params = 0
        for (_, kind, _, fout, has_bias), per_rank in ranks["buckets"].items():
            if has_bias and kind != EMBEDDING:
                layers = sum(per_rank.values())
                tensors += layers
                params += fout * layers
        return tensors, params
    return 0, 0


# --- the adapter file -----------------------------------------------------------------------------------

def adapter_tensors(skel: Skeleton, found: Match, lora, base: str) -> list[tuple[str, str, tuple[int, ...]]]:
    """(name, dtype, shape) of each tensor in adapter_model.safetensors, named as PEFT names them."""
    out: list[tuple[str, str, tuple[int, ...]]] = []
    pre = "base_model.model."
    names = tuple(skel.modules[i].name for i in found.adapted)
    rank_key, _ = _pattern_keys("rank_pattern", lora.rank_pattern, names, [])   # _ranks asked already: cached
    for i in found.adapted:
        m = skel.modules[i]
        r = lora.rank_pattern[rank_key[m.name]] if m.name in rank_key else lora.r
        if m.kind == EMBEDDING:
            out += [(f"{pre}{m.name}.lora_embedding_A", "F32", (r, m.in_features)),
                    (f"{pre}{m.name}.lora_embedding_B", "F32", (m.out_features, r))]
        else:
            out += [(f"{pre}{m.name}.lora_A.weight", "F32", (r, m.in_features)),
                    (f"{pre}{m.name}.lora_B.weight", "F32", (m.out_features, r))]
            if lora.lora_bias:
                out.append((f"{pre}{m.name}.lora_B.bias", "F32", (m.out_features,)))
        if lora.use_dora:
            out.append((f"{pre}{m.name}.lora_magnitude_vector", "F32", (m.out_features,)))
    adapted = {skel.modules[i].name for i in found.adapted}
    if lora.bias in ("all", "lora_only"):
        for m in skel.modules:
            for local, p in m.params:
                if local != "bias" or (lora.bias == "lora_only" and m.name not in adapted):
                    continue
                if p in found.frozen:
                    continue
                where = f"{m.name}.base_layer" if m.name in adapted else m.name
                out.append((f"{pre}{where}.bias", base, (skel.param_numels[p],)))
    for i in found.saved:
        m = skel.modules[i]
        for sub in skel.modules:
            if sub.name == m.name or sub.name.startswith(m.name + "."):
                rel = sub.name[len(m.name) + 1:]
                for local, p in sub.params:
                    tail = f"{rel}.{local}" if rel else local
                    out.append((f"{pre}{m.name}.{tail}", base, (skel.param_numels[p],)))
                    if lora.bias == "all" and local == "bias":   # the wrapper's inner copies are named *.bias too
                        out += [(f"{pre}{m.name}.original_module.{tail}", base, (skel.param_numels[p],)),
                                (f"{pre}{m.name}.modules_to_save.{tail}", base, (skel.param_numels[p],))]
    if found.embedding_targeted:
        for name in (skel.input_name, skel.output_name):
            m = skel.by_name().get(name)
            if m is not None and name in adapted:
                for local, p in m.params:
                    out.append((f"{pre}{name}.base_layer.{local}", base, (skel.param_numels[p],)))
    return out


def safetensors_size(tensors) -> int:
    """Bytes of a safetensors file: an 8-byte length, a JSON header padded to 8 bytes, then the data, laid out
    by dtype (widest first) and then by name, as the safetensors library does."""
    ordered = sorted(tensors, key=lambda t: (-DTYPE_BYTES[t[1]], t[0]))
    header: dict[str, dict] = {"__metadata__": {"format": "pt"}}
    offset = 0
    for name, dtype, shape in ordered:
        size = DTYPE_BYTES[dtype] * math.prod(shape)
        header[name] = {"dtype": dtype, "shape": list(shape), "data_offsets": [offset, offset + size]}
        offset += size
    text = len(json.dumps(header, separators=(",", ":")).encode())
    return 8 + text + (-text % 8) + offset
