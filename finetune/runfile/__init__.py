"""The run file: its sections and their one documentation (schema.py), the checks each value passes
(validators.py), YAML/JSON text in and out (text.py), presets, and export to PEFT code or Axolotl.

The rest of the package imports the run file from here; the modules behind it are its own business.
"""

from finetune.runfile.schema import (
    ALL_LINEAR,
    DEMO,
    SECTIONS,
    UNSUPPORTED,
    DataSection,
    LoraSection,
    ModelSection,
    RunConfig,
    TrainingSection,
    field_help,
    load_run,
    parse_run,
)
from finetune.runfile.text import dump_yaml, overlay, parse_text, read_file

__all__ = ["ALL_LINEAR", "DEMO", "SECTIONS", "UNSUPPORTED", "DataSection", "LoraSection", "ModelSection", "RunConfig",
           "TrainingSection", "dump_yaml", "field_help", "load_run", "overlay", "parse_run", "parse_text",
           "read_file"]
