"""Threat: a run file that reaches outside its run. Before the fix any trl.SFTConfig key passed through, so
`training.push_to_hub: true` + `hub_model_id` uploaded with the host's HF_TOKEN (which the job inherits to
read gated models), `report_to: wandb` used credentials on the server (now refused on a Space:
tests/train/test_watch.py), and `deepspeed`, `logging_dir`,
`resume_from_checkpoint` named server paths. Now `training` takes an explicit allowlist."""

import dataclasses
import subprocess
import sys

import pytest

from finetune.errors import RunFileError
from finetune.runfile import parse_run
from finetune.runfile.allowlist import ALLOWED, REFUSED

REACHING_OUT = {
    "push_to_hub: true": "a run never pushes to the Hub",
    "hub_model_id: mallory/stolen": "a run never pushes to the Hub",
    "hub_token: hf_xxx": "a run never pushes to the Hub",
    "hub_strategy: every_save": "a run never pushes to the Hub",
    "trust_remote_code: true": "set model.trust_remote_code instead",
    "model_init_kwargs: {trust_remote_code: true}": "use the model section",
    "report_to: [tensorboard, comet_ml]": 'must be one of "none", "tensorboard"',
    "report_to: all": 'must be one of "none", "tensorboard"',
    "trackio_space_id: mallory/space": "with the server's credentials",
    "logging_dir: /etc": "a path outside the run folder",
    "deepspeed: /etc/ds.json": "reads a configuration file the server holds",
    "fsdp_config: /etc/fsdp.json": "reads a configuration file the server holds",
    "accelerator_config: /etc/acc.json": "reads a configuration file the server holds",
    "resume_from_checkpoint: /root/other-run/checkpoint-9": "use --resume",
    "chat_template_path: /etc/passwd": "reads a file or a Hub repository",
    "dataloader_num_workers: 4096": "<= 16",
    "dataset_num_proc: 512": "<= 8",
    "not_a_key_at_all: 1": "unknown key",
}


@pytest.mark.parametrize("line", REACHING_OUT)
def test_training_keys_that_reach_outside_the_run_are_refused(line):
    with pytest.raises(RunFileError) as info:
        parse_run(f"training: {{{line}}}")
    [problem] = info.value.problems
    key = line.split(":")[0]
    assert problem.startswith(f"training.{key}: ") and REACHING_OUT[line] in problem, problem


def test_safe_keys_still_pass_with_their_values():
    run = parse_run("training: {eval_strategy: epoch, report_to: none, adam_beta2: 0.95, neftune_noise_alpha: 5,"
                    " lr_scheduler_kwargs: {num_cycles: 2}, dataloader_num_workers: 2, assistant_only_loss: true}")
    assert run.training_extra["adam_beta2"] == 0.95 and run.training_extra["report_to"] == "none"


@pytest.mark.slow   # imports TRL
def test_every_allowed_key_is_a_real_sftconfig_field_and_none_is_refused_too():
    from trl import SFTConfig

    fields = {f.name for f in dataclasses.fields(SFTConfig)}
    assert not set(ALLOWED) - fields, "allowlisted keys the installed TRL does not have"
    assert not set(ALLOWED) & set(REFUSED)
    # Everything TRL has that may reach out is refused by name (a prefix covers hub_* / push_to_hub*).
    for name in fields:
        if name.startswith(("hub_", "push_to_hub", "trackio")) or name in ("deepspeed", "logging_dir",
                                                                          "trust_remote_code"):
            assert name not in ALLOWED


@pytest.mark.slow
def test_the_allowed_keys_build_a_real_sftconfig_without_hub_or_reporters(tmp_path):
    """The job's SFTConfig from a run with allowlisted keys never pushes and reports nowhere."""
    from trl import SFTConfig

    run = parse_run("training: {eval_strategy: 'no', report_to: none, adam_beta2: 0.95, save_only_model: true}")
    args = SFTConfig(output_dir=str(tmp_path), use_cpu=True, **run.training_extra)
    assert args.push_to_hub is False and args.hub_token is None and args.report_to in ([], "none", ["none"])


@pytest.mark.slow
def test_the_cli_refuses_a_pushing_run_file_before_loading_anything(tmp_path):
    path = tmp_path / "push.yaml"
    path.write_text("training: {push_to_hub: true, hub_model_id: mallory/x}\n")
    out = subprocess.run([sys.executable, "-m", "finetune", "train", str(path)], capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert [line.split(":")[1] for line in out.stderr.strip().splitlines()] == [" training.push_to_hub",
                                                                               " training.hub_model_id"]


def test_liger_kernels_without_their_package_are_one_line_before_anything_loads():
    """use_liger_kernel: true passed every check and failed with a traceback at the first step when the
    liger-kernel package was missing (issue 19)."""
    import importlib.util

    from finetune.errors import RunFileError
    from finetune.runfile import parse_run

    if importlib.util.find_spec("liger_kernel") is not None:
        pytest.skip("liger-kernel is installed here")
    with pytest.raises(RunFileError) as info:
        parse_run("training: {use_liger_kernel: true}")
    assert info.value.problems == [info.value.problems[0]]
    assert info.value.problems[0].startswith("training.use_liger_kernel: needs the liger-kernel package")
    parse_run("training: {use_liger_kernel: false}")
