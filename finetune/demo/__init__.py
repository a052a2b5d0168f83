"""The built-in demo: a tiny real causal LM and a small dataset made by this project (see build.py),
so that the app and the tests work offline. `demo` in a run file's model.name_or_path or data.path
stands for them."""

from pathlib import Path

# The name that stands for the built-in demo model and dataset. Defined here, at the bottom of the import
# graph, so that the run file (its default), the model and the data can all resolve it (ARCHITECTURE.md).
DEMO = "demo"
HERE = Path(__file__).parent
MODEL_DIR = HERE / "model"          # config.json, model.safetensors, tokenizer files with a chat template
DATA_FILE = HERE / "data" / "train.jsonl"
RUN_FILE = HERE / "run.yaml"         # the demo run: settings under which the demo learns within a minute
# Each method's demo data (method_data.py makes all but train.jsonl): `data: {path: demo}` takes its method's.
DEMO_DATA = {"sft": DATA_FILE, "dpo": HERE / "data" / "preference.jsonl", "orpo": HERE / "data" / "preference.jsonl",
             "kto": HERE / "data" / "unpaired.jsonl", "grpo": HERE / "data" / "prompts.jsonl"}


def resolve_model(name_or_path: str) -> str:
    """A run file's model.name_or_path as transformers should see it."""
    return str(MODEL_DIR) if name_or_path == DEMO else name_or_path


def resolve_data(path: str, method: str = "sft") -> str:
    return str(DEMO_DATA[method]) if path == DEMO else path
