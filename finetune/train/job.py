"""The training job: `python -m finetune train RUN [--resume]` (or `python -m finetune.train RUN`).

    setup    check the run file, the model-dependent settings and the data; nothing is loaded or created
             in training.output_dir until all of it passes (exit 2, one `error: ...` line per problem)
    train    run.yaml and status.json, the base model (quantized if asked), LoRA from PEFT, the method's TRL
             trainer (SFTTrainer, DPOTrainer...: train/methods.py); metrics.jsonl and status.json follow every
             logging step
    cleanup  adapter/ (adapter_config.json + adapter_model.safetensors) and the tokenizer, state `completed`;
             SIGTERM/SIGINT ends as `cancelled` with a checkpoint and the adapter; a crash ends as `failed`
             with a one-line reason (the traceback goes to train.log), exit 1; a full disk is one line and
             no traceback; a refusal is `failed` too where a job manager waits for this job (outcome.py)

stdout and stderr are the job's log (the job manager sends them to train.log).
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from pathlib import Path

from finetune.errors import RunFileError
from finetune.runfile import load_run
from finetune.train import distributed, outcome, threads, watch
from finetune.train.plan import Plan
from finetune.train.resume import already_complete, finished_step, folder_problems, fresh_demo_folder, last_checkpoint
from finetune.train.runfolder import RunFolder


def setup(run_path: str, resume: bool) -> Plan:
    """Check everything a user can get wrong, collecting every problem; raises RunFileError."""
    from finetune.model.count import count_run
    from finetune.model.loading import device_problems, load_tokenizer, quiet_libraries

    quiet_libraries()  # before the libraries load: some speak once, at import
    run = load_run(run_path)
    cpu_threads = threads.leave_a_core_to_the_page(run.training.devices)   # before torch loads
    fresh = fresh_demo_folder(run, run_path, resume)
    problems = device_problems(run.model) + folder_problems(run, resume)
    count, notes = None, [fresh] if fresh else []
    if cpu_threads:
        notes.append(f"cpu: {cpu_threads} torch thread(s), one core left to the app serving the page")
    try:
        count = count_run(run)
    except RunFileError as exc:
        problems += exc.problems
    except Exception as exc:  # a model the count cannot read is PEFT's to judge, not a reason to refuse
        notes.append(f"parameters: not counted before loading ({type(exc).__name__}: {exc})")
    tokenizer = examples = None
    model_missing = any(p.startswith("model.name_or_path:") for p in problems)  # said once is enough
    try:
        tokenizer = None if model_missing else load_tokenizer(run.model)
    except RunFileError as exc:
        problems += exc.problems
    if tokenizer is not None:
        from finetune.data.formats import load_examples

        try:
            examples = load_examples(run, tokenizer)
        except RunFileError as exc:
            problems += exc.problems
    rewards: list = []
    if run.method.name == "grpo":
        from finetune.train.rewards import build

        try:
            rewards = build(run)[0]   # a python reward's file and function, and whether this server runs them
        except RunFileError as exc:
            problems += exc.problems
    if problems:
        raise RunFileError(problems)
    assert tokenizer is not None and examples is not None, "either is None only after a problem was raised"
    plan = Plan(run, tokenizer, examples, None, count=count, notes=notes, rewards=rewards)
    plan.checkpoint = last_checkpoint(run.training.output_dir) if resume else None
    if problems := distributed.resume_problems(plan.checkpoint, distributed.world_size()):
        raise RunFileError(problems)
    if run.method.name == "grpo":   # refused before the model loads, as every other setting is
        from finetune.train.methods import long_prompts

        if problems := long_prompts(plan):
            raise RunFileError(problems)
    choose_loss(plan)
    from finetune.train.trainer_args import trainer_config

    plan.args = trainer_config(plan)
    return plan


def choose_loss(plan: Plan) -> None:
    """Train on the answers only: TRL masks prompts of prompt/completion data by itself; chat data needs
    {% generation %} markers in the template (or a training variant TRL knows). Without them, each
    conversation is split before its last assistant reply, which becomes the completion."""
    extra = plan.run.training_extra
    if plan.examples.format != "chat" or "assistant_only_loss" in extra or "completion_only_loss" in extra:
        return
    from trl.chat_template_utils import get_training_chat_template, has_generation_markers

    template = plan.tokenizer.chat_template
    try:
        marked = has_generation_markers(template) or get_training_chat_template(plan.tokenizer) is not None
    except ValueError:
        marked = False
    if marked:
        plan.notes.append("loss: on the assistant's replies only (the chat template marks them)")
        extra["assistant_only_loss"] = True
        return
    from finetune.data.formats import last_reply_as_completion

    plan.examples.train = last_reply_as_completion(plan.examples.train)
    if plan.examples.eval is not None:
        plan.examples.eval = last_reply_as_completion(plan.examples.eval)
    plan.notes.append("loss: on each conversation's last assistant reply (the chat template has no "
                      "{% generation %} markers to find the others)")


def start(plan: Plan, folder: RunFolder) -> None:
    """The run folder at the start: run.yaml, a fresh (or, on resume, trimmed) curve, status `running`."""
    folder.path.mkdir(parents=True, exist_ok=True)
    folder.run_yaml.write_text(plan.run.to_yaml(), encoding="utf-8")
    step = int(plan.checkpoint.rsplit("-", 1)[1]) if plan.checkpoint else 0
    records = [r for r in folder.read_metrics() if r.get("step", 0) <= step] if plan.checkpoint else []
    # Points logged after the checkpoint are trained again on resume: drop them so no step appears twice.
    folder.metrics_file.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    max_steps = plan.run.training.max_steps if plan.run.training.max_steps > 0 else None
    # started_at is the job manager's (when the process began); the pace of training, for the time left,
    # counts from here, after the model and the data are loaded.
    # pid: what a cancel signals (with several ranks, their launcher's process group).
    folder.write_status(state="running", pid=distributed.launcher_pid(), step=step, max_steps=max_steps,
                        error=None, training_started_at=time.time(), start_step=step,
                        resumed_from=plan.checkpoint, world_size=distributed.world_size())


def report_data(plan: Plan) -> None:
    from finetune.data.formats import count_too_long

    ex, data = plan.examples, plan.run.data
    n_eval = len(ex.eval) if ex.eval is not None else 0
    print(f"data: {data.path} ({ex.format}), {len(ex.train)} training and {n_eval} evaluation examples", flush=True)
    if plan.run.method.name == "grpo":
        # GRPO truncates nothing: setup refused prompts past max_length (methods.long_prompts), and a completion
        # column is only read by the rewards, so counting a row with it would report truncation that never happens.
        return
    too_long, checked = count_too_long(ex.train, plan.tokenizer, data.max_length)
    if too_long:
        about = "" if checked == len(ex.train) else f" (estimated from {checked})"
        print(f"data: {too_long} of {checked} examples are longer than data.max_length={data.max_length} tokens "
              f"and will be truncated{about}", flush=True)


def check_count(plan: Plan, model) -> None:
    """PEFT's own count against the core's closed-form count, which the UI showed before launch."""
    trainable, total = model.get_nb_trainable_parameters()
    print(f"parameters: {trainable:,} trainable of {total:,} (PEFT, {100 * trainable / total:.4f}%)", flush=True)
    if plan.count is None:
        return
    print(f"parameters: {plan.count.trainable:,} trainable of {plan.count.total:,} (finetune count)", flush=True)
    if (trainable, total) != (plan.count.trainable, plan.count.total):
        print(f"WARNING: the parameter count shown before launch ({plan.count.trainable:,} of "
              f"{plan.count.total:,}) differs from what PEFT built ({trainable:,} of {total:,}); "
              "please report this run file", flush=True)


def train(plan: Plan, folder: RunFolder, stopper) -> str:
    """Load, attach, train, save; returns the final state."""
    from transformers import PrinterCallback

    from finetune.model.adapter_inputs import read_inputs_as_is
    from finetune.model.loading import device_kind, load_model
    from finetune.train.callbacks import RunCallback
    from finetune.train.methods import METHODS, build_trainer

    run = plan.run
    assert plan.args is not None, "setup() builds the method's config"
    if (done := finished_step(plan)) is not None:
        return already_complete(plan, folder, done)
    print(f"model: {run.model.name_or_path} (quantization {run.model.quantization}, {device_kind()}, "
          f"{(plan.args.bf16 and 'bf16') or (plan.args.fp16 and 'fp16') or 'fp32'})", flush=True)
    sharded = distributed.world_size() > 1 and run.training.strategy == "fsdp"
    model = load_model(run.model, run.training.gradient_checkpointing, sharded=sharded)
    last_step = int(plan.checkpoint.rsplit("-", 1)[1]) if plan.checkpoint else 0
    for note in watch.tracker_env(run, folder):
        print(note, flush=True)
    # The watching callbacks first: the samples' answers are evaluation time, left out of tokens/s by
    # RunCallback's clock pause in on_evaluate, which must come after them.
    method = METHODS[run.method.name]
    if method.name != "sft":   # DPO/KTO's reference: this model with the adapter off (train/methods.py)
        print(f"method: {method.name} ({method.trainer.split(':')[1]})", flush=True)
    trainer = build_trainer(plan, model, [*watch.callbacks(plan, folder),
                                          RunCallback(folder, stopper, last_logged_step=last_step, method=method)])
    trainer.remove_callback(PrinterCallback)  # it prints each log as a dict; RunCallback prints a readable line
    # Under mixed precision the adapters skip PEFT's float32 copy of their input, which autocast undoes (exact;
    # finetune/model/adapter_inputs.py). Not under torch.compile, which would have to trace the hooks: untested.
    mixed = (plan.args.bf16 or plan.args.fp16) and not plan.args.torch_compile
    if mixed and (layers := len(read_inputs_as_is(trainer.model))):
        print(f"adapters: {layers} skip PEFT's float32 copy of a 16-bit input under autocast", flush=True)
    if padding := getattr(trainer, "padding_note", None):
        print(padding, flush=True)
    check_count(plan, trainer.model)
    if distributed.world_size() > 1 and distributed.is_main():  # what accelerate made of training.strategy
        print(f"strategy: {run.training.strategy} over {distributed.world_size()} processes (accelerate "
              f"{trainer.accelerator.distributed_type.value})", flush=True)
    stopper.training()
    result = trainer.train(resume_from_checkpoint=plan.checkpoint)
    print(f"trained: {result.global_step} steps in {result.metrics.get('train_runtime', 0):.1f} s, "
          f"mean loss {result.training_loss:.4f}", flush=True)
    if hasattr(trainer, "batches_note") and (batches := trainer.batches_note()):
        print(batches, flush=True)
    if distributed.world_size() > 1:  # every rank takes part (FSDP gathers the shards); rank 0 writes
        trainer.save_model(str(folder.adapter_dir))
    else:
        trainer.model.save_pretrained(folder.adapter_dir)  # PEFT's model: the adapter alone
        plan.tokenizer.save_pretrained(folder.adapter_dir)
    early = watch.stopped_early(trainer, result, folder)   # its line in train.log, stopped_early in status
    state = "completed" if result.global_step >= trainer.state.max_steps or early else "cancelled"
    print(f"{state}: adapter saved to {folder.adapter_dir}", flush=True)
    return state


def main(run_path: str, resume: bool = False, when_done: Callable[[Path], object] | None = None) -> int:
    """Exit code: 0 completed (or cancelled on request), 2 invalid input, 1 the job failed while running.
    `when_done(folder)` runs on rank 0 once a run that asks for a Hub push (hub.repo_id) completed: the CLI
    passes finetune.adapter.hub.push_when_done; this package never imports the adapter's (ARCHITECTURE.md)."""
    from finetune.train.launch import maybe_launch
    from finetune.train.stopping import Cancelled, Stopper

    stopper = Stopper().install()  # first: importing the libraries takes seconds, a cancel may come meanwhile
    threads.wait_policy()  # before torch loads its OpenMP runtime
    for stream in (sys.stdout, sys.stderr):
        stream.reconfigure(line_buffering=True)  # type: ignore[union-attr]  # typeshed: TextIO; really a TextIOWrapper  # train.log follows the job line by line
    try:
        if distributed.is_rank():
            distributed.start_rank()  # its lines prefixed [rankN], the process group, a watch on the launcher
        print(f"run: {run_path}{', resuming from its last checkpoint' if resume else ''}; checking the settings, "
              "the model and the data", flush=True)
        code = maybe_launch(run_path, resume, stopper)  # devices > 1: this process launches the ranks
        return run_job(run_path, resume, stopper, when_done) if code is None else code
    except Cancelled as exc:
        print(f"cancelled ({exc}) before the job began: nothing was started", flush=True)
        outcome.cancelled_early(run_path)
        return 0
    finally:
        stopper.uninstall()
        if distributed.is_rank():
            distributed.end_rank()


def run_job(run_path: str, resume: bool, stopper, when_done: Callable[[Path], object] | None = None) -> int:
    from finetune.train.stopping import Cancelled

    problems = []
    try:
        plan = setup(run_path, resume)
    except RunFileError as exc:
        problems = exc.problems
    except Cancelled as exc:
        print(f"cancelled ({exc}) while checking the settings: nothing was started", flush=True)
        outcome.cancelled_early(run_path)
        return 0
    problems = distributed.gather_problems(problems)  # with several ranks: all stop if any found a problem
    if problems:   # said once, as plain `error:` lines, and in the status of a folder waiting for this job
        return outcome.refused(run_path, problems) if distributed.is_main() else 2
    folder = RunFolder(plan.run.training.output_dir)
    # Rank 0 alone writes the run folder; the other ranks train and save their part of each checkpoint.
    main_rank = distributed.is_main()
    write_status = folder.write_status if main_rank else (lambda **fields: None)
    try:
        if main_rank:
            start(plan, folder)
            for note in plan.notes:
                print(note, flush=True)
            report_data(plan)
        state = train(plan, folder, stopper)
        write_status(state=state, finished_at=time.time())
        if main_rank and state == "completed" and plan.run.hub.repo_id and when_done is not None:
            when_done(folder.path)   # the push: never fails the run, its outcome goes to push.json and the log
        return 0
    except Cancelled as exc:
        print(f"cancelled ({exc}): stopped at once, before an adapter could be saved", flush=True)
        write_status(state="cancelled", finished_at=time.time(), error=None)
        return 0
    except BaseException as exc:   # one line in status.json and train.log; a full disk without a traceback
        return outcome.failed(folder, exc, main_rank)
