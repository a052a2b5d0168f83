"""A run on Hugging Face Jobs: the request that starts it (`HfApi.run_job`), and what it carries.

The job is a plain Python image that installs this project's pinned requirements and runs
`python -m finetune train` on the run file it is sent, with:
- this project's code: the exact files of the machine that launched it, synced into the launcher's private
  `jobs-artifacts` bucket (`HfApi.sync_job_volume`, by content hash: unchanged code is not uploaded again)
  and mounted read-only at /launchpad; so a Space, a laptop and CI send the code they run, no release needed;
- its run folder: a read-write folder of the same bucket mounted at /data, so checkpoints, metrics.jsonl and
  the adapter outlive the job and a cancelled run resumes from its last checkpoint;
- the run file in an environment variable (`runner: local` there, output_dir /data), and FINETUNE_ECHO=1 so
  every write to the run folder is also a log line, from which the launching machine rebuilds its own copy
  (finetune/jobs/mirror.py);
- the launcher's own token as the secret HF_TOKEN (gated models, the Hub push at the end); on a Space the
  signed-in user's OAuth token, never the Space's.
"""

from __future__ import annotations

import hashlib
import shutil
import tempfile
from pathlib import Path

from finetune.jobs.process import PACKAGE_ROOT
from finetune.runfile import RunConfig
from finetune.runfile.runner import LOCAL, timeout_seconds

CODE_MOUNT, RUN_MOUNT = "/launchpad", "/data"
BUCKET = "jobs-artifacts"   # huggingface_hub's bucket for job volumes (constants.HF_JOBS_ARTIFACTS_BUCKET_NAME)
SECRETS = ("HF_TOKEN",)
# What the job needs of this checkout: the package and the pins (not tests, benchmarks or runs).
SHIPPED = ("finetune", "requirements.txt")
SCRIPT = ("set -e; cd /launchpad; "
          "pip install --no-cache-dir --disable-pip-version-check --root-user-action=ignore -q -r requirements.txt; "
          "printf '%s' \"$FINETUNE_RUN\" > /tmp/run.yaml; exec python -m finetune train /tmp/run.yaml")


def code_files(root: str | Path = PACKAGE_ROOT) -> list[Path]:
    """The files the job runs, in a stable order (compiled caches left out)."""
    root = Path(root)
    out = []
    for name in SHIPPED:
        path = root / name
        items = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
        out += [p for p in items if "__pycache__" not in p.parts and p.suffix not in (".pyc", ".pyo")]
    return out


def code_name(root: str | Path = PACKAGE_ROOT) -> str:
    """The bucket folder of this code: its content hash, so the same code is uploaded once."""
    digest = hashlib.sha256()
    for path in code_files(root):
        digest.update(str(path.relative_to(root)).encode() + b"\0")
        digest.update(hashlib.sha256(path.read_bytes()).digest())
    return f"launchpad-code-{digest.hexdigest()[:16]}"


def run_folder_name(volume_id: str) -> str:
    return f"launchpad-run-{volume_id}"


def remote_run(run: RunConfig, folder_id: str) -> str:
    """The run file the job trains: this one, trained where it is (`runner: local`) into the mounted folder."""
    remote = RunConfig.from_dict(run.to_dict())
    remote.runner.where = LOCAL
    remote.training.output_dir = RUN_MOUNT
    text = remote.to_yaml()
    return f"# sent by LoRA Launchpad to Hugging Face Jobs; the run folder is {folder_id}\n{text}"


def request(run: RunConfig, volume_id: str, *, namespace: str | None, resume: bool = False,
            root: str | Path = PACKAGE_ROOT) -> dict:
    """Everything run_job is sent, as JSON (secrets by name only): what `--dry-run` prints. `namespace` None
    is the token's own user, named once the token is read; the volumes are in its jobs-artifacts bucket."""
    hf = run.runner
    bucket = f"{namespace or '<your user>'}/{BUCKET}"
    return {
        "namespace": namespace,
        "image": hf.image,
        "command": ["bash", "-c", SCRIPT + (" --resume" if resume else "")],
        "env": {"FINETUNE_RUN": remote_run(run, run_folder_name(volume_id)), "FINETUNE_ECHO": "1",
                "PYTHONUNBUFFERED": "1", "PYTHONDONTWRITEBYTECODE": "1", "HF_HUB_DISABLE_PROGRESS_BARS": "1"},
        "secrets": list(SECRETS),
        "flavor": hf.flavor,
        "timeout": timeout_seconds(hf.timeout),
        "labels": {"app": "lora-launchpad", "run": volume_id},
        "volumes": [
            {"type": "bucket", "source": bucket, "path": code_name(root), "mountPath": CODE_MOUNT, "readOnly": True},
            {"type": "bucket", "source": bucket, "path": run_folder_name(volume_id), "mountPath": RUN_MOUNT,
             "readOnly": False},
        ],
    }


def submit(api, run: RunConfig, volume_id: str, token: str, *, resume: bool = False,
           root: str | Path = PACKAGE_ROOT):
    """Upload the code (when this content is new), make the run's folder, start the job: its JobInfo."""
    namespace = run.runner.namespace or api.whoami(token=token)["name"]
    spec = request(run, volume_id, namespace=namespace, resume=resume, root=root)
    with tempfile.TemporaryDirectory(prefix="launchpad-code-") as staging:
        for path in code_files(root):
            target = Path(staging) / path.relative_to(root)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, target)
        code = api.sync_job_volume(staging, CODE_MOUNT, remote_name=spec["volumes"][0]["path"], read_only=True,
                                   namespace=namespace, token=token)
    with tempfile.TemporaryDirectory(prefix="launchpad-run-") as empty:   # a new folder, or the resumed one's
        out = api.sync_job_volume(empty, RUN_MOUNT, remote_name=spec["volumes"][1]["path"], read_only=False,
                                  namespace=namespace, token=token)
    return api.run_job(image=spec["image"], command=spec["command"], env=spec["env"],
                       secrets=dict.fromkeys(SECRETS, token), flavor=spec["flavor"], timeout=spec["timeout"],
                       labels=spec["labels"], volumes=[code, out], namespace=namespace, token=token)


def fetch_adapter(api, namespace: str, volume_id: str, into: Path, token: str) -> int:
    """Copy the finished run's adapter/ from its bucket folder into the local run folder; the files copied."""
    bucket, prefix = f"{namespace}/{BUCKET}", f"{run_folder_name(volume_id)}/adapter"
    files = [f for f in api.list_bucket_tree(bucket, prefix=prefix, recursive=True, token=token)
             if getattr(f, "type", "file") == "file"]
    pairs = []
    for f in files:
        relative = Path(f.path).relative_to(prefix)
        if ".." in relative.parts or relative.is_absolute():
            continue   # the bucket is the user's to write: never a path outside the adapter folder
        pairs.append((f, into / "adapter" / relative))
    if pairs:
        api.download_bucket_files(bucket, pairs, token=token)
    return len(pairs)


def live_prices(api=None) -> dict[str, float]:
    """{flavour: US$ per hour} as Hugging Face bills it now (`GET /api/jobs/hardware`), for the flavours it
    lists; {} where the Hub cannot be reached (offline, no network): the published table stands then."""
    from huggingface_hub import HfApi, constants

    if constants.HF_HUB_OFFLINE:
        return {}
    try:
        listed = (api or HfApi()).list_jobs_hardware()
    except Exception:   # a price list is a nicety: never a reason for the page not to load
        return {}
    per = {"minute": 60, "hour": 1, "second": 3600}
    return {hw.name: round(hw.unit_cost_usd * per[hw.unit_label], 4) for hw in listed
            if hw.unit_label in per and isinstance(hw.unit_cost_usd, (int, float))}
