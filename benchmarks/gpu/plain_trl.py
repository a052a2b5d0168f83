"""The plain TRL side of benchmarks/bench_gpu.py: what a user would write with TRL alone for the same LoRA job.

    python benchmarks/gpu/plain_trl.py MODEL DATA OUT --steps 25 --batch 4 --length 1024 [--quantization 4bit]
        [--gradient-checkpointing | --trl-defaults]

Same settings as the run file bench_gpu.py gives `finetune train`: LoRA r=16 alpha 16 no dropout on the seven
projections, plain-text data truncated to --length, no packing, fused AdamW at 2e-4 (linear, no warm-up, clip 1.0),
a log every step, no checkpoint, seed 42, bf16 on a GPU (fp32 on the CPU), QLoRA as NF4 with double quantization.
Prints the time inside trainer.train() and torch.cuda.max_memory_allocated() for the whole process.
--trl-defaults leaves gradient checkpointing to SFTConfig's own default (on), as a user who never sets it trains.
"""

import argparse

import torch
from datasets import load_dataset
from peft import LoraConfig
from transformers import BitsAndBytesConfig
from trl import SFTConfig, SFTTrainer

parser = argparse.ArgumentParser()
parser.add_argument("model")
parser.add_argument("data")
parser.add_argument("out")
parser.add_argument("--steps", type=int, default=25)
parser.add_argument("--batch", type=int, default=4)
parser.add_argument("--length", type=int, default=1024)
parser.add_argument("--quantization", choices=["none", "4bit"], default="none")
parser.add_argument("--gradient-checkpointing", action="store_true")
parser.add_argument("--trl-defaults", action="store_true")
a = parser.parse_args()

cuda = torch.cuda.is_available()
dtype = torch.bfloat16 if cuda else torch.float32
if a.trl_defaults:
    checkpointing = {}
else:
    checkpointing = {"gradient_checkpointing": a.gradient_checkpointing,
                     **({"gradient_checkpointing_kwargs": {"use_reentrant": False}} if a.gradient_checkpointing else {})}
args = SFTConfig(output_dir=a.out, max_steps=a.steps, per_device_train_batch_size=a.batch,
                 gradient_accumulation_steps=1, learning_rate=2e-4, lr_scheduler_type="linear", warmup_steps=0,
                 weight_decay=0.0, max_grad_norm=1.0, optim="adamw_torch_fused", logging_steps=1,
                 save_steps=100_000, seed=42, max_length=a.length, packing=False, dataset_text_field="text",
                 **checkpointing, bf16=cuda, use_cpu=not cuda,
                 report_to="none", model_init_kwargs={"dtype": "bfloat16" if cuda else "float32"})
quantization = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                                  bnb_4bit_compute_dtype=dtype) if a.quantization == "4bit" else None
lora = LoraConfig(r=16, lora_alpha=16, lora_dropout=0.0, task_type="CAUSAL_LM",
                  target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"])
trainer = SFTTrainer(model=a.model, args=args, train_dataset=load_dataset("json", data_files=a.data, split="train"),
                     peft_config=lora, quantization_config=quantization)
print(f"gradient_checkpointing: {trainer.args.gradient_checkpointing}", flush=True)
result = trainer.train()
trainer.save_model(a.out + "/adapter")
print(f"trained: {result.global_step} steps in {result.metrics['train_runtime']:.3f} s", flush=True)
if cuda:
    print(f"peak_allocated: {torch.cuda.max_memory_allocated()}", flush=True)
