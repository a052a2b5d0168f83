"""Keep it: merge the selected run into its base model, or push it to the Hub, from the page (and `/push`).

Both run as `python -m finetune merge|push` in a process of their own, so the app never holds a model.
Whose token pushes: on a Space, the signed-in user's own OAuth token (gr.OAuthToken), handed to that process
as its HF_TOKEN; never the Space's token. Locally, the machine's own login, unless a token is given.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import gradio as gr

from finetune.adapter.hub import read_push
from finetune.jobs.process import PACKAGE_ROOT
from finetune.runfile import field_help
from finetune.space import on_space
from finetune.ui import access
from finetune.ui.downloads import handout
from finetune.ui.guard import require, run_folder, user_error
from finetune.ui.live import username

ZIP_LIMIT = 2 * 1024**3   # a merged model larger than this is offered as a folder only, not as a download


def build_keep() -> SimpleNamespace:
    k = SimpleNamespace()
    gr.Markdown("### Keep it")
    with gr.Row(equal_height=True):
        k.merge = gr.Button("Merge into the base model", elem_id="merge", scale=1)
        k.download = gr.DownloadButton("Download the merged model (.zip)", visible=False, elem_id="merged-download",
                                       scale=1)
    with gr.Row(equal_height=True):
        k.repo = gr.Textbox(label="Hub repository", placeholder="your-name/my-adapter", scale=3, elem_id="push-repo",
                            info="Created if missing, with your own Hugging Face account"
                            + (" (sign in above)." if on_space() else " (HF_TOKEN or `hf auth login`)."))
        k.private = gr.Checkbox(False, label="private", info=field_help("hub", "private"), elem_id="push-private")
        k.merged = gr.Checkbox(False, label="merged model", info=field_help("hub", "merged"), elem_id="push-merged")
        k.push = gr.Button("Push to the Hub", elem_id="push", scale=1)
    k.status = gr.Markdown(elem_id="keep-status")
    return k


def push_token(oauth_token) -> str | None:
    """The token a push from the page uses: the signed-in user's own; on a Space there is no other."""
    token = getattr(oauth_token, "token", None) or None
    if on_space() and not token:
        raise user_error("sign in with Hugging Face to push: the repository is created with your own account, "
                       "never with this Space's token")
    return token


def check_pusher(profile, token: str | None) -> None:
    """Pushing a run follows the launch rule (access.may_use). An API caller on a Space may bring a token
    but no sign-in session: the Hub says whose token it is."""
    name = username(profile)
    if name is None and token and access.login_required():
        try:
            from huggingface_hub import HfApi

            name = HfApi().whoami(token=token).get("name")
        except Exception:  # a refused or unreachable check is a refusal
            raise user_error("the Hub did not accept that token (whoami failed)") from None
    allowed, why = access.may_use(name, "push runs to the Hub")
    if not allowed:
        raise user_error(why)


def run_cli(args: list[str], token: str | None = None, timeout: float = 4 * 3600) -> tuple[int, str, str]:
    """`python -m finetune ARGS` in its own process; the token (when given) is its HF_TOKEN and nothing else's."""
    env = dict(os.environ, CUDA_VISIBLE_DEVICES="", PYTHONPATH=os.pathsep.join(
        p for p in (PACKAGE_ROOT, os.environ.get("PYTHONPATH")) if p))
    if token:
        env["HF_TOKEN"] = env["FINETUNE_PUSH_TOKEN"] = token   # the latter: the CLI's explicit token on a Space
    elif on_space():
        env.pop("HF_TOKEN", None)   # belt and braces: the Space's token never pushes for a visitor
    out = subprocess.run([sys.executable, "-m", "finetune", *args], cwd=PACKAGE_ROOT, env=env, capture_output=True,
                         text=True, timeout=timeout)
    return out.returncode, out.stdout.strip(), out.stderr.strip()


def cli_error(stderr: str) -> str:
    lines = [line.removeprefix("error: ") for line in stderr.splitlines() if line.startswith("error: ")]
    return "\n".join(lines) or (stderr.splitlines() or ["failed"])[-1]


def push(folder: Path, repo_id: str, private: bool, merged: bool, token: str | None) -> str:
    repo_id = (repo_id or "").strip()
    args = ["push", str(folder), "--repo-id", repo_id] + ["--private"] * bool(private) + ["--merged"] * bool(merged)
    code, out, err = run_cli(args, token)
    if code != 0:
        raise user_error(cli_error(err))
    return out.splitlines()[-1]


def push_line(record: dict) -> str:
    state, repo = record.get("state"), record.get("repo_id")
    if state == "pushed":
        return f"Pushed to [{repo}]({record.get('url')})."
    if state == "waiting":
        return f"Will be pushed to {repo} when the run completes."
    if state == "pushing":
        return f"Pushing to {repo}…"
    if state == "failed":
        return f"Push to {repo} failed: {record.get('error')}"
    return ""


def wire_keep(ui, jobs) -> None:
    p, k = ui.playground, ui.playground.keep

    def on_select(run_id):
        return push_line(read_push(jobs.runs_dir / run_id)) if run_id else "", gr.DownloadButton(visible=False)

    p.run.change(on_select, p.run, [k.status, k.download], queue=False, show_progress="hidden",
                 api_visibility="private")

    def on_merge(run_id, profile: gr.OAuthProfile | None = None):
        require(profile, "merge runs")   # it loads a whole model on this server
        folder = run_folder(jobs, run_id)
        out = folder / "merged"
        yield "Merging (in a process of its own; a large model takes minutes)…", gr.DownloadButton(visible=False)
        shutil.rmtree(out, ignore_errors=True)
        code, stdout, stderr = run_cli(["merge", str(folder), "--out", str(out)])
        if code != 0:
            raise user_error(cli_error(stderr))
        size = sum(f.stat().st_size for f in out.rglob("*") if f.is_file())
        notes = [line.removeprefix("note: ") for line in stderr.splitlines() if line.startswith("note: ")]
        text = (f"{stdout.splitlines()[-1]}\n\nLoad it with `AutoModelForCausalLM.from_pretrained(\"{out}\")`."
                + "".join(f"\n\nNote: {n}." for n in notes))
        download = gr.DownloadButton(visible=False)
        if size <= ZIP_LIMIT:
            archive = shutil.make_archive(str(folder / ".merged-zip"), "zip", root_dir=out)
            target = folder / "merged.zip"
            Path(archive).replace(target)
            # the runs folder is never served: a short-lived copy in Gradio's cache, for this user only
            download = gr.DownloadButton(value=handout(target, f"{folder.name}-merged.zip"), visible=True)
        yield text, download

    k.merge.click(on_merge, p.run, [k.status, k.download], api_visibility="private", concurrency_limit=2)

    def on_push(run_id, repo_id, private, merged, profile: gr.OAuthProfile | None = None,
                oauth_token: gr.OAuthToken | None = None):
        token = push_token(oauth_token)
        check_pusher(profile, token)
        folder = run_folder(jobs, run_id)
        yield f"Pushing {'the merged model' if merged else 'the adapter'} to {repo_id}…"
        try:
            url = push(folder, repo_id, private, merged, token)
        except gr.Error:
            yield push_line(read_push(folder)) or "Not pushed."   # the status line says it too, then the toast
            raise
        yield f"Pushed to [{repo_id}]({url})."

    k.push.click(on_push, [p.run, k.repo, k.private, k.merged], k.status, api_visibility="private",
                 concurrency_limit=4)


def register_push_api(jobs) -> None:
    """/push: (run id, repo id, private) -> the repository's URL. On a Space it pushes with the caller's own
    token: the signed-in session's, or one given with gradio_client's Client(..., oauth_token=...)."""
    def push_run(run_id: str, repo_id: str, private: bool = False, merged: bool = False,
                 profile: gr.OAuthProfile | None = None, oauth_token: gr.OAuthToken | None = None) -> str:
        """Upload the run's adapter (or, with merged, the merged model) with a model card; returns its URL."""
        token = push_token(oauth_token)
        check_pusher(profile, token)
        return push(run_folder(jobs, run_id), repo_id, private, merged, token)

    gr.api(push_run, api_name="push", concurrency_limit=4)
