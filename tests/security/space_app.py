"""The app served as a Hugging Face Space with Gradio's real sign-in (SPACE_ID, SYSTEM=spaces and the OAuth
variables a Space sets), offline: the identity provider is never called, because a test signs a visitor in by
handing over the session cookie that Gradio's /login/callback would have set (Starlette's SessionMiddleware,
signed with the key Gradio derives from OAUTH_CLIENT_SECRET). Also a runs folder holding everything a visitor
must never read: a run's log, status (with its error), run file, push record, adapter, and an uploaded dataset."""

from __future__ import annotations

import base64
import hashlib
import json
import time
from pathlib import Path

SECRET = "test-oauth-secret"
SPACE_ENV = {"SPACE_ID": "alice/space", "SYSTEM": "spaces", "HF_TOKEN": "hf_space_token_not_for_visitors",
             "OAUTH_CLIENT_ID": "test-client", "OAUTH_CLIENT_SECRET": SECRET, "OAUTH_SCOPES": "openid profile",
             "OPENID_PROVIDER_URL": "http://127.0.0.1:9"}   # port 9 (discard): nothing there, never called
RUN = "20260101-000000-demo-r8"
MARK = "SECRET-3f9c"   # in every file a visitor must not read


def session_cookie(username: str, secret: str = SECRET) -> dict:
    """The cookie of a browser signed in as `username` (what Gradio's OAuth callback stores in the session)."""
    import itsdangerous

    info = {"userinfo": {"preferred_username": username, "name": username, "profile": "", "picture": ""},
            "access_token": f"hf_oauth_{username}", "scope": "openid profile", "expires_at": int(time.time()) + 3600}
    key = hashlib.sha256((secret + "-v4").encode()).hexdigest()   # as gradio/oauth.py derives it
    data = base64.b64encode(json.dumps({"oauth_info": info}).encode())
    return {"session": itsdangerous.TimestampSigner(key).sign(data).decode()}


def secret_runs(runs: Path) -> dict[str, Path]:
    """A completed run (with an adapter and its zip) and an upload, each file holding MARK; {name: path}."""
    from finetune.train.runfolder import RunFolder
    from finetune.ui.live import adapter_zip

    folder = RunFolder(runs / RUN)
    folder.path.mkdir(parents=True)
    folder.run_yaml.write_text(f"model: {{name_or_path: demo}}\ndata: {{path: /data/{MARK}.jsonl}}\n")
    folder.write_status(state="failed", step=3, max_steps=3, error=f"data.path: columns ({MARK}, age)")
    for step in (1, 2, 3):
        folder.append_metrics({"step": step, "loss": 3.0 - step / 10})
    (folder.path / "train.log").write_text(f"reading {MARK}\n")
    (folder.path / "push.json").write_text(json.dumps({"state": "failed", "error": MARK}))
    adapter = folder.path / "adapter"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text(json.dumps({"peft_type": "LORA", "note": MARK}))
    (adapter / "adapter_model.safetensors").write_bytes(MARK.encode() * 100)
    adapter_zip(runs, RUN)   # as the page's watch poll makes it once the run has ended
    uploads = runs / ".uploads"
    uploads.mkdir()
    (uploads / "20260101-000000-bob.jsonl").write_text(json.dumps({"text": f"bob's {MARK} row"}) + "\n")
    files = {p.relative_to(runs).as_posix(): p for p in runs.rglob("*") if p.is_file()}
    return files
