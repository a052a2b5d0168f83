"""`python -m finetune sweep RUN --vary section.key=v1,v2 ... --out DIR [--launch] [--json]`.

Writes DIR/<name>.yaml per combination (names carry the values: r4-lr1e-4.yaml), each training into
DIR/<name>/ (its training.output_dir: RUN's own output_dir is replaced, so one sweep stays in one folder
and the runs never share one). Without --launch it prints the files (--json: [{"name", "values", "run_file",
"output_dir"}]); with --launch it trains them in turn (finetune/jobs/sweep.py), says one line per run on
stderr, and prints the ranking (finetune/jobs/ranking.py; --json: a list of objects with "values",
"output_dir", "final_loss", "best_eval_loss", "tokens_per_second", "state", "rank", ...).

Exit codes: 0 every run completed (or only files were written); 1 a run failed, was stopped or did not run;
2 invalid input, with nothing written: one `error: ...` line per problem.
"""

from __future__ import annotations

import json
import sys

from finetune.errors import EXIT_FAILED, EXIT_OK, RunFileError  # EXIT_INVALID: finetune.cli's, for a RunFileError

EXAMPLE = "lora.r=4,8,16"


def add_commands(sub) -> None:
    p = sub.add_parser("sweep", help="one run file per combination of settings (a grid), optionally trained in "
                       "turn and ranked by eval loss (else final train loss)")
    p.add_argument("run", metavar="RUN", help="the run file every combination starts from")
    p.add_argument("--vary", action="append", required=True, metavar="KEY=V1,V2",
                   help=f"a setting and its values, e.g. {EXAMPLE} or training.learning_rate=1e-4,3e-4; values "
                   "are YAML (lists too: \"lora.target_modules=[q_proj,v_proj],all-linear\"); repeat for "
                   "more settings (at most 32 combinations)")
    p.add_argument("--out", required=True, metavar="DIR", help="the sweep's folder: DIR/<name>.yaml and each "
                   "run's folder DIR/<name>/")
    p.add_argument("--launch", action="store_true", help="train the runs one after another and rank them")
    p.add_argument("--json", action="store_true", help="print JSON instead of text")
    p.set_defaults(func=cmd_sweep)


def say(line: str) -> None:
    print(line, file=sys.stderr, flush=True)   # progress: stdout holds only the result (a table or JSON)


def cmd_sweep(args) -> int:
    from finetune.jobs.ranking import rank_folders
    from finetune.jobs.sweep import folder_problems, model_problems, train_in_turn
    from finetune.runfile import read_file
    from finetune.runfile.sweep import plan_sweep, write_sweep
    from finetune.train.runfolder import RunFolder

    combos = plan_sweep(read_file(args.run), args.vary, args.out)   # RunFileError: main() reports it, exit 2
    if args.launch and (problems := folder_problems(combos) + model_problems(combos)):
        raise RunFileError(problems)   # finetune.cli.main reports each line, exit 2 (this package never imports the CLI)
    files = write_sweep(combos, args.out, args.run)
    if not args.launch:
        if args.json:
            print(json.dumps([{"name": c.name, "values": c.values, "run_file": f,
                               "output_dir": c.run.training.output_dir} for c, f in zip(combos, files, strict=True)]))
        else:
            print("\n".join(files))
            say(f"sweep: {len(files)} run files in {args.out}; train them with --launch, or one at a time with "
                "python -m finetune train FILE")
        return EXIT_OK
    interrupted = train_in_turn(combos, files, say)
    folders = [RunFolder(c.run.training.output_dir) for c in combos]
    by_folder = {str(folder.path): (c, f) for folder, c, f in zip(folders, combos, files, strict=True)}
    ranking = rank_folders(folders, [c.values for c in combos])
    for entry in ranking:
        combo, run_file = by_folder[entry["output_dir"]]
        entry.update(name=combo.name, run_file=run_file)
    print(json.dumps(ranking) if args.json else format_ranking(ranking, list(combos[0].values)), flush=True)
    if interrupted:
        say("sweep: stopped by a signal; the runs after the one in progress were skipped")
    return EXIT_OK if all(e["state"] == "completed" for e in ranking) else EXIT_FAILED


def _figure(value, digits: int = 4) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def format_ranking(ranking: list[dict], keys: list[str]) -> str:
    """The ranking as a table, best first; the column it is ranked by is marked with *."""
    by = ranking[0]["ranked_by"] if ranking else "loss"
    head = ["rank", *keys, "state", "final loss" + ("*" if by == "loss" else ""),
            "best eval" + ("*" if by == "eval_loss" else ""), "tokens/s", "output_dir"]
    rows = [[str(e["rank"]), *(json.dumps(e["values"].get(k)) for k in keys), e["state"], _figure(e["final_loss"]),
             _figure(e["best_eval_loss"]), "-" if e["tokens_per_second"] is None else f"{e['tokens_per_second']:,.0f}",
             e["output_dir"]] for e in ranking]
    widths = [max(len(r[i]) for r in [head, *rows]) for i in range(len(head))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip() for row in [head, *rows]]
    errors = [f"  {e['name']}: {e['error']}" for e in ranking if e.get("error")]
    return "\n".join(lines + (["errors:", *errors] if errors else []))
