"""Presets: partial run files in presets/*.yaml, each with a header comment saying where its values come from.
Choosing one overlays it on the current settings (finetune.runfile.overlay)."""

from __future__ import annotations

from pathlib import Path

from finetune.errors import RunFileError
from finetune.runfile import parse_text

PRESETS_DIR = Path(__file__).resolve().parents[2] / "presets"


def _header(path: Path) -> str:
    """The comment lines at the top of a preset, without their '#'."""
    lines = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.startswith("#"):
            break
        lines.append(line.lstrip("#").strip())
    return " ".join(lines)


def list_presets() -> list[dict]:
    """[{"name", "title", "about"}] in name order; the title is the header's first sentence."""
    out = []
    for path in sorted(PRESETS_DIR.glob("*.yaml")):
        about = _header(path)
        out.append({"name": path.stem, "title": about.split(":")[0] or path.stem, "about": about})
    return out


def load_preset(name: str) -> dict:
    path = PRESETS_DIR / f"{name}.yaml"
    if not path.is_file():
        names = ", ".join(p["name"] for p in list_presets())
        raise RunFileError(f'preset "{name}": no such preset; there are {names}')
    return parse_text(path.read_text(encoding="utf-8"), str(path))
