"""`python -m finetune`: count, train, presets, export, generate, merge, push (the last three: finetune/adapter/cli.py).

Exit codes: 0 done; 2 invalid input (one `error: ...` line per problem on stderr, never a traceback);
1 the job failed while running (its status.json says why).
"""

from __future__ import annotations

import argparse
import json
import sys

from finetune.errors import EXIT_FAILED, EXIT_INVALID, EXIT_OK, RunFileError


class Parser(argparse.ArgumentParser):
    """argparse exits with 2 on bad arguments already; make its message one `error:` line like ours."""

    def error(self, message):
        self.print_usage(sys.stderr)
        print(f"error: {message}", file=sys.stderr)
        sys.exit(EXIT_INVALID)


def report(problems) -> int:
    for problem in problems:
        print(f"error: {problem}", file=sys.stderr)
    return EXIT_INVALID


def count_one(path: str) -> dict:
    from finetune.model.memory import count_json
    from finetune.runfile import load_run

    return count_json(load_run(path), path)   # the count, and "memory": the GPU memory estimate in bytes


def format_count(result: dict) -> str:
    """A count for people: the totals, then one line per adapted module group."""
    lines = [f"{result['config']}: {result['trainable']:,} trainable of {result['total']:,} "
             f"({result['percent']:.4f}%)"]
    for name, info in result.get("modules", {}).items():
        shape = info.get("shape") or []
        # One [in, out] pair, or several when one short name has several shapes (GPT-2's c_proj).
        pairs = shape if shape and isinstance(shape[0], (list, tuple)) else [shape] if shape else []
        shape = ", ".join(" x ".join(map(str, pair)) for pair in pairs)
        lines.append(f"  {name:<20} {info.get('layers', ''):>4} layers  {shape:<14} {info.get('params', 0):>14,}")
    if result.get("memory"):
        memory = result["memory"]
        lines.append(f"  GPU memory about {memory['total'] / 1e9:.1f} GB: " + ", ".join(
            f"{k} {v / 1e9:.2f}" for k, v in memory.items() if k != "total"))
    return "\n".join(lines)


def cmd_count(args) -> int:
    failed = False
    for path in args.runs:
        try:
            result = count_one(path)
        except RunFileError as exc:
            failed = True
            if args.json:
                print(json.dumps({"config": path, "error": "; ".join(exc.problems)}), flush=True)
            else:
                # With several files, say which one each problem is in.
                several = len(args.runs) > 1
                report(f"{path}: {p}" if several and not p.startswith(path) else p for p in exc.problems)
            continue
        print(json.dumps(result) if args.json else format_count(result), flush=True)
    return EXIT_INVALID if failed else EXIT_OK


def cmd_train(args) -> int:
    from finetune.adapter.hub import push_when_done
    from finetune.runfile import load_run
    from finetune.runfile.runner import HF_JOBS, LOCAL
    from finetune.train.job import main as train_main

    try:
        run = load_run(args.run)
    except RunFileError:
        if args.runner is not None or args.dry_run:
            raise
        # The job says what is wrong, in the status of a folder waiting for it too (finetune/train/outcome.py).
        return train_main(args.run, resume=args.resume, when_done=push_when_done)
    if args.runner is None and not run.runner.remote and not args.dry_run:
        return train_main(args.run, resume=args.resume, when_done=push_when_done)  # the job reads its own file
    if args.runner is not None:
        run.runner.where = HF_JOBS if args.runner == "hf-jobs" else LOCAL
        run = type(run).from_dict(run.to_dict())   # checked again: a local data file cannot go to a job
    if not run.runner.remote:
        if args.dry_run:
            return report(["--dry-run: shows the request to Hugging Face Jobs; this run trains here (runner: local)"])
        return train_main(_written(run, args.run), resume=args.resume, when_done=push_when_done)
    from finetune.jobs import hf_jobs, remote

    if args.dry_run:
        volume = remote.volume_id(run.training.output_dir)
        print(json.dumps(hf_jobs.request(run, volume, namespace=run.runner.namespace, resume=args.resume), indent=1))
        return EXIT_OK
    return remote.main(run, resume=args.resume)


def _written(run, path: str) -> str:
    """The run with --runner's choice, as the file the job reads (beside the original, which is left as is)."""
    from pathlib import Path

    target = Path(path).with_suffix(".local.yaml")
    target.write_text(run.to_yaml(), encoding="utf-8")
    return str(target)


def cmd_presets(args) -> int:
    from finetune.runfile.presets import list_presets

    for preset in list_presets():
        print(f"{preset['name']:<16} {preset['about']}")
    return EXIT_OK


def cmd_export(args) -> int:
    from finetune.runfile import load_run
    from finetune.runfile.export import export

    run = load_run(args.run)
    if args.to == "accelerate":  # the cluster form of a multi-device run (finetune/train/export_accelerate.py)
        from finetune.train.export_accelerate import to_accelerate

        print(to_accelerate(run, args.run, args.num_machines, args.machine_rank, args.main_process_ip,
                            args.main_process_port), end="")
        return EXIT_OK
    if args.to == "peft":  # the job's own arguments, for a device (finetune/train/export_peft.py)
        from finetune.train.export_peft import DEVICES, to_peft

        print(to_peft(run, DEVICES.get(args.device)), end="")
        return EXIT_OK
    print(export(run, args.to), end="")
    return EXIT_OK


def cmd_init(args) -> int:
    from finetune.runfile.template import run_template

    print(run_template(args.preset, args.model), end="")
    return EXIT_OK


def cmd_import(args) -> int:
    from finetune.runfile import dump_yaml
    from finetune.runfile.importers import import_config

    run, notes = import_config(args.config)
    for note in notes:   # what could not be carried over, one line per key, apart from the run file on stdout
        print(f"note: {note}", file=sys.stderr)
    print(f"# Imported by LoRA Launchpad from {args.config}\n" + dump_yaml(run), end="")
    return EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="python -m finetune", description="LoRA Launchpad: configure, count and train LoRA "
                    "and QLoRA fine-tunes from one run file.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=Parser)
    p = sub.add_parser("count", help="trainable and total parameters, exactly as PEFT reports them, from "
                       "config.json alone")
    p.add_argument("runs", nargs="+", metavar="RUN", help="run files (YAML or JSON)")
    p.add_argument("--json", action="store_true", help="one JSON object per file and line")
    p.set_defaults(func=cmd_count)
    p = sub.add_parser("train", help="run the training job in the foreground, writing training.output_dir")
    p.add_argument("run", metavar="RUN")
    p.add_argument("--resume", action="store_true", help="go on from the last checkpoint in training.output_dir")
    p.add_argument("--runner", choices=["local", "hf-jobs"], help="where it trains, instead of the run file's "
                   "`runner`: here, or on Hugging Face Jobs (runner.hf_jobs settings from the file, else defaults)")
    p.add_argument("--dry-run", action="store_true", help="with runner hf_jobs: print the request it would send "
                   "(JSON: image, command, flavor, timeout, secret names without values, volumes) and exit")
    p.set_defaults(func=cmd_train)
    p = sub.add_parser("presets", help="list the presets (presets/*.yaml)")
    p.set_defaults(func=cmd_presets)
    p = sub.add_parser("export", help="the same settings as PEFT + TRL code or an Axolotl config")
    p.add_argument("run", metavar="RUN")
    p.add_argument("--to", choices=["peft", "axolotl", "accelerate"], required=True,
                   help="accelerate: the config file and launch commands for several machines")
    p.add_argument("--device", choices=["cuda-bf16", "cuda-fp16", "cpu"], default=None,
                   help="with --to peft: the device the script is for (default: this machine's); cuda-fp16 for "
                   "GPUs without bfloat16 (T4, V100)")
    p.add_argument("--num_machines", "--num-machines", type=int, default=1, metavar="M",
                   help="with --to accelerate: machines, each with training.devices GPUs")
    p.add_argument("--machine_rank", "--machine-rank", type=int, default=0, help="with --to accelerate")
    p.add_argument("--main_process_ip", "--main-process-ip", default=None, help="with --to accelerate: the "
                   "address of machine 0")
    p.add_argument("--main_process_port", "--main-process-port", type=int, default=29500,
                   help="with --to accelerate")
    p.set_defaults(func=cmd_export)
    p = sub.add_parser("init", help="print a complete run file, every setting commented (> my-run.yaml)")
    p.add_argument("--preset", metavar="NAME", help="start from a preset (see `presets`)")
    p.add_argument("--model", metavar="ID", help="model.name_or_path: a Hub id or a local folder")
    p.set_defaults(func=cmd_init)
    p = sub.add_parser("import", help="print the run file of an Axolotl config or a PEFT adapter_config.json "
                       "(> run.yaml); what cannot be carried over is said on stderr")
    p.add_argument("config", metavar="CONFIG", help="an Axolotl YAML, or adapter_config.json (or its folder)")
    p.set_defaults(func=cmd_import)
    from finetune.adapter.cli import add_commands  # generate, merge, push

    add_commands(sub)
    from finetune.jobs.sweep_cli import add_commands as add_sweep  # sweep: a grid of runs, trained in turn

    add_sweep(sub)
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except RunFileError as exc:
        return report(exc.problems)
    except KeyboardInterrupt:
        return EXIT_FAILED
