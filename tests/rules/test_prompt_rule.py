"""What counts as an empty prompt has one owner, finetune/runfile/evaluation.has_text (a string with more than
whitespace), asked by samples.prompts, the generation's check_prompt (the Playground's worker, /generate) and
through it the page's Generate button and `finetune generate --prompt`. The page and the CLI each had their
own test before; here every reader is asked about the same prompts, so one that decides on its own
(`prompt.strip()` on something that is not text, or a narrower idea of blank) disagrees with the owner."""

import gradio as gr
import pytest

from finetune.adapter.generate import check_prompt
from finetune.cli import main
from finetune.errors import RunFileError
from finetune.runfile.evaluation import Prompts, has_text
from finetune.runfile.validators import Invalid
from finetune.ui.playground import checked_prompt

PROMPTS = [None, "", "   ", "\n\t ", "\u3000", "\u200b", "a", "  hi  ", 5, ["a"]]


def refused(check, prompt, errors) -> bool:
    try:
        check(prompt)
    except errors:
        return True
    return False


@pytest.mark.parametrize("prompt", PROMPTS, ids=repr)
def test_every_reader_refuses_exactly_the_prompts_without_text(prompt):
    blank = not has_text(prompt)
    assert blank == (prompt in (None, "", "   ", "\n\t ", "\u3000", 5, ["a"]))   # a zero-width space is not blank
    assert refused(lambda p: Prompts()([p]), prompt, Invalid) == blank
    assert refused(check_prompt, prompt, RunFileError) == blank
    assert refused(checked_prompt, prompt, gr.Error) == blank


@pytest.mark.parametrize("prompt", [p for p in PROMPTS if isinstance(p, str)], ids=repr)
def test_the_cli_refuses_the_same_prompts_before_it_looks_for_the_run(prompt, tmp_path, capsys):
    assert main(["generate", str(tmp_path / "nowhere"), "--prompt", prompt]) == 2
    err = capsys.readouterr().err
    assert ("prompt: must be some text" in err) == (not has_text(prompt))
    assert ("no such folder" in err) == has_text(prompt)


@pytest.fixture(scope="module")
def generate_button(built_page):
    [handler] = [fn.fn for fn in built_page.demo.fns.values() if getattr(fn.fn, "__name__", "") == "on_generate"]
    return handler


@pytest.mark.parametrize("prompt", [p for p in PROMPTS if isinstance(p, str) or p is None], ids=repr)
def test_the_page_s_generate_button_refuses_the_same_prompts(generate_button, prompt):
    with pytest.raises(gr.Error) as refusal:
        next(generate_button("no-such-run", prompt, True, 16, 0.0, 1.0))
    assert ("prompt: must be some text" in refusal.value.message) == (not has_text(prompt))
