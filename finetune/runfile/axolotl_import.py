"""Axolotl settings whose meaning a run file holds under another shape: how several GPUs share the model
(`deepspeed`, `fsdp`), whether the model's own code may run (`trust_remote_code`), the attention kernel, and
how a chat dataset names its columns. Each reader takes the parsed Axolotl config (or its first dataset),
writes what it can carry into the run dict and returns one note per key it cannot carry as it was
(finetune/runfile/importers.py reads the rest of the config with the key table in axolotl.py).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import PurePath

from finetune.runfile.data_formats import SHAREGPT_ROLES
from finetune.runfile.parallel import AUTO
from finetune.runfile.validators import show
from finetune.space import REMOTE_CODE_SWITCH, remote_code_allowed

# Keys these readers take; the importer's generic loop leaves them alone.
KEYS = {"deepspeed", "fsdp", "fsdp_config", "fsdp_version", "trust_remote_code", "flash_attention",
        "xformers_attention", "flex_attention", "sdp_attention", "eager_attention"}
# Axolotl's attention switches other than SDPA, the attention transformers picks by default.
OTHER_ATTENTION = ("flash_attention", "xformers_attention", "flex_attention", "eager_attention")
# What Axolotl's chat_template datasets set that the chat format reads anyway.
CHAT_COLUMNS = ("messages", "conversations")   # data.format chat: a messages column, or ShareGPT's conversations
TURN_KEYS = {"messages": [("role", "content")], "conversations": [("role", "content"), ("from", "value")]}


def strategy(raw: dict, run: dict) -> list[str]:
    """`deepspeed` (a JSON file or an inline config) or `fsdp` / `fsdp_config` / `fsdp_version` as
    training.strategy, with the ZeRO stage where the config names one. Axolotl takes the number of processes
    at launch, so the run trains on every free GPU (devices: auto); the job writes its own DeepSpeed and FSDP
    settings, so nothing else in them is carried."""
    deepspeed = raw.get("deepspeed")
    notes = []
    if deepspeed and not isinstance(deepspeed, (str, dict)):
        notes, deepspeed = [f"deepspeed: {show(deepspeed)} is not carried over (a DeepSpeed JSON file or config)"], None
    fsdp = [k for k in ("fsdp", "fsdp_config", "fsdp_version") if raw.get(k) not in (None, False, "", [], {})]
    if deepspeed and fsdp:
        return [f"deepspeed: not carried over, nor {', '.join(fsdp)} (Axolotl refuses both at once); "
                "training.strategy left to ddp"]
    if not deepspeed and not fsdp:
        return notes
    training = run.setdefault("training", {})
    training["devices"] = AUTO
    if fsdp:
        training["strategy"] = "fsdp"
        return [f"{fsdp[0]}: carried over as training.strategy fsdp on devices: auto (every free GPU: Axolotl "
                "takes the process count at launch); FSDP's own settings are the job's (FSDP2, one shard "
                "unit per decoder layer)"]
    training["strategy"] = "deepspeed"
    stage = _zero_stage(deepspeed)
    if stage in (2, 3):
        training["zero_stage"] = stage
        return [f"deepspeed: carried over as training.strategy deepspeed, zero_stage {stage}, on devices: auto "
                "(every free GPU: Axolotl takes the process count at launch); the rest of its DeepSpeed "
                "config is the job's"]
    said = "no ZeRO stage in its name" if stage is None else f"ZeRO stage {stage}, which is not a choice here"
    return [f"deepspeed: carried over as training.strategy deepspeed on devices: auto, with zero_stage 2 "
            f"({show(deepspeed)}: {said}; zero_stage takes 2 or 3)"]


def _zero_stage(deepspeed) -> int | None:
    """The stage an inline config sets, or the one a file's name says (Axolotl ships zero1.json ...
    zero3_bf16_cpuoffload_all.json). The file itself is not read: the config may come from anyone, and a
    path on this machine is not theirs to have read."""
    if isinstance(deepspeed, dict):
        zero = deepspeed.get("zero_optimization")
        stage = zero.get("stage") if isinstance(zero, dict) else None
        return stage if isinstance(stage, int) and not isinstance(stage, bool) else None
    if isinstance(deepspeed, str) and (found := re.search(r"zero(\d)", PurePath(deepspeed).name.lower())):
        return int(found.group(1))
    return None


def trust_remote_code(raw: dict, run: dict, env: Mapping[str, str] | None = None) -> list[str]:
    """trust_remote_code runs the model repository's Python on this machine. It is carried only where its
    host allows code someone else wrote (finetune.space.remote_code_allowed, the rule the app applies to run
    files), and said either way."""
    value = raw.get("trust_remote_code")
    if value in (None, False):
        return []
    if value is not True:
        return [f"model.trust_remote_code: {show(value)} is not carried over (true or false)"]
    if remote_code_allowed(env):
        run.setdefault("model", {})["trust_remote_code"] = True
        return ["model.trust_remote_code: true carried over: the model repository's own Python code will run "
                f"when the model loads (this machine allows it: {REMOTE_CODE_SWITCH})"]
    return ["model.trust_remote_code: true is not carried over: it runs the model repository's own Python code, "
            f"which this machine does not allow ({REMOTE_CODE_SWITCH} allows it); set it yourself in the "
            "run file if you trust the model's author"]


def attention(raw: dict) -> list[str]:
    """The run file has no attention setting: the model loads with transformers' default (SDPA where the
    model has it), as the memory estimate assumes. sdp_attention: true is that default."""
    return [f"{key}: not carried over (the run file has no attention setting: the model loads with "
            "transformers' default, SDPA where the model has it)" for key in OTHER_ATTENTION if raw.get(key)]


def chat_fields(dataset: dict) -> list[str]:
    """A chat_template dataset's column and turn names, taken out of `dataset`: carried when the chat format
    reads them anyway (a messages column with role/content turns, or ShareGPT's conversations column with
    from/value turns and its roles), else one note each."""
    notes = []
    column = dataset.pop("field_messages", None) or "messages"
    if column not in CHAT_COLUMNS:
        notes.append(f"datasets[0].field_messages: {show(column)} is not carried over (the chat format reads a "
                     '"messages" column, or ShareGPT\'s "conversations"); rename the column')
    names = dataset.pop("message_property_mappings", None)
    names = names if isinstance(names, dict) else {}
    role = names.pop("role", None) or dataset.pop("message_field_role", None) or "role"
    content = names.pop("content", None) or dataset.pop("message_field_content", None) or "content"
    dataset.pop("message_field_role", None)
    dataset.pop("message_field_content", None)
    if (role, content) not in TURN_KEYS.get(column if isinstance(column, str) else "messages", TURN_KEYS["messages"]):
        notes.append(f"datasets[0].message_property_mappings: role {show(role)}, content {show(content)} is not "
                     "carried over (chat turns are read as role/content, or from/value in a conversations "
                     "column); rename the keys in the data")
    if names:
        notes.append(f"datasets[0].message_property_mappings: {', '.join(map(str, names))} not carried over "
                     "(turns carry a role and a content only)")
    roles = dataset.pop("roles", None)
    if roles is not None and not _roles_as_ours(roles):
        notes.append(f"datasets[0].roles: {show(roles)} is not carried over (roles are read as user, assistant, "
                     "system and tool, with ShareGPT's human and gpt)")
    return notes


def _roles_as_ours(roles) -> bool:
    """Whether an Axolotl roles mapping ({role: [names in the data]}) renames only what the chat format
    renames anyway."""
    if not isinstance(roles, dict):
        return False
    return all(isinstance(sources, list) and all(SHAREGPT_ROLES.get(str(s)) == target for s in sources)
               for target, sources in roles.items())
