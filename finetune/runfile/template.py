"""`python -m finetune init [--preset NAME] [--model ID] > my-run.yaml`: a complete run file, every setting
with its value and, above it, its one documentation from the schema (so the comments never drift from the
checks). The result parses back to exactly the run it shows.
"""

from __future__ import annotations

import dataclasses
import textwrap

from finetune.runfile import SECTIONS, RunConfig, dump_yaml, overlay

WIDTH = 100


def _comment(text: str, indent: str) -> list[str]:
    return textwrap.wrap(text, WIDTH, initial_indent=f"{indent}# ", subsequent_indent=f"{indent}# ")


def _section_doc(cls) -> str:
    doc = (cls.__doc__ or "").strip()
    return "" if doc.startswith(f"{cls.__name__}(") else " ".join(doc.split())   # dataclass's own signature


def run_template(preset: str | None = None, model: str | None = None) -> str:
    """The commented run file; raises RunFileError for an unknown preset or a value the run file refuses."""
    from finetune.runfile.presets import PRESETS_DIR, _header, load_preset

    raw = load_preset(preset) if preset else {}
    if model:
        raw = overlay(raw, {"model": {"name_or_path": model}})
    run = RunConfig.from_dict(raw)
    made = " ".join(["python -m finetune init"] + ([f"--preset {preset}"] if preset else [])
                    + ([f"--model {model}"] if model else []))
    lines = [f"# A LoRA Launchpad run file, made by: {made}",
             "# Every setting is here with its value; delete the ones you keep at their default if you like.",
             "# Check and count it:  python -m finetune count my-run.yaml",
             "# Train it:            python -m finetune train my-run.yaml"]
    if preset:
        lines += _comment(f"Preset {preset}: {_header(PRESETS_DIR / f'{preset}.yaml')}", "")
    values = run.to_dict()
    for name, cls in SECTIONS.items():
        lines.append("")
        lines += _comment(_section_doc(cls), "") if _section_doc(cls) else []
        lines.append(f"{name}:")
        for f in dataclasses.fields(cls):
            lines += _comment(f.metadata["help"], "  ")
            # The method section holds only its method's settings (none for sft): the others are shown unset.
            value = values.get(name, {}).get(f.name, getattr(getattr(run, name), f.name))
            lines.append("  " + dump_yaml({f.name: value}).rstrip("\n").replace("\n", "\n  "))
        if name == "training":
            for key, value in run.training_extra.items():
                lines.append("  # A further trl.SFTConfig key (the ones allowed: finetune/runfile/allowlist.py).")
                lines.append("  " + dump_yaml({key: value}).rstrip("\n").replace("\n", "\n  "))
    return "\n".join(lines) + "\n"
