"""The model card (README.md) that goes with a pushed adapter or merged model, and its loss-curve picture.

It says what a reader needs to trust and reuse the result: the base model, the dataset, how it learned (the
method and its settings: SFT, or DPO's beta and loss, GRPO's rewards...), the exact number of trained parameters, the final and best loss with the curve, the library versions, the code that loads it,
and the whole run file that reproduces it (`python -m finetune train run.yaml`).
"""

from __future__ import annotations

import re
from importlib import metadata
from pathlib import Path
from typing import Any

from finetune.adapter.source import AdapterSource
from finetune.runfile import DEMO

LIBRARIES = ("torch", "transformers", "peft", "trl", "datasets", "accelerate", "huggingface_hub", "bitsandbytes")
HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
PEFT_COUNT = re.compile(r"parameters: ([\d,]+) trainable of ([\d,]+) \(PEFT")


def is_hub_id(name: str) -> bool:
    """A Hub repository id rather than a local path (which may also contain one '/')."""
    return bool(HUB_ID.match(name or "")) and not Path(name).exists()


def library_versions() -> dict[str, str]:
    out = {}
    for name in LIBRARIES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return out


def parameter_count(source: AdapterSource) -> tuple[int, int] | None:
    """(trainable, total) as PEFT reported them in the job's log, else the exact count from config.json."""
    log = source.folder.log_file
    if log.is_file():
        found = PEFT_COUNT.findall(log.read_text(encoding="utf-8", errors="replace"))
        if found:
            trainable, total = found[-1]
            return int(trainable.replace(",", "")), int(total.replace(",", ""))
    try:
        from finetune.model.count import count_run

        count = count_run(source.run)
        return count.trainable, count.total
    except Exception:  # a card without a count beats no card
        return None


def losses(metrics: list[dict]) -> dict:
    """The curve's summary: final and best training loss (with their steps), last evaluation loss. The curves
    are the page's own (finetune/jobs/history.curves), so the card's final loss is the one the runs table shows."""
    from finetune.jobs.history import curves

    points = curves(metrics)
    train, evals = points["train"], points["eval"]
    out: dict[str, Any] = {"train": train, "eval": evals}   # point lists, and (step, loss) points
    if train:
        out["final"] = train[-1]
        out["best"] = min(train, key=lambda point: point[1])
    if evals:
        out["eval_final"] = evals[-1]
        out["eval_best"] = min(evals, key=lambda point: point[1])
    return out


def loss_png(metrics: list[dict], path) -> bool:
    """Draw the loss curve to a PNG at `path`; False (and no file) when the run logged no loss."""
    summary = losses(metrics)
    if not summary["train"]:
        return False
    import matplotlib

    matplotlib.use("Agg")   # no display: draw to a file
    from matplotlib.figure import Figure

    figure = Figure(figsize=(6.4, 3.6), dpi=100)
    axes = figure.add_subplot()
    steps, values = zip(*summary["train"], strict=True)
    axes.plot(steps, values, label="train", color="#4c78a8")
    if summary["eval"]:
        steps, values = zip(*summary["eval"], strict=True)
        axes.plot(steps, values, label="eval", color="#f58518", marker="o")
    axes.set_xlabel("step")
    axes.set_ylabel("loss")
    axes.grid(alpha=0.3)
    axes.legend()
    figure.tight_layout()
    figure.savefig(path, format="png")
    return True


def describe_model(name: str) -> str:
    if name == DEMO:
        return "the built-in demo model of LoRA Launchpad (a tiny Llama; not on the Hub)"
    return f"[{name}](https://huggingface.co/{name})" if is_hub_id(name) else f"a local model folder (`{Path(name).name}`)"


def describe_data(source: AdapterSource) -> str:
    data = source.run.data
    if data.path == DEMO:
        what = "the built-in demo dataset of LoRA Launchpad"
    elif is_hub_id(data.path):
        what = f"[{data.path}](https://huggingface.co/datasets/{data.path})" + (f" ({data.name})" if data.name else "")
    else:
        what = f"a local file (`{Path(data.path).name}`)"
    if source.run.method.name == "grpo":   # its examples are prompts, kept whole (train/methods.py)
        return f"{what}, format `{data.format}`, prompts of up to {data.max_length} tokens"
    return f"{what}, format `{data.format}`, up to {data.max_length} tokens per example"


# How each method learns, for the card's reader.
METHOD_WORDS = {"sft": "SFT (supervised fine-tuning on the examples)",
                "dpo": "DPO (Direct Preference Optimization, on chosen/rejected pairs)",
                "kto": "KTO (Kahneman-Tversky Optimization, on answers labelled good or bad)",
                "orpo": "ORPO (Odds Ratio Preference Optimization, on chosen/rejected pairs)",
                "grpo": "GRPO (Group Relative Policy Optimization: generated answers scored by rewards)"}


def _cell(text) -> str:
    """Text inside a Markdown table cell: a | would end the cell."""
    return str(text).replace("|", "\\|").replace("\n", " ")


def describe_method(run) -> str:
    """The method, its settings as run.yaml holds them (TRL's defaults filled in), and GRPO's rewards."""
    from finetune.runfile.method import as_dict

    method = as_dict(run.method)
    if method is None:
        return METHOD_WORDS["sft"]
    settings = ", ".join(f"{k} {v:g}" if isinstance(v, float) else f"{k} {v}" for k, v in method.items()
                         if k not in ("name", "rewards") and v is not None)
    text = METHOD_WORDS.get(method["name"], method["name"]) + (f"; {settings}" if settings else "")
    rewards = []
    for reward in method.get("rewards") or []:
        args = ", ".join(f"{k} `{v}`" for k, v in reward.items() if k not in ("type", "weight"))
        rewards.append(f"{reward['type']} ({args}, weight {reward.get('weight', 1.0):g})")
    return _cell(text + (f"; rewards: {'; '.join(rewards)}" if rewards else ""))


def loading_snippet(source: AdapterSource, repo_id: str, merged: bool) -> str:
    base = source.run.model.name_or_path
    base_ref = base if is_hub_id(base) else "path/to/the/base/model"
    if merged:
        return (f'from transformers import AutoModelForCausalLM, AutoTokenizer\n\n'
                f'model = AutoModelForCausalLM.from_pretrained("{repo_id}")\n'
                f'tokenizer = AutoTokenizer.from_pretrained("{repo_id}")\n')
    return (f'from peft import PeftModel\nfrom transformers import AutoModelForCausalLM, AutoTokenizer\n\n'
            f'base = AutoModelForCausalLM.from_pretrained("{base_ref}")\n'
            f'model = PeftModel.from_pretrained(base, "{repo_id}")\n'
            f'tokenizer = AutoTokenizer.from_pretrained("{repo_id}")\n'
            f'# or, to run it without PEFT: model = model.merge_and_unload()\n')


def render(source: AdapterSource, repo_id: str, merged: bool = False, has_plot: bool = True,
           merge_note: str | None = None) -> str:
    """The card's text: YAML metadata the Hub reads (base model, library, tags), then the body."""
    from huggingface_hub import ModelCardData

    run = source.run
    base = run.model.name_or_path
    data = ModelCardData(
        library_name="transformers" if merged else "peft",
        base_model=base if is_hub_id(base) else None,
        datasets=[run.data.path] if is_hub_id(run.data.path) else None,
        pipeline_tag="text-generation",
        tags=["lora", run.method.name, "lora-launchpad"] + (["merged"] if merged else ["peft"]),
    )
    summary = losses(source.folder.read_metrics())
    count = parameter_count(source)
    what = "the base model merged with a LoRA adapter" if merged else "a LoRA adapter"
    lines = [f"# {repo_id.split('/')[-1]}", "",
             f"This is {what}, trained with LoRA Launchpad from {describe_model(base)}.", "",
             "| | |", "|---|---|",
             f"| Base model | {describe_model(base)}{' (trained in ' + run.model.quantization + ')' if run.model.quantization != 'none' else ''} |",
             f"| Dataset | {describe_data(source)} |",
             f"| Method | {describe_method(run)} |",
             f"| LoRA | r {run.lora.r}, lora_alpha {run.lora.lora_alpha:g}, target_modules "
             f"`{run.lora.target_modules if isinstance(run.lora.target_modules, str) else ', '.join(run.lora.target_modules)}` |"]
    if count:
        trainable, total = count
        lines.append(f"| Trained parameters | {trainable:,} of {total:,} ({100 * trainable / total:.4f}%) |")
    if "final" in summary:
        (step, final), (best_step, best) = summary["final"], summary["best"]
        lines.append(f"| Training loss | final {final:.4f} (step {step}), best {best:.4f} (step {best_step}) |")
    if "eval_final" in summary:
        (step, final), (best_step, best) = summary["eval_final"], summary["eval_best"]
        lines.append(f"| Evaluation loss | final {final:.4f} (step {step}), best {best:.4f} (step {best_step}) |")
    lines.append(f"| Weights | {source.label}{' (the run was ' + source.state + ')' if source.state else ''} |")
    if merge_note:
        lines += ["", f"Note: {merge_note}."]
    if has_plot and "final" in summary:
        lines += ["", "## Loss", "", "![The training loss curve](loss.png)"]
    lines += ["", "## Use it", "", "```python", loading_snippet(source, repo_id, merged).rstrip(), "```"]
    if not merged and not is_hub_id(base):
        lines += ["", "The base model is not a Hub repository: load it from where you keep it."]
    lines += ["", "## Reproduce it", "", "The run file (`run.yaml` in this repository); train it again with "
              "`python -m finetune train run.yaml`:", "", "```yaml", run.to_yaml().rstrip(), "```",
              "", "## Library versions", "", "| library | version |", "|---|---|"]
    lines += [f"| {name} | {version} |" for name, version in library_versions().items()]
    return f"---\n{data.to_yaml()}\n---\n\n" + "\n".join(lines) + "\n"
