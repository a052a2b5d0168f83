"""The HTTP API with methods beyond SFT, through gradio_client against the served app (slow): /launch takes a
DPO or a GRPO run file, /status follows it to completed with every step's loss, and carries the method's own
curves under TRL's names (DPO's rewards/margins and rewards/accuracies, GRPO's reward and each reward's mean),
which the page draws beside the loss."""

import time

import pytest
from appserver import serve_app

pytestmark = pytest.mark.slow

STEPS = 3
RUNS = {
    "dpo": "method: {name: dpo}\n",
    "grpo": "method: {name: grpo, num_generations: 2, max_completion_length: 8,\n"
            "         rewards: [{type: contains, text: helper}]}\n",
}
# The series each method's /status carries, one point per step.
SERIES = {"dpo": ("rewards/margins", "rewards/accuracies", "rewards/chosen", "rewards/rejected"),
          "grpo": ("reward", "reward_std", "rewards/contains/mean")}
TRAINING = (f"data: {{path: demo, max_length: 64}}\ntraining: {{max_steps: {STEPS}, per_device_train_batch_size: 2, "
            "gradient_accumulation_steps: 1, logging_steps: 1}\n")


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """Each method's run launched through /launch and followed by /status until it ended: {method: status}."""
    from gradio_client import Client

    with serve_app(tmp_path_factory.mktemp("method-api") / "runs") as url:
        client = Client(url, verbose=False)
        run_ids = {name: client.predict(text + TRAINING, api_name="/launch") for name, text in RUNS.items()}
        out = {}
        deadline = time.monotonic() + 420
        for name, run_id in run_ids.items():   # queued one after the other: one slot on this machine
            while True:
                status = client.predict(run_id, api_name="/status")
                if status["state"] in ("completed", "failed", "cancelled") or time.monotonic() > deadline:
                    break
                time.sleep(1)
            out[name] = status
        yield out


@pytest.mark.parametrize("name", sorted(RUNS))
def test_launch_follows_a_methods_run_to_completed(finished, name):
    status = finished[name]
    assert status["state"] == "completed", status
    assert status["step"] == status["max_steps"] == STEPS and status["error"] is None
    assert [step for step, _ in status["losses"]] == list(range(1, STEPS + 1))


@pytest.mark.parametrize("name", sorted(RUNS))
def test_status_carries_the_methods_named_series(finished, name):
    series = finished[name].get("series") or {}
    for curve in SERIES[name]:
        points = series.get(curve)
        assert points and [step for step, _ in points] == list(range(1, STEPS + 1)), (curve, series)
        assert all(isinstance(value, (int, float)) for _, value in points)
