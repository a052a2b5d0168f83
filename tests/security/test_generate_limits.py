"""Threat: `/generate` took a 1 MB prompt; the worker sat at 100% CPU and 3 GB for more than 13 minutes, a
client that disconnected did not stop it, and the next `/generate` waited more than 120 s. Now the prompt is
refused in milliseconds (characters before tokenizing, then tokens against the model's context), a generation
stops at its time limit and says so, a caller that left stops its generation, and a request waits for its
turn no longer than its own limit. Real code on the demo model (tests/security/untrained.py)."""

import json
import time
import warnings

import gradio as gr
import pytest

from finetune.adapter.generate import MAX_PROMPT_CHARS, GenSettings, load, stream
from finetune.adapter.service import GenerationError, Playground
from finetune.adapter.source import find_adapter
from finetune.errors import RunFileError
from security.untrained import untrained_run

MB_PROMPT = "word " * 200_000          # 1,000,000 characters: 600,000 tokens for the demo's tokenizer
STORY = "Tell me a story."


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """(runs dir, a run that answers like the base model, a run whose adapter never stops talking)."""
    root = tmp_path_factory.mktemp("limits") / "runs"
    return root, untrained_run(root), untrained_run(root, "20260101-000001-rambling", rambling=True)


@pytest.fixture(scope="module")
def loaded(runs):
    with warnings.catch_warnings():   # PEFT's note on the rambling adapter's tied lm_head: nothing is merged here
        warnings.simplefilter("ignore", UserWarning)
        return load(find_adapter(runs[2]))


class NeverCalled:
    def generate(self, *args, **kwargs):
        raise AssertionError("the prompt reached the generation worker")


def generate_endpoint(jobs, playground):
    with gr.Blocks() as demo:
        from finetune.ui.playground import register_generate_api

        register_generate_api(jobs, playground)
    return next(f.fn for f in demo.fns.values() if f.api_name == "generate")


def test_generate_refuses_a_1mb_prompt_in_milliseconds_before_the_worker(runs):
    from finetune.jobs import JobManager

    jobs = JobManager(runs[0])
    try:
        endpoint = generate_endpoint(jobs, NeverCalled())
        for prompt, expected in [(MB_PROMPT, f"prompt: 1,000,000 characters is more than a prompt may have "
                                  f"({MAX_PROMPT_CHARS:,})"), (["a", "b"], "prompt: one prompt per call")]:
            started = time.perf_counter()
            with pytest.raises(gr.Error) as refused:
                list(endpoint(runs[1].name, prompt, 16, 0.0))
            ms = (time.perf_counter() - started) * 1000
            assert refused.value.message.startswith(expected) and "\n" not in refused.value.message
            print(f"/generate refused {expected.split(':')[1].strip()[:30]!r} in {ms:.2f} ms")
            assert ms < 100
    finally:
        jobs.shutdown()


def test_prompt_and_answer_must_fit_the_models_context(loaded):
    """The demo model's context is 1,024 tokens (max_position_embeddings); "Tell me a story." is 13 of them
    in its chat template, and "a " about one each."""
    for prompt, settings, expected in [
            ("a " * 2000, GenSettings(max_new_tokens=1), "prompt: 2,009 tokens do not fit the model's context"),
            (STORY, GenSettings(max_new_tokens=1020), "max_new_tokens: 1,020 more tokens do not fit the model's "
             "context of 1,024 tokens (max_position_embeddings)")]:
        started = time.perf_counter()
        with pytest.raises(RunFileError) as refused:
            stream(loaded, prompt, settings, True, lambda *a: None)
        assert len(refused.value.problems) == 1 and refused.value.problems[0].startswith(expected)
        print(f"{refused.value.problems[0]} ({(time.perf_counter() - started) * 1000:.1f} ms)")
    started = time.perf_counter()
    with pytest.raises(RunFileError, match="prompt: 1,000,000 characters"):
        stream(loaded, MB_PROMPT, GenSettings(), True, lambda *a: None)
    print(f"1 MB prompt refused by the core in {(time.perf_counter() - started) * 1000:.2f} ms")


def test_a_generation_stops_at_its_time_limit_and_says_so(loaded):
    """Unstopped, this adapter says 1000 tokens (4.3 s on two busy cores: the slow test below shows it)."""
    limit = 0.3
    started = time.perf_counter()
    cut = stream(loaded, STORY, GenSettings(max_new_tokens=1000), True, lambda *a: None, time_limit=limit)
    late = time.perf_counter() - started - limit
    assert cut["stopped"] == "time limit" and 0 < cut["tokens"]["adapter"] < 1000
    print(f"with a {limit} s limit it stopped {late * 1000:.0f} ms after it, at {cut['tokens']['adapter']} tokens")
    assert late < 0.5


def wait_for_done(events):
    events = list(events)
    assert events[-1]["event"] == "done"
    return events[-1]


@pytest.mark.slow
def test_the_worker_stops_a_generation_whose_caller_left_and_the_next_does_not_wait(runs, tmp_path):
    """The worker process, for real: a closed iterator (what Gradio does when a page closes, a client
    disconnects or an event is cancelled) stops the generation; the next request starts at once; a request
    waits for its turn no longer than its own limit; a long one ends at the limit."""
    playground = Playground(None, idle_timeout=60, log_file=tmp_path / "worker.log", time_limit=30)
    long = GenSettings(max_new_tokens=1000)
    try:
        full = wait_for_done(playground.generate(runs[2], STORY, long))   # loads the model, then 1000 tokens
        assert full["tokens"]["adapter"] == 1000
        for event in (stream := playground.generate(runs[2], STORY, long)):
            if event["event"] == "text":
                break
        left = time.perf_counter()
        stream.close()   # the caller left mid-answer
        done = wait_for_done(playground.generate(runs[2], STORY, GenSettings(max_new_tokens=8)))
        wait = time.perf_counter() - left - done["seconds"]
        print(f"1000 tokens take {full['seconds']:.2f} s; after the caller left, the next request waited "
              f"{wait:.2f} s for the worker")
        assert done["tokens"]["adapter"] == 8 and wait < full["seconds"] / 2

        playground.time_limit = limit = max(0.5, full["seconds"] / 4)
        started = time.perf_counter()
        cut = wait_for_done(playground.generate(runs[2], STORY, long))
        over = time.perf_counter() - started - limit
        print(f"with a {limit:.2f} s limit it stopped at {cut['tokens']['adapter']} tokens, {over * 1000:.0f} ms "
              f"after the limit, its answer saying so: {cut['stopped']!r}")
        assert cut["stopped"] == "time limit" and cut["time_limit_s"] == limit and over < 1.5

        first = playground.generate(runs[2], STORY, long)
        next(e for e in first if e["event"] == "text")   # it holds the worker now
        started = time.perf_counter()
        with pytest.raises(GenerationError, match=r"^busy: the generations before this one took its whole time limit"):
            list(playground.generate(runs[2], STORY, GenSettings(max_new_tokens=8)))
        waited = time.perf_counter() - started
        first.close()
        print(f"a request queued behind it waited {waited:.2f} s (its limit: {limit:.2f} s), then was refused")
        assert limit <= waited < limit + 1
    finally:
        playground.close()


@pytest.mark.slow
def test_a_worker_that_does_not_stop_is_killed_after_its_limit(tmp_path):
    """A worker stuck inside one step (a prefill far too slow for the hardware, say) never reaches its
    stopping check: the service kills it GRACE_S after the limit, so the next request gets a fresh one."""
    from finetune.adapter import service

    stuck = tmp_path / "python"
    stuck.write_text("#!/bin/sh\necho '{\"event\": \"ready\"}'\nexec sleep 600\n")
    stuck.chmod(0o755)
    playground = Playground(None, idle_timeout=60, python=str(stuck), time_limit=0.5)
    try:
        started = time.perf_counter()
        with pytest.raises(GenerationError, match=r"ran past its time limit of 0\.5 s and did not stop"):
            list(playground.generate(tmp_path, STORY))
        took = time.perf_counter() - started
        print(f"a stuck worker was killed {took - 0.5:.2f} s after its 0.5 s limit (grace {service.GRACE_S:g} s)")
        assert took < 0.5 + service.GRACE_S + 2 and playground.worker_pid is None
    finally:
        playground.close()


@pytest.mark.slow
def test_over_http_a_disconnected_generate_stops_and_a_1mb_prompt_is_refused(runs):
    """The served app: /generate with a 1 MB prompt is refused in one line; a client that reads the first
    answer of a long /generate and disconnects stops it, so the next /generate is not held up."""
    import httpx
    from appserver import serve_app

    with serve_app(runs[0]) as url:
        api = f"{url}/gradio_api/call/generate"

        def call(prompt, max_new_tokens, leave_early=False):
            started = time.perf_counter()
            event_id = httpx.post(api, json={"data": [runs[2].name, prompt, max_new_tokens, 0.0]},
                                  timeout=60).json()["event_id"]
            last = None
            with httpx.stream("GET", f"{api}/{event_id}", timeout=120) as response:
                for line in response.iter_lines():
                    if line.startswith("event: "):
                        last = line[7:]
                    elif line.startswith("data: ") and last in ("generating", "complete", "error"):
                        data = json.loads(line[6:])
                        if last != "generating" or (leave_early and data and data[0]["adapter"]):
                            return last, data, time.perf_counter() - started
            return last, None, time.perf_counter() - started

        call(STORY, 8)   # the worker starts and loads the model
        for _ in range(2):
            kind, data, seconds = call(MB_PROMPT, 16)
            print(f"1 MB prompt over HTTP: {kind} in {seconds * 1000:.0f} ms: {data}")
            assert kind == "error" and "prompt: 1,000,000 characters" in json.dumps(data) and seconds < 5
        kind, data, full = call(STORY, 1000)
        assert kind == "complete" and data[0]["stopped"] is None
        call(STORY, 1000, leave_early=True)   # reads the first words, then disconnects
        kind, data, seconds = call(STORY, 8)
        print(f"/generate of 1000 tokens takes {full:.2f} s; after a client left one, the next one (8 tokens) "
              f"answered in {seconds:.2f} s")
        assert kind == "complete" and seconds < full / 2
