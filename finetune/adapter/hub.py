"""Keeping a run on the Hugging Face Hub: `python -m finetune push RUN_FOLDER --repo-id USER/NAME [--private]
[--merged]`, the page's Push button, and `hub.repo_id` in a run file (pushed when the run completes).

A push uploads, in one commit: the adapter (adapter_config.json, adapter_model.safetensors) or the merged
model (safetensors), the tokenizer, run.yaml, loss.png and a model card (README.md, finetune.adapter.card).

Whose token: the caller's, always passed in explicitly by the app. The CLI takes `--token` or
FINETUNE_PUSH_TOKEN, else the machine's own login (HF_TOKEN or `hf auth login`, huggingface_hub's default);
a local job uses that login. On a Space (SPACE_ID set) that default would be the Space's own HF_TOKEN, which
never pushes for anyone: the app pushes with the signed-in user's OAuth token (handed to the CLI as
FINETUNE_PUSH_TOKEN), the CLI refuses to push without an explicit token, and a job does not push by itself
(the app does: finetune.adapter.keeper).

Each run folder records its last push in push.json: {"repo_id", "state": "waiting|pushing|pushed|failed",
"url", "error", "at"}.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
import traceback
from pathlib import Path

from finetune.adapter.source import AdapterSource, find_adapter
from finetune.errors import FinetuneError, RunFileError
from finetune.runfile.repo_id import repo_id_problem
from finetune.space import on_space

TOKEN_VARIABLE = "FINETUNE_PUSH_TOKEN"   # the CLI's token when --token is not given (a command line is public)
SPACE_TOKEN_REFUSED = (f"--token: on a Hugging Face Space (SPACE_ID is set) a push never falls back to the Space's "
                       f"own HF_TOKEN; give your own write token with --token or {TOKEN_VARIABLE}")

PUSH_FILE = "push.json"
# What a checkpoint-N folder holds beside the adapter (optimizer state, RNG...) stays behind.
ADAPTER_FILES = ("adapter_config.json", "adapter_model.safetensors", "adapter_model.bin", "tokenizer.json",
                 "tokenizer_config.json", "special_tokens_map.json", "chat_template.jinja", "tokenizer.model",
                 "vocab.json", "merges.txt", "added_tokens.json")


class PushError(FinetuneError):
    """The push itself failed (the Hub refused it, the network is down): one line for the user."""


def cli_token(given: str | None, env=None) -> str | None:
    """The token a CLI push uses: --token, else FINETUNE_PUSH_TOKEN, else None (this machine's own login),
    which on a Space is refused in one line."""
    env = os.environ if env is None else env
    token = (given or env.get(TOKEN_VARIABLE) or "").strip() or None
    check_token(token, env)
    return token


def check_token(token: str | None, env=None) -> None:
    """No token means huggingface_hub's own choice, HF_TOKEN first: on a Space, the Space's token."""
    if not token and on_space(env):
        raise RunFileError(SPACE_TOKEN_REFUSED)


def stage(source: AdapterSource, folder: Path, repo_id: str, merged: bool) -> str | None:
    """Fill `folder` with what the repository gets; returns the merge note (None for an adapter)."""
    from finetune.adapter.card import loss_png, render

    note = None
    if merged:
        from finetune.adapter.merge import merge_run

        result = merge_run(source.folder.path, folder / "model", source=source)
        note = result["note"]
        for item in (folder / "model").iterdir():
            item.rename(folder / item.name)
        (folder / "model").rmdir()
    else:
        for name in ADAPTER_FILES:
            if (source.adapter_dir / name).is_file():
                shutil.copy2(source.adapter_dir / name, folder / name)
    shutil.copy2(source.folder.run_yaml, folder / "run.yaml")
    has_plot = loss_png(source.folder.read_metrics(), folder / "loss.png")
    (folder / "README.md").write_text(render(source, repo_id, merged, has_plot, note), encoding="utf-8")
    return note


def push_run(run_dir, repo_id: str, *, token: str | None = None, private: bool = False, merged: bool = False,
             api=None, env=None) -> str:
    """Create `repo_id` if needed (public unless `private`; an existing one keeps its visibility) and
    upload the run in one commit; returns the repository's URL. `api`: an HfApi (a test passes a fake)."""
    problem = repo_id_problem(repo_id)
    if problem:
        raise RunFileError(f"repo_id: {problem}")
    check_token(token, env)
    source = find_adapter(run_dir)
    if api is None:
        from huggingface_hub import HfApi

        api = HfApi(token=token)   # token None: the machine's own login (never on a Space: check_token)
    with tempfile.TemporaryDirectory(prefix="finetune-push-") as tmp:
        staging = Path(tmp)
        stage(source, staging, repo_id, merged)
        try:
            repo = api.create_repo(repo_id=repo_id, repo_type="model", private=private, exist_ok=True)
            what = "merged model" if merged else "LoRA adapter"
            api.upload_folder(repo_id=repo_id, repo_type="model", folder_path=str(staging),
                              commit_message=f"Upload {what} from LoRA Launchpad run {source.folder.path.name}")
        except Exception as exc:  # HTTP, network and auth errors alike: one line for the user
            raise PushError(f"push to {repo_id} failed: {describe_failure(exc)}") from None
    return str(getattr(repo, "url", None) or f"https://huggingface.co/{repo_id}")


def describe_failure(exc: Exception) -> str:
    status = getattr(getattr(exc, "response", None), "status_code", None)
    if status in (401, 403):
        return (f"the Hub refused the token (HTTP {status}): it must be allowed to create and write "
                "repositories in that namespace")
    if status is not None:
        return f"the Hub answered HTTP {status}: {first_line(exc)}"
    name = type(exc).__name__
    if name == "LocalTokenNotFoundError":
        return "no Hugging Face token: set HF_TOKEN or run `hf auth login`"
    if name == "OfflineModeIsEnabled":
        return "huggingface_hub is in offline mode (HF_HUB_OFFLINE is set)"
    if "Connect" in name or "Timeout" in name:
        return f"cannot reach the Hub ({name}: {first_line(exc)})"
    return f"{type(exc).__name__}: {first_line(exc)}"


def first_line(exc: Exception) -> str:
    return (str(exc).strip().splitlines() or [""])[0][:300]


# ----- push when done -----

def read_push(run_dir) -> dict:
    try:
        return json.loads((Path(run_dir) / PUSH_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def write_push(run_dir, **fields) -> dict:
    record = {**read_push(run_dir), **fields, "at": time.time()}
    path = Path(run_dir) / PUSH_FILE
    tmp = path.with_name(f".push.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(record, indent=1), encoding="utf-8")
    os.replace(tmp, path)
    return record


def push_recorded(run_dir, repo_id: str, *, token: str | None, private: bool, merged: bool, api=None,
                  env=None) -> dict:
    """push_run, with its progress and outcome kept in push.json (returned). Bad input (a malformed repo id,
    no adapter) raises RunFileError before anything is recorded; a failed push is recorded, not raised."""
    problem = repo_id_problem(repo_id)
    if problem:
        raise RunFileError(f"repo_id: {problem}")
    check_token(token, env)
    find_adapter(run_dir)
    write_push(run_dir, repo_id=repo_id, state="pushing", url=None, error=None)
    try:
        url = push_run(run_dir, repo_id, token=token, private=private, merged=merged, api=api, env=env)
    except (PushError, RunFileError) as exc:
        return write_push(run_dir, state="failed", error=str(exc).splitlines()[0])
    except Exception as exc:  # a merge that ran out of memory, say: recorded, not raised
        traceback.print_exc()
        return write_push(run_dir, state="failed", error=f"{type(exc).__name__}: {first_line(exc)}")
    return write_push(run_dir, state="pushed", url=url, error=None)


def push_when_done(run_dir, env=None, api=None) -> dict | None:
    """Called by the training job once its run completed: push when the run file asks (hub.repo_id), with
    the machine's own login. Not on a Space: there the job holds only the Space's token, which must not push
    for whoever launched the run; the app pushes instead, with the launcher's sign-in (keeper.py)."""
    try:
        source = find_adapter(run_dir)
    except RunFileError:
        return None
    hub = source.run.hub
    if not hub.repo_id:
        return None
    if on_space(env):
        print(f"hub: not pushed by the job on a Space, which holds only the Space's own token: the app pushes "
              f"{hub.repo_id} with the launcher's sign-in when it launched the run; otherwise push it with "
              f"`python -m finetune push {source.folder.path} --repo-id {hub.repo_id}` and your own --token",
              flush=True)
        return None
    print(f"hub: pushing the {'merged model' if hub.merged else 'adapter'} to {hub.repo_id}", flush=True)
    try:
        record = push_recorded(source.folder.path, hub.repo_id, token=None, private=hub.private,
                               merged=hub.merged, api=api, env=env)
    except RunFileError as exc:
        record = write_push(source.folder.path, repo_id=hub.repo_id, state="failed", error=exc.problems[0])
    print(f"hub: {record.get('url') or record.get('error')}", flush=True)
    return record
