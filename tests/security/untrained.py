"""A completed run folder with a real, untrained LoRA adapter on the demo model (its B matrices are zero, so
it answers exactly like the base model), made in about a second without training: what the generation and
push limits are tested on when the answers' words do not matter.

`rambling=True`: the adapter also keeps its own copy of lm_head (modules_to_save) whose rows for the end
tokens are zero, so greedy decoding never picks one (some other logit is always above 0) and an answer runs
to max_new_tokens: an adapter that never stops talking, the case a time limit is for."""

from __future__ import annotations

import warnings
from pathlib import Path

import yaml

RUN = {"model": {"name_or_path": "demo"}, "lora": {"r": 4, "lora_alpha": 8, "target_modules": ["q_proj", "v_proj"]},
       "data": {"path": "demo", "max_length": 64}}


def untrained_run(runs_dir: Path, name: str = "20260101-000000-untrained", rambling: bool = False) -> Path:
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from finetune.demo import resolve_model
    from finetune.runfile import parse_run
    from finetune.train.runfolder import RunFolder

    folder = RunFolder(Path(runs_dir) / name)
    folder.path.mkdir(parents=True)
    lora_settings = {**RUN["lora"], **({"modules_to_save": ["lm_head"]} if rambling else {})}
    run = {**RUN, "lora": lora_settings, "training": {"output_dir": str(folder.path), "max_steps": 1}}
    folder.run_yaml.write_text(yaml.safe_dump(run), encoding="utf-8")
    parse_run(folder.run_yaml.read_text())   # a run file the job would have accepted
    base = AutoModelForCausalLM.from_pretrained(resolve_model("demo"))
    with warnings.catch_warnings():   # PEFT's note on a tied lm_head in modules_to_save: nothing is merged here
        warnings.simplefilter("ignore", UserWarning)
        model = get_peft_model(base, LoraConfig(**lora_settings, task_type="CAUSAL_LM"))
    if rambling:
        ends = base.generation_config.eos_token_id
        stop = sorted({base.config.eos_token_id, *(ends if isinstance(ends, list) else [ends])} - {None})
        with torch.no_grad():
            model.base_model.model.lm_head.modules_to_save["default"].weight[stop] = 0
    model.save_pretrained(folder.adapter_dir)
    folder.write_status(state="completed", step=1, max_steps=1, error=None)
    return folder.path
