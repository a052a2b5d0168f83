"""The page's read-only panels (finetune/ui/render.py): plain functions of plain data, checked without a page."""

from types import SimpleNamespace

import pytest

from finetune.ui import render


def test_a_queued_run_says_its_place_and_nothing_else():
    assert render.run_progress({"state": "queued", "queue_position": 2}) == "**queued** · number 2 in the queue"
    assert render.run_progress({"state": "queued"}) == "**queued**"
    assert render.run_progress({}) == "**queued**"   # a status not written yet


def test_a_running_run_before_its_first_step_is_loading():
    line = render.run_progress({"state": "running", "step": 0, "max_steps": 10, "elapsed_s": 4})
    assert line == "**running** · loading the model and the data · 4 s elapsed"
    # Once training has started, step 0 is a step like any other.
    started = render.run_progress({"state": "running", "step": 0, "max_steps": 10, "training_started_at": 1.0})
    assert started == "**running** · step 0 / 10"


def test_a_running_run_shows_step_speed_time_left_and_last_loss():
    status = {"state": "running", "step": 3, "max_steps": 10, "tokens_per_second": 1234.4, "eta_s": 75,
              "elapsed_s": 20, "losses": [[1, 3.0], [3, 2.51234]]}
    assert render.run_progress(status) == ("**running** · step 3 / 10 · 1,234 tokens/s · about 1 min 15 s left"
                                           " · last loss 2.5123")
    several = render.run_progress({**status, "world_size": 2})
    assert "1,234 tokens/s (2 processes)" in several
    assert "step 5 / ?" in render.run_progress({"state": "running", "step": 5, "max_steps": -1})


def test_a_finished_run_says_how_long_it_took():
    line = render.run_progress({"state": "completed", "step": 10, "max_steps": 10, "elapsed_s": 3725,
                                "eta_s": 0, "losses": [[10, 1.0]]})
    assert line == "**completed** · step 10 / 10 · 1 h 02 min elapsed · last loss 1.0000"


def test_a_failed_run_shows_its_error_escaped_below_the_line():
    line = render.run_progress({"state": "failed", "step": 2, "max_steps": 10,
                                "error": "data.path: <script>alert(1)</script> & more"})
    head, error = line.split("\n\n")
    assert head == "**failed** · step 2 / 10"
    assert error == "data.path: &lt;script&gt;alert(1)&lt;/script&gt; &amp; more"


def test_run_label_is_the_folder_and_the_state():
    assert render.run_label({"run_id": "20260101-000000-demo-r8", "state": "completed"}) == \
        "20260101-000000-demo-r8 · completed"
    assert render.run_label({"run_id": "x"}) == "x · ?"


@pytest.mark.parametrize(("seconds", "text"), [(None, "?"), (0, "0 s"), (59.4, "59 s"), (59.6, "1 min 00 s"),
                                               (75, "1 min 15 s"), (3600, "1 h 00 min"), (7322, "2 h 02 min")])
def test_duration(seconds, text):
    assert render.duration(seconds) == text


@pytest.mark.parametrize(("n", "text"), [(0, "0 B"), (999, "999 B"), (1000, "1.0 KB"), (1_550_000, "1.6 MB"),
                                         (2_000_000_000, "2.0 GB"), (5_000_000_000_000, "5,000.0 GB")])
def test_human_bytes(n, text):
    assert render.human_bytes(n) == text


@pytest.mark.parametrize(("n", "text"), [(999, "999"), (1500, "1.5K"), (2_000_000, "2.0M"), (3_100_000_000, "3.1B")])
def test_human_count(n, text):
    assert render.human_count(n) == text


COUNT = SimpleNamespace(trainable=1_234_567, total=135_000_000, percent=0.914494, scaling=2.0,
                        adapter_bytes=4_938_268, modules={})


def test_the_count_headline_carries_what_the_page_needs_to_redraw_it():
    html = render.count_headline(COUNT, r=8, slope=154_320, alpha=16, rslora=True)
    assert "<span class='trainable'>1,234,567</span> trainable parameters" in html
    assert "<span class='total'>135,000,000</span>" in html and "<span class='percent'>0.9145%</span>" in html
    assert "<span class='scaling'>2</span>" in html and "<span class='adapter-size'>4.9 MB</span>" in html
    for attribute in ("data-r='8'", "data-slope='154320'", "data-trainable='1234567'", "data-total='135000000'",
                      "data-alpha='16'", "data-rslora='1'"):
        assert attribute in html
    assert "data-slope" not in render.count_headline(COUNT)   # no slope: the page does not predict


def test_no_count_says_to_fix_the_settings():
    assert "fix the settings below" in render.count_headline(None)
    assert render.count_details(None) == ""
    assert render.count_details(COUNT) == ""   # no modules, no table


def test_count_details_has_one_row_per_target_with_escaped_names():
    count = SimpleNamespace(modules={
        "q_proj": {"layers": 2, "shape": [64, 64], "r": 8, "params": 2048},
        "<odd>": {"layers": 1, "shape": [[64, 32], [32, 64]], "ranks": [4, 8], "params": 768},
        "lm_head": {"full": True, "params": 1_000_000}})
    html = render.count_details(count)
    assert html.count("<tr>") == 4   # the header and three rows
    assert "<td>q_proj</td><td class='num'>2</td><td>64&rarr;64</td><td class='num'>8</td>" \
           "<td class='num'>2,048</td>" in html
    assert "<td>&lt;odd&gt;</td>" in html and "64&rarr;32, 32&rarr;64" in html and ">4, 8<" in html
    assert "<td>lm_head</td><td class='num'></td><td></td><td class='num'>full</td>" \
           "<td class='num'>1,000,000</td>" in html


def test_problems_are_one_bullet_each_and_examples_are_numbered():
    assert render.problems(["lora.r: must be a whole number >= 1, got 0", "data.path: no such file"]) == \
        "- lora.r: must be a whole number >= 1, got 0\n- data.path: no such file"
    assert render.problems(None) == ""
    assert render.examples([]) == "_No examples._"
    assert render.examples(["a", "b"]) == "**Example 1**\n\n```\na\n```\n\n**Example 2**\n\n```\nb\n```"


def test_group_label_and_model_note():
    group = SimpleNamespace(name="q_proj", layers=30, shapes=[(576, 576), (576, 192), (192, 576)])
    assert render.group_label(group) == "q_proj ×30 (576→576, 576→192…)"
    assert render.group_label(SimpleNamespace(name="o", layers=1, shapes=[(8, 8)])) == "o ×1 (8→8)"
    skel = SimpleNamespace(architecture="LlamaForCausalLM", model_type="llama", total=134_515_008, tied=True)
    assert render.model_note(skel) == ("LlamaForCausalLM (llama): 134,515,008 parameters in the base model, "
                                       "tied embeddings.")
