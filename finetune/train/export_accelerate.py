"""`python -m finetune export RUN --to accelerate`: the same run on several machines (Slurm or any set of
nodes), with accelerate's own launcher: its config file (as `accelerate config` writes it) and the command
each machine runs. The run file is used unchanged: every process is `python -m finetune train RUN`, and
the job takes its strategy from training.strategy, exactly as on one machine; the config tells accelerate the
same, so `accelerate launch` prepares the same plugin.

In finetune/train beside the one-machine launch (launch.py), not in the run file's package: it needs the
dtype rule of finetune.model.dtypes, and the run file sits below the model (ARCHITECTURE.md).
"""

from __future__ import annotations

import shlex

import yaml

from finetune.errors import RunFileError
from finetune.model.dtypes import Device, resolve_dtype
from finetune.runfile.parallel import AUTO, fsdp_config

DISTRIBUTED_TYPE = {"ddp": "MULTI_GPU", "fsdp": "FSDP", "deepspeed": "DEEPSPEED"}
MIXED_PRECISION = {"bfloat16": "bf16", "float16": "fp16", "float32": "no"}
CLUSTER_GPU = Device(cuda=True, bf16=True)  # model.dtype auto on a cluster's GPUs (the job decides per machine)
DEFAULT_PORT = 29500


def per_machine(run) -> int:
    devices = run.training.devices
    if devices == AUTO:
        raise RunFileError('training.devices: "auto" cannot be exported: the cluster config needs the number of '
                           "GPUs per machine; set training.devices to it")
    return int(devices)


def accelerate_config(run, num_machines: int = 1, machine_rank: int = 0, main_process_ip: str | None = None,
                      main_process_port: int = DEFAULT_PORT) -> dict:
    """accelerate's config (the keys of accelerate.commands.config.ClusterConfig) for this run."""
    if num_machines < 1:
        raise RunFileError(f"--num_machines: must be a whole number >= 1, got {num_machines}")
    if not 0 <= machine_rank < num_machines:
        raise RunFileError(f"--machine_rank: must be 0 .. {num_machines - 1} with {num_machines} machines, "
                           f"got {machine_rank}")
    n = per_machine(run)
    total = n * num_machines
    t = run.training
    out = {"compute_environment": "LOCAL_MACHINE", "debug": False,
           "distributed_type": DISTRIBUTED_TYPE[t.strategy] if total > 1 else "NO",
           "mixed_precision": MIXED_PRECISION[resolve_dtype(run.model.dtype, CLUSTER_GPU)],
           "downcast_bf16": "no", "num_machines": num_machines, "num_processes": total,
           "machine_rank": machine_rank, "gpu_ids": "all", "rdzv_backend": "static", "same_network": True,
           "use_cpu": False}
    if num_machines > 1:
        out["main_process_ip"] = main_process_ip or "MAIN_PROCESS_IP"
        out["main_process_port"] = main_process_port
    if t.strategy == "fsdp" and total > 1:
        # The same choices the job gives the Trainer (finetune.runfile.parallel.fsdp_config), in
        # accelerate's names.
        cfg = fsdp_config(run)
        out["fsdp_config"] = {"fsdp_version": cfg["version"], "fsdp_auto_wrap_policy": cfg["auto_wrap_policy"],
                              "fsdp_reshard_after_forward": cfg["reshard_after_forward"],
                              "fsdp_state_dict_type": cfg["state_dict_type"],
                              "fsdp_cpu_ram_efficient_loading": cfg["cpu_ram_efficient_loading"],
                              "fsdp_offload_params": False}
    elif t.strategy == "deepspeed" and total > 1:
        out["deepspeed_config"] = {"zero_stage": t.zero_stage, "offload_optimizer_device": "none",
                                   "offload_param_device": "none", "zero3_init_flag": False,
                                   "zero3_save_16bit_model": t.zero_stage == 3,
                                   "deepspeed_multinode_launcher": "standard"}
    return out


def launch_command(run_path: str, config_file: str = "accelerate.yaml", machine_rank: str = "$MACHINE_RANK",
                   main_process_ip: str = "$MAIN_PROCESS_IP", num_machines: int = 1) -> str:
    parts = ["accelerate", "launch", "--config_file", config_file]
    if num_machines > 1:
        parts += ["--num_machines", str(num_machines), "--machine_rank", machine_rank,
                  "--main_process_ip", main_process_ip]
    quoted = " ".join(p if p.startswith("$") else shlex.quote(p) for p in parts)
    return f"{quoted} -m finetune train {shlex.quote(run_path)}"


def to_accelerate(run, run_path: str, num_machines: int = 1, machine_rank: int = 0,
                  main_process_ip: str | None = None, main_process_port: int = DEFAULT_PORT) -> str:
    """The config as YAML, with the launch commands as comments: the whole text is a valid config file."""
    config = accelerate_config(run, num_machines, machine_rank, main_process_ip, main_process_port)
    n = per_machine(run)
    rank = str(machine_rank) if num_machines > 1 and machine_rank else "$MACHINE_RANK"
    ip = main_process_ip or "$MAIN_PROCESS_IP"
    lines = [f"# accelerate config for {run_path}: {num_machines} machine{'s' * (num_machines != 1)} x {n} "
             f"GPU{'s' * (n != 1)}, strategy {run.training.strategy}.",
             "# Save it as accelerate.yaml next to the run file, on every machine (the run file, its data and",
             "# training.output_dir on a filesystem all machines share).", "#",
             "# Launch, on each machine:" if num_machines > 1 else "# Launch:",
             f"#   {launch_command(run_path, machine_rank=rank, main_process_ip=ip, num_machines=num_machines)}"]
    if num_machines > 1:
        lines += [f"#   (machine_rank 0 .. {num_machines - 1}; MAIN_PROCESS_IP is the address of machine_rank 0, "
                  f"port {main_process_port})", "#",
                  f"# With Slurm (sbatch --nodes {num_machines} --ntasks-per-node 1 --gpus-per-node {n}):",
                  "#   export MAIN_PROCESS_IP=$(scontrol show hostnames \"$SLURM_JOB_NODELIST\" | head -n 1)",
                  "#   srun bash -c '" + launch_command(run_path, machine_rank="$SLURM_NODEID",
                                                          main_process_ip=ip, num_machines=num_machines) + "'"]
    lines.append("")
    return "\n".join(lines) + yaml.safe_dump(config, sort_keys=False)
