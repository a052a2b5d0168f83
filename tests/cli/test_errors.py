"""finetune.errors: one base, FinetuneError, under every error the project raises on purpose; the UI's one
boundary (ui/guard.py) turns each into a one-line message, and a crashed Playground worker says so instead of
passing for a bad run file."""

import os

import gradio as gr
import pytest

from finetune.adapter.generate import GenSettings
from finetune.adapter.hub import PushError
from finetune.adapter.service import GenerationError, Playground, WorkerCrashed
from finetune.errors import DataError, FinetuneError, RunFileError
from finetune.jobs import UnknownRun
from finetune.model.patterns import Invalid, TooCostly
from finetune.ui.guard import refusals

EXAMPLES = {
    RunFileError: RunFileError("lora.r: must be a whole number >= 1, got 0"),
    DataError: DataError("data.path: train.jsonl line 3 is not JSON"),
    UnknownRun: UnknownRun("20261204-120000-demo"),
    GenerationError: GenerationError("busy: another generation is running"),
    WorkerCrashed: WorkerCrashed("the generation worker stopped unexpectedly"),
    PushError: PushError("the Hub refused the push: 403"),
    Invalid: Invalid("lora.target_modules: bad regex"),
    TooCostly: TooCostly("lora.target_modules: too costly to match"),
}


@pytest.mark.parametrize("cls", list(EXAMPLES), ids=lambda c: c.__name__)
def test_each_error_is_a_finetune_error(cls):
    assert issubclass(cls, FinetuneError) and isinstance(EXAMPLES[cls], FinetuneError)


@pytest.mark.parametrize("cls", list(EXAMPLES), ids=lambda c: c.__name__)
def test_the_boundary_turns_each_into_one_line(cls):
    with pytest.raises(gr.Error) as shown, refusals():
        raise EXAMPLES[cls]
    message = shown.value.message
    assert len(message.splitlines()) == 1 and "Traceback" not in message
    assert shown.value.__cause__ is None and shown.value.__suppress_context__


def test_the_boundary_lets_a_bug_through():
    with pytest.raises(KeyError), refusals():
        raise KeyError("a bug is not a refusal")


def test_a_crashed_worker_is_reported_as_a_crash_not_a_run_file_error(tmp_path):
    crashing = tmp_path / "python"
    crashing.write_text("#!/bin/sh\nexit 3\n")   # a worker that dies at once, as one killed for memory would
    os.chmod(crashing, 0o755)
    playground = Playground(None, use_slots=False, python=str(crashing), log_file=tmp_path / "worker.log")
    try:
        with pytest.raises(WorkerCrashed, match="worker stopped unexpectedly") as crashed:
            list(playground.generate(str(tmp_path), "hello", GenSettings(), compare=False))
    finally:
        playground.close()
    assert not isinstance(crashed.value, RunFileError)
    with pytest.raises(gr.Error, match="worker stopped unexpectedly"), refusals():
        raise crashed.value
