"""Training on several devices (issue 11), on this CPU machine: `training.devices: 2` runs two CPU processes
with the gloo backend, launched by the job itself through torch.distributed's launcher.

The fast tests check the run-file rules, the machine checks, the slot queue, the launch command and the
accelerate export. The slow ones train the built-in demo for real: DDP to completion (every step once in
metrics.jsonl, world_size 2, an adapter PEFT loads with the shapes of a one-process run's), a cancel through
the job manager (one checkpoint, no process left), resume with the same world size (and a refusal with
another one). FSDP and DeepSpeed need GPUs (accelerate's rule): their path is tested up to the launch.
"""

import io
import os
import re
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import psutil
import pytest
import yaml

from finetune.errors import RunFileError
from finetune.jobs import JobManager, slots
from finetune.runfile import parse_run
from finetune.train import distributed, launch
from finetune.train.export_accelerate import accelerate_config, to_accelerate
from finetune.train.export_peft import to_peft
from finetune.train.runfolder import RunFolder

ROOT = Path(__file__).resolve().parents[2]
DEMO_RUN = ROOT / "finetune" / "demo" / "run.yaml"
JOB_TIMEOUT = 420  # two ranks import torch, transformers and TRL at once on two shared cores


def problems_of(text: str) -> list[str]:
    with pytest.raises(RunFileError) as err:
        parse_run(text)
    return err.value.problems


# ----- the run file and the machine -----

def test_run_file_rules_are_one_line_each():
    assert parse_run("training: {devices: auto, strategy: fsdp}").training.devices == "auto"
    assert parse_run("training: {devices: 2}").training.strategy == "ddp"  # the default with devices > 1
    assert problems_of("training: {devices: 0}") == ['training.devices: must be a whole number >= 1 or "auto", '
                                                     "got 0"]
    assert problems_of("training: {strategy: fsdp}")[0].startswith('training.strategy: "fsdp" splits the model')
    (line,) = problems_of("model: {quantization: 4bit}\ntraining: {devices: 2, strategy: deepspeed, zero_stage: 3}")
    assert line.startswith("training.zero_stage: 3 partitions the base weights") and "4bit" in line
    assert problems_of("model: {quantization: 8bit}\ntraining: {devices: 2, strategy: fsdp}")[0].startswith(
        'training.strategy: "fsdp" cannot shard 8-bit weights')
    assert problems_of("training: {devices: 2, zero_stage: 3}") == [
        'training.zero_stage: only means something with training.strategy deepspeed, which is "ddp"']
    assert problems_of("training: {devices: 2, strategy: fsdp, fsdp: full_shard}")[0].startswith("training.fsdp:")


def test_machine_problems_name_what_the_machine_lacks():
    run = parse_run("training: {devices: 3}")
    assert distributed.machine_problems(run, [], cpus=2) == [
        "training.devices: 3, but this machine has no GPU and 2 CPU cores; without a GPU each device is one CPU "
        "process"]
    assert distributed.machine_problems(run, ["0", "1"]) == ["training.devices: 3, but this machine has 2 GPUs"]
    assert distributed.machine_problems(parse_run("training: {devices: 2}"), [], cpus=2) == []
    deepspeed = parse_run("training: {devices: 2, strategy: deepspeed}")
    assert distributed.machine_problems(deepspeed, [], cpus=2)[0].startswith('training.strategy: "deepspeed" needs '
                                                                             "CUDA GPUs")
    # auto is every GPU the job sees, and one process without a GPU
    auto = parse_run("training: {devices: auto}").training
    assert distributed.resolve_devices(auto, []) == 1 and distributed.resolve_devices(auto, ["2", "3"]) == 2


def test_launch_settings_never_reach_sftconfig():
    run = parse_run("training: {devices: 2, strategy: fsdp}")
    script = to_peft(run)
    assert re.search(r"\b(devices|strategy|zero_stage)=", script) is None   # save_strategy= is SFTConfig's
    assert distributed.trainer_args(run, 1, cuda=False) == {}  # one process: the strategy is ignored
    args = distributed.trainer_args(run, 2, cuda=False)
    assert args["ddp_backend"] == "gloo" and args["fsdp"] is True and args["fsdp_config"]["version"] == 2
    zero = distributed.trainer_args(parse_run("training: {devices: 2, strategy: deepspeed, zero_stage: 3}"), 2, True)
    assert zero["ddp_backend"] == "nccl" and zero["deepspeed"]["zero_optimization"]["stage"] == 3


def test_resume_needs_the_world_size_that_wrote_the_checkpoint(tmp_path):
    two = tmp_path / "checkpoint-5"
    two.mkdir()
    for name in ("rng_state_0.pth", "rng_state_1.pth"):
        (two / name).write_bytes(b"")
    assert distributed.checkpoint_world_size(str(two)) == 2
    assert distributed.resume_problems(str(two), 2) == []
    assert distributed.resume_problems(str(two), 1) == [
        "--resume: checkpoint-5 was written by 2 processes and this run has 1; resume with training.devices: 2"]
    one = tmp_path / "checkpoint-9"
    one.mkdir()
    (one / "rng_state.pth").write_bytes(b"")
    assert distributed.checkpoint_world_size(str(one)) == 1 and distributed.resume_problems(None, 4) == []


def test_each_rank_line_is_prefixed():
    out = io.StringIO()
    stream = distributed._Prefixed(out, "[rank1] ")
    stream.write("step 1")
    stream.write(" loss 2\nstep 2\n")
    stream.write("")
    assert out.getvalue() == "[rank1] step 1 loss 2\n[rank1] step 2\n" and distributed.plain(stream) is out


def test_launch_command_is_torchruns_own():
    from torch.distributed import run as torchrun

    args = torchrun.parse_args(launch.torchrun_args(2, "/runs/x/run.yaml", resume=True))
    assert args.nproc_per_node == "2" and args.standalone and args.module
    # Through the CLI, which hands the job its Hub push (finetune.train never imports finetune.adapter).
    assert args.training_script == "finetune" and args.training_script_args == ["train", "/runs/x/run.yaml", "--resume"]
    assert launch.command(2, "r.yaml", False)[1:4] == ["-m", "torch.distributed.run", "--standalone"]


CHILD = textwrap.dedent("""
    import os, threading, time
    from finetune.train import distributed
    threading.Thread(target=distributed._exit_with_launcher, args=(os.getppid(),), daemon=True).start()
    print("ready", flush=True)
    time.sleep(120)
""")
PARENT = textwrap.dedent("""
    import subprocess, sys, time
    # torch.distributed starts each rank in a session of its own, as here: a signal to our group misses it.
    child = subprocess.Popen([sys.executable, "-c", sys.argv[1]], start_new_session=True, stdout=sys.stdout)
    print(child.pid, flush=True)
    time.sleep(120)
""")


def test_a_rank_leaves_when_its_launcher_is_killed():
    """A force stop (SIGKILL to the launcher's process group) cannot reach the ranks, which torch.distributed
    starts in sessions of their own: each rank watches its launcher and exits when it is gone."""
    parent = subprocess.Popen([sys.executable, "-c", PARENT, CHILD], stdout=subprocess.PIPE, text=True, cwd=ROOT,
                              start_new_session=True)
    child = psutil.Process(int(parent.stdout.readline()))
    assert parent.stdout.readline().strip() == "ready"
    os.killpg(parent.pid, 9)
    parent.wait(10)
    child.wait(timeout=5)  # psutil.TimeoutExpired if the rank stayed behind


# ----- the job manager's slots -----

def test_slots_are_reserved_together_and_in_order():
    assert slots.needed(2, has_gpus=True, total=4) == 2 and slots.needed(2, has_gpus=False, total=1) == 1
    assert slots.pick(2, 4, taken={0}) == [1, 2] and slots.pick(2, 2, taken={0}) is None
    assert slots.pick("auto", 4, taken={1}) == [0, 2, 3] and slots.pick("auto", 2, taken={0, 1}) is None
    assert slots.too_many(3, 2).startswith("training.devices: 3, but this job manager has 2 GPU slots")


WAITER = textwrap.dedent("""
    import os, sys, time
    while not os.path.exists(sys.argv[1] + ".go"):  # a stand-in job: runs until the test lets it end
        time.sleep(0.05)
""")


def test_a_two_slot_run_waits_for_two_and_is_not_overtaken(tmp_path):
    """A: 1 slot, B: 2 slots, C: 1 slot, on a manager with 2 slots. While A runs, one slot is free, yet C
    (behind B) must not start: B would wait for ever. When A ends, B takes both; C starts after B."""
    script = tmp_path / "waiter.py"
    script.write_text(WAITER)
    manager = JobManager(tmp_path / "runs", slots=2, command=[sys.executable, str(script)], poll_interval=0.1)
    try:
        text = "training: {{max_steps: 2, devices: {}}}\n"
        a = manager.submit(text.format(1))
        b = manager.submit(text.format(2))
        c = manager.submit(text.format(1))
        state = lambda run_id: manager.status(run_id)["state"]  # noqa: E731
        assert (state(a), state(b), state(c)) == ("running", "queued", "queued")
        assert manager.queue_position(b) == 1 and manager.queue_position(c) == 2

        def release(run_id):
            Path(str(RunFolder(manager.runs_dir / run_id).run_yaml) + ".go").touch()
            deadline = time.monotonic() + 30
            while state(run_id) == "running":
                assert time.monotonic() < deadline
                time.sleep(0.1)

        release(a)
        deadline = time.monotonic() + 30
        while state(b) != "running":
            assert time.monotonic() < deadline
            time.sleep(0.1)
        assert manager.status(b)["slots"] == [0, 1] and state(c) == "queued"
        release(b)
        while state(c) != "running":
            assert time.monotonic() < deadline + 30
            time.sleep(0.1)
        release(c)
        with pytest.raises(RunFileError, match=r"training.devices: \d+, but this machine has no GPU"):
            manager.submit(text.format(distributed.cpu_count() + 1))
    finally:
        manager.shutdown()


# ----- beyond one machine -----

def test_accelerate_export_is_a_valid_config_with_the_cluster_command(tmp_path):
    from accelerate.commands.config.config_args import ClusterConfig

    run = parse_run("training: {devices: 4, strategy: fsdp}")
    text = to_accelerate(run, "run.yaml", num_machines=2, main_process_ip="10.0.0.1")
    path = tmp_path / "accelerate.yaml"
    path.write_text(text)
    config = ClusterConfig.from_yaml_file(str(path))  # accelerate's own reader takes it
    assert (config.distributed_type, config.num_machines, config.num_processes) == ("FSDP", 2, 8)
    assert config.fsdp_config["fsdp_version"] == 2
    assert ("accelerate launch --config_file accelerate.yaml --num_machines 2 --machine_rank $MACHINE_RANK "
            "--main_process_ip 10.0.0.1 -m finetune train run.yaml") in text
    assert "--machine_rank $SLURM_NODEID" in text
    zero = accelerate_config(parse_run("training: {devices: 2, strategy: deepspeed, zero_stage: 3}"))
    assert zero["deepspeed_config"]["zero_stage"] == 3 and zero["num_processes"] == 2
    with pytest.raises(RunFileError, match=r'training\.devices: "auto" cannot be exported'):
        to_accelerate(parse_run("training: {devices: auto}"), "run.yaml")


def test_cli_export_to_accelerate():
    done = subprocess.run([sys.executable, "-m", "finetune", "export", str(DEMO_RUN), "--to", "accelerate",
                           "--num_machines", "3", "--machine_rank", "1"], capture_output=True, text=True, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    config = yaml.safe_load(done.stdout)
    assert (config["num_machines"], config["machine_rank"], config["num_processes"]) == (3, 1, 3)
    bad = subprocess.run([sys.executable, "-m", "finetune", "export", str(DEMO_RUN), "--to", "accelerate",
                          "--num_machines", "2", "--machine_rank", "2"], capture_output=True, text=True, cwd=ROOT)
    assert bad.returncode == 2 and bad.stderr.strip() == "error: --machine_rank: must be 0 .. 1 with 2 machines, got 2"


# ----- training for real: two CPU processes -----

def run_file(tmp_path: Path, name: str, **training) -> Path:
    """The demo run with a few training settings changed, written next to the test's files."""
    run = yaml.safe_load(DEMO_RUN.read_text())
    run["training"].update(output_dir=str(tmp_path / name), save_steps=1000, logging_steps=1, **training)
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(run))
    return path


def train_cli(path: Path, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "finetune", "train", str(path), *extra], capture_output=True,
                          text=True, cwd=ROOT, timeout=JOB_TIMEOUT)


def adapter_shapes(folder: Path) -> dict:
    from safetensors import safe_open

    with safe_open(str(folder / "adapter" / "adapter_model.safetensors"), "pt") as f:
        return {key: tuple(f.get_slice(key).get_shape()) for key in f.keys()}  # noqa: SIM118 -- safe_open has no __iter__


def rank_processes(run_yaml: Path) -> list[psutil.Process]:
    """Every live process whose command line names this run file (launcher and ranks)."""
    out = []
    for proc in psutil.process_iter(["cmdline", "status"]):
        if str(run_yaml) in (proc.info["cmdline"] or []) and proc.info["status"] != psutil.STATUS_ZOMBIE:
            out.append(proc)
    return out


@pytest.mark.slow
def test_ddp_on_two_cpu_processes_trains_the_demo_to_completion(tmp_path):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    from finetune.demo import resolve_model

    path = run_file(tmp_path, "ddp", max_steps=8, devices=2, strategy="ddp")
    done = train_cli(path)
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-3000:]
    folder = RunFolder(tmp_path / "ddp")
    status = folder.read_status()
    assert status["state"] == "completed" and status["world_size"] == 2 and status["step"] == 8
    metrics = [m for m in folder.read_metrics() if "loss" in m]
    assert [m["step"] for m in metrics] == list(range(1, 9))  # each step once: rank 0 alone writes
    assert min(m["loss"] for m in metrics[-3:]) < metrics[0]["loss"] - 0.5, metrics
    assert all(m["tokens_per_second"] > 0 for m in metrics[1:])
    assert "launch: 2 processes (ddp, cpu, gloo)" in output and "[rank1] " in output
    assert "[rank0] strategy: ddp over 2 processes (accelerate MULTI_CPU)" in output

    base = AutoModelForCausalLM.from_pretrained(resolve_model("demo"))
    model = PeftModel.from_pretrained(base, str(folder.adapter_dir))  # plain PEFT loads it
    assert any("lora_B" in k and v.abs().sum() > 0 for k, v in model.state_dict().items())  # and it trained

    single = run_file(tmp_path, "one", max_steps=2)
    done_single = train_cli(single)
    assert done_single.returncode == 0, (done_single.stdout + done_single.stderr)[-3000:]
    assert RunFolder(tmp_path / "one").read_status().get("world_size") == 1
    assert adapter_shapes(tmp_path / "ddp") == adapter_shapes(tmp_path / "one")


@pytest.mark.slow
def test_cancel_of_two_processes_saves_once_leaves_none_and_resumes_with_two(tmp_path):
    manager = JobManager(tmp_path / "runs", slots=1, poll_interval=0.2, cwd=ROOT)
    try:
        text = DEMO_RUN.read_text().replace("max_steps: 200", "max_steps: 40").replace(
            "logging_steps: 2", "logging_steps: 1\n  devices: 2").replace("save_steps: 50", "save_steps: 1000")
        run_id = manager.submit(text)
        folder = RunFolder(manager.runs_dir / run_id)
        deadline = time.monotonic() + JOB_TIMEOUT
        while len(folder.read_metrics()) < 2:
            assert manager.status(run_id)["state"] in ("queued", "running"), manager.log_tail(run_id)
            assert time.monotonic() < deadline, manager.log_tail(run_id)
            time.sleep(0.2)
        group = rank_processes(folder.run_yaml)
        assert len(group) == 3, [p.info["cmdline"] for p in group]  # the launcher and two ranks
        manager.cancel(run_id)
        status = manager.wait(run_id, timeout=120)
        assert status["state"] == "cancelled" and status["world_size"] == 2, manager.log_tail(run_id)
        # rank 0 writes `cancelled` before its interpreter exits, which took up to 10 s here on two busy cores
        psutil.wait_procs(group, timeout=60)
        assert rank_processes(folder.run_yaml) == []
        checkpoints = sorted(p.name for p in folder.path.glob("checkpoint-*"))
        assert len(checkpoints) == 1 and (folder.adapter_dir / "adapter_model.safetensors").is_file()
        stopped_at = int(checkpoints[0].split("-")[1])
        assert 2 <= stopped_at < 40
        assert "[rank1] SIGTERM: finishing this step" in folder.log_file.read_text()
    finally:
        manager.shutdown()

    # Resume: refused with another world size, and goes on to the end with the same one.
    other = folder.path / "one.yaml"
    other.write_text(folder.run_yaml.read_text().replace("devices: 2", "devices: 1"))
    refused = train_cli(other, "--resume")
    assert refused.returncode == 2
    assert f"error: --resume: {checkpoints[0]} was written by 2 processes and this run has 1" in refused.stderr
    resumed = train_cli(folder.run_yaml, "--resume")
    assert resumed.returncode == 0, (resumed.stdout + resumed.stderr)[-3000:]
    status = folder.read_status()
    assert status["state"] == "completed" and status["step"] == 40 and status["world_size"] == 2
    steps = [m["step"] for m in folder.read_metrics() if "loss" in m]
    assert steps == list(range(1, 41))  # the points after the checkpoint were trimmed, none twice


@pytest.mark.slow
def test_fsdp_is_refused_on_the_cpu_and_its_plugin_is_accelerates_own():
    """accelerate makes an FSDP group only of GPUs (on the CPU its plugin is dropped and the run would be
    plain ddp, measured here), so the CPU path is checked up to the launch: the one-line refusal, and the
    settings the job gives the Trainer build accelerate's own FSDP plugin."""
    from accelerate.utils import FullyShardedDataParallelPlugin
    from trl import SFTConfig

    run = parse_run("training: {devices: 2, strategy: fsdp}")
    assert distributed.machine_problems(run, [], cpus=2) == [
        'training.strategy: "fsdp" needs CUDA GPUs (accelerate shards only on GPUs; on the CPU it would silently '
        "train ddp); use ddp on the CPU"]
    assert distributed.machine_problems(run, ["0", "1"]) == []
    kwargs = distributed.trainer_args(run, 2, cuda=True)
    kwargs.pop("ddp_backend")  # nccl needs a process group; the plugin's settings do not
    args = SFTConfig(output_dir="unused", use_cpu=True, report_to="none", **kwargs)
    plugin = FullyShardedDataParallelPlugin(**args.fsdp_plugin_args)
    assert plugin.fsdp_version == 2 and plugin.state_dict_type.name == "FULL_STATE_DICT"
    assert plugin.reshard_after_forward is True and plugin.cpu_ram_efficient_loading is True


def test_cli_refuses_fsdp_on_the_cpu_before_anything_starts(tmp_path):
    path = run_file(tmp_path, "fsdp", max_steps=4, devices=2, strategy="fsdp")
    done = train_cli(path)
    assert done.returncode == 2 and done.stderr.strip().startswith('error: training.strategy: "fsdp" needs CUDA')
    assert not (tmp_path / "fsdp").exists()


@pytest.mark.slow
def test_the_page_keeps_a_loaded_run_files_devices():
    """On a machine with at most one GPU the devices control is hidden, but a loaded run file's devices (and
    strategy) stay in the form and reach the launch; the export is always there."""
    from finetune.ui.devices import export_text
    from finetune.ui.panel import form_run, form_values, model_info

    raw = yaml.safe_load(DEMO_RUN.read_text())
    raw["training"].update(devices=2, strategy="ddp")
    info = model_info({"model.name_or_path": "demo"})
    values = form_values(raw, info)
    assert values["training.devices"] == "2"
    _, run, problems = form_run(values, {}, info)
    assert problems == [] and run.training.devices == 2
    config = yaml.safe_load(export_text(values, {}, info, 2))
    assert (config["num_machines"], config["num_processes"], config["distributed_type"]) == (2, 4, "MULTI_GPU")
