"""The CLI's try-it, keep-it and ship-it commands (added to `python -m finetune` by finetune.cli):

    generate RUN_FOLDER --prompt TEXT [--max-new-tokens N] [--temperature T] [--top-p P] [--compare] [--json]
    merge    RUN_FOLDER --out DIR
    push     RUN_FOLDER --repo-id USER/NAME [--private] [--merged] [--token TOKEN]

Exit codes as everywhere: 0 done, 2 invalid input (RunFileError, reported by finetune.cli; on a Space, a push
without --token or FINETUNE_PUSH_TOKEN), 1 a push the Hub refused or could not receive.
"""

from __future__ import annotations

import json
import sys

from finetune.errors import EXIT_FAILED, EXIT_OK
from finetune.runfile import field_help


def cmd_generate(args) -> int:
    from finetune.adapter.generate import BASE, GenSettings, answer, check_prompt, load
    from finetune.adapter.source import find_adapter

    settings = GenSettings.checked(max_new_tokens=args.max_new_tokens, temperature=args.temperature,
                                   top_p=args.top_p)
    check_prompt(args.prompt)   # before the model loads
    source = find_adapter(args.run_folder)
    answers = answer(load(source), args.prompt, settings, compare=args.compare)
    if args.json:
        print(json.dumps({"adapter": answers["adapter"], **({"base": answers[BASE]} if args.compare else {})}))
    elif args.compare:
        print(f"--- base model ({source.run.model.name_or_path})\n{answers[BASE]}\n"
              f"--- {source.label} ({args.run_folder})\n{answers['adapter']}")
    else:
        print(answers["adapter"])
    return EXIT_OK


def cmd_merge(args) -> int:
    from finetune.adapter.merge import merge_run

    result = merge_run(args.run_folder, args.out)
    if result["note"]:
        print(f"note: {result['note']}", file=sys.stderr)
    print(f"merged the {result['adapter']} of {args.run_folder} into its base model ({result['dtype']}): "
          f"{result['out_dir']} ({result['seconds']:.1f} s)")
    return EXIT_OK


def cmd_push(args) -> int:
    from finetune.adapter.hub import cli_token, push_recorded

    # None: huggingface_hub's own choice, HF_TOKEN or this machine's `hf auth login` (refused on a Space)
    token = cli_token(args.token)
    record = push_recorded(args.run_folder, args.repo_id, token=token, private=args.private, merged=args.merged)
    if record["state"] != "pushed":
        print(f"error: {record.get('error')}", file=sys.stderr)
        return EXIT_FAILED
    print(record["url"])
    return EXIT_OK


def add_commands(sub) -> None:
    """Declare the three commands on `python -m finetune`'s subparsers."""
    folder_help = "a run folder (training.output_dir): its adapter/, or its newest checkpoint-N/ while it trains"
    p = sub.add_parser("generate", help="the adapter's answer to a prompt (and the base model's, with --compare)")
    p.add_argument("run_folder", metavar="RUN_FOLDER", help=folder_help)
    p.add_argument("--prompt", required=True, help="the user's message; the chat template is applied when the "
                   "tokenizer has one")
    p.add_argument("--max-new-tokens", type=int, default=128, help="tokens each answer may add (default 128)")
    p.add_argument("--temperature", type=float, default=0.0, help="0 (the default) is greedy, so answers are "
                   "reproducible; higher samples more freely")
    p.add_argument("--top-p", type=float, default=1.0, help="when sampling, only from the likeliest tokens "
                   "holding this much probability (default 1.0)")
    p.add_argument("--compare", action="store_true", help="also answer with the base model alone")
    p.add_argument("--json", action="store_true", help='print {"adapter": ..., "base": ...} (base with --compare)')
    p.set_defaults(func=cmd_generate)

    p = sub.add_parser("merge", help="base model + adapter as one model folder (safetensors and tokenizer) that "
                       "loads with AutoModelForCausalLM.from_pretrained")
    p.add_argument("run_folder", metavar="RUN_FOLDER", help=folder_help)
    p.add_argument("--out", required=True, metavar="DIR", help="a new or empty folder for the merged model")
    p.set_defaults(func=cmd_merge)

    p = sub.add_parser("push", help="upload the adapter (or the merged model) to the Hugging Face Hub with a model "
                       "card, using your own token (--token, FINETUNE_PUSH_TOKEN, HF_TOKEN or `hf auth login`)")
    p.add_argument("run_folder", metavar="RUN_FOLDER", help=folder_help)
    p.add_argument("--repo-id", required=True, metavar="USER/NAME", help=field_help("hub", "repo_id").split(" when")[0])
    p.add_argument("--private", action="store_true", help=field_help("hub", "private"))
    p.add_argument("--merged", action="store_true", help=field_help("hub", "merged"))
    p.add_argument("--token", metavar="TOKEN", help="a Hugging Face token that may write to USER (or set "
                   "FINETUNE_PUSH_TOKEN: a command line is visible to this machine's other processes). Without "
                   "either, this machine's login (HF_TOKEN or `hf auth login`); on a Space one of the two is "
                   "required, since the Space's own HF_TOKEN never pushes")
    p.set_defaults(func=cmd_push)
