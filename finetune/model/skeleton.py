"""What a model is made of, as plain data: its modules (`Module`), what LoRA can adapt grouped by short name
(`Group`), and the whole `Skeleton`. Built by finetune.model.architecture, kept on disk by
finetune.model.skeleton_cache; a module of its own so that the cache needs the types, not the builder (which
uses the cache: one arrow each way was a cycle).
"""

from __future__ import annotations

from dataclasses import dataclass, field

# Layer kinds PEFT's LoRA can wrap, by the name this project gives them. torch's own Conv1d/Conv2d and
# MultiheadAttention are adaptable by PEFT too, but no causal LM of interest targets them: they are "other".
LINEAR, CONV1D, EMBEDDING, OTHER = "linear", "conv1d", "embedding", "other"
ADAPTABLE = (LINEAR, CONV1D, EMBEDDING)


@dataclass(frozen=True)
class Module:
    name: str                 # full dotted name, as model.named_modules() gives it
    kind: str                 # linear | conv1d | embedding | other
    cls: str                  # class name, for messages ("LlamaRMSNorm")
    in_features: int = 0      # Linear/Conv1D: inputs; Embedding: vocabulary size
    out_features: int = 0     # Linear/Conv1D: outputs; Embedding: embedding size
    has_bias: bool = False
    params: tuple = ()        # its own (non-recursive) parameters: (local name, index into Skeleton.param_names)

    @property
    def short(self) -> str:
        return self.name.rsplit(".", 1)[-1]

    @property
    def adaptable(self) -> bool:
        return self.kind in ADAPTABLE


@dataclass(frozen=True)
class Group:
    """Adaptable modules sharing a short name: what one entry of target_modules selects."""
    name: str                 # short name: q_proj, c_attn, embed_tokens, lm_head ...
    kind: str
    shapes: tuple             # distinct (in, out) pairs, in model order
    layers: int               # how many modules carry this name
    params: int               # their base parameters (weights and biases)
    all_linear: bool          # whether target_modules "all-linear" takes them


@dataclass(frozen=True)
class Skeleton:
    source: str               # what the run file said (a Hub id, a folder, "demo")
    model_type: str
    architecture: str         # class built by AutoModelForCausalLM, e.g. LlamaForCausalLM
    modules: tuple            # Module, in named_modules() order, the root ("") left out
    param_names: tuple        # unique parameters in named_parameters() order (tied weights once)
    param_numels: tuple
    output_name: str | None   # the output embedding (lm_head), left out of "all-linear"
    input_name: str | None    # the input embedding
    tied: bool                # lm_head shares the input embedding's weight
    total: int                # sum of param_numels: what PEFT reports as "all params" before adapters
    # Per-skeleton memo of target matching (finetune.model.targets), so moving r or alpha only redoes arithmetic.
    memo: dict = field(default_factory=dict, compare=False, repr=False)

    def by_name(self) -> dict:
        found = self.memo.get("by_name")
        if found is None:
            found = self.memo["by_name"] = {m.name: m for m in self.modules}
        return found

    def adaptable(self) -> list[Group]:
        """What LoRA can adapt, grouped by short name, in model order."""
        found = self.memo.get("groups")
        if found is not None:
            return found
        order: dict[str, list[Module]] = {}
        for m in self.modules:
            if m.adaptable:
                order.setdefault(m.short, []).append(m)
        groups = []
        for short, mods in order.items():
            shapes = tuple(dict.fromkeys((m.in_features, m.out_features) for m in mods))
            params = sum(self.param_numels[i] for i in {i for m in mods for _, i in m.params})
            all_linear = any(m.kind in (LINEAR, CONV1D) and m.name != self.output_name for m in mods)
            groups.append(Group(short, mods[0].kind, shapes, len(mods), params, all_linear))
        self.memo["groups"] = groups
        return groups
