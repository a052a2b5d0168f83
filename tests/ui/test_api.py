"""The app's HTTP API through gradio_client, against the served app: /count gives exactly what the CLI's
`count --json` gives, /launch + /status follow a run on the demo to completed, and bad input comes back
as the core's one-line messages."""

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
from appserver import ROOT, serve_app

pytestmark = pytest.mark.slow   # each calls the app, served in its own process

RUNS = {
    "defaults.yaml": "model: {name_or_path: demo}\n",
    "two-targets.yaml": "lora: {r: 4, lora_alpha: 8, target_modules: [q_proj, v_proj], use_dora: true,\n"
                        "       modules_to_save: [lm_head], bias: all}\n",
    "layers.json": json.dumps({"lora": {"r": 12, "use_rslora": True, "layers_to_transform": [0, 2],
                                        "target_modules": ["gate_proj", "down_proj"]}}),
}


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    from gradio_client import Client

    with serve_app(tmp_path_factory.mktemp("api") / "runs") as url:
        yield Client(url, verbose=False)


def cli_count(paths: list[Path]) -> list[dict]:
    out = subprocess.run([sys.executable, "-m", "finetune", "count", *map(str, paths), "--json"], cwd=ROOT,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return [json.loads(line) for line in out.stdout.splitlines()]


def test_count_matches_the_cli(client, tmp_path):
    paths = []
    for name, text in RUNS.items():
        paths.append(tmp_path / name)
        paths[-1].write_text(text)
    for (name, text), expected in zip(RUNS.items(), cli_count(paths), strict=True):
        got = client.predict(text, api_name="/count")
        assert got["config"] == "api"
        assert {k: v for k, v in got.items() if k != "config"} == \
            {k: v for k, v in expected.items() if k != "config"}, name


def test_bad_input_comes_back_as_one_line_errors(client):
    from gradio_client.exceptions import AppError

    with pytest.raises(AppError, match=r"lora\.r: must be a whole number >= 1"):
        client.predict("lora: {r: 0}", api_name="/count")
    with pytest.raises(AppError, match=r'"q_projj" matches no module'):
        client.predict("lora: {target_modules: [q_projj]}", api_name="/count")
    with pytest.raises(AppError, match="no run"):
        client.predict("no-such-run", api_name="/status")
    with pytest.raises(AppError, match="trust_remote_code"):
        client.predict("model: {trust_remote_code: true}", api_name="/launch")


def test_launch_and_status_follow_a_run_to_completed(client):
    run = "training: {max_steps: 3, per_device_train_batch_size: 1, gradient_accumulation_steps: 1}\n"
    run_id = client.predict(run, api_name="/launch")
    assert isinstance(run_id, str) and "demo" in run_id
    deadline = time.monotonic() + 240
    states = []
    while True:
        status = client.predict(run_id, api_name="/status")
        states.append(status["state"])
        if status["state"] in ("completed", "failed", "cancelled") or time.monotonic() > deadline:
            break
        time.sleep(1)
    assert status["state"] == "completed", status["error"]
    assert {"state", "step", "max_steps", "losses", "error"} <= set(status)
    assert status["step"] == status["max_steps"] == 3
    assert [step for step, _ in status["losses"]] == [1, 2, 3]
    assert all(isinstance(loss, float) for _, loss in status["losses"])
    assert status["error"] is None
    assert client.predict(run_id, api_name="/cancel")["state"] == "completed"   # a finished run stays so
