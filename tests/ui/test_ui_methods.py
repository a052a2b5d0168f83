"""The method in the form (issue 17): the form <-> run file mapping of the method section and GRPO's rewards
table, the Method section's handlers on a page built as the app builds it (no browser), the Space's refusal of
python rewards, the method's curves in the watch poll, the runs table's method column and the model card."""


import gradio as gr
import pytest
from test_ui_events import REQUEST, updated, wired

from finetune.runfile import RunConfig
from finetune.runfile.text import read_file
from finetune.ui import form as F
from finetune.ui import panel, plots
from finetune.ui.panel import count_outputs


@pytest.fixture(scope="module")
def page(built_page):   # built_page and form, the opening form state: tests/conftest.py
    return built_page


def props(update) -> dict:
    """An update's arguments (a component's or a layout block's), or the plain value."""
    return getattr(update, "constructor_args", update)


# --- the mapping, without Gradio ---

def test_an_sft_form_writes_no_method_section_and_a_dpo_form_only_its_settings():
    start = panel.initial()
    values, info = start["values"], start["info"]
    assert values["method.name"] == "sft" and "method" not in F.form_to_run(values, {}, info["all_linear"])
    assert "method:" not in start["run_file"]
    # A hidden widget's value of another method stays out of the run file.
    values = {**values, "method.name": "dpo", "method.beta": 0.2, "method.loss_type": "ipo",
              "method.num_generations": 4.0, "method.rewards": [["contains", "x", 1.0]]}
    assert F.form_to_run(values, {}, info["all_linear"])["method"] == {"name": "dpo", "beta": 0.2, "loss_type": "ipo"}
    _, run, problems = panel.form_run(values, {}, info)
    assert problems == [] and run.method.name == "dpo" and run.data.path == "demo"


@pytest.mark.parametrize("preset", ["dpo", "kto", "orpo", "grpo"])
def test_each_method_preset_goes_into_the_form_and_back_unchanged(preset):
    info = panel.initial()["info"]
    raw = read_file(f"presets/{preset}.yaml")
    values = panel.form_values(raw, info)
    assert values["method.name"] == preset
    back = F.form_to_run(values, {}, info["all_linear"])["method"]
    assert RunConfig.from_dict({"data": {"path": "demo"}, "training": raw["training"], "method": back}) \
        .to_dict()["method"] == RunConfig.from_dict({"data": {"path": "demo"}, **raw}).to_dict()["method"]


def test_rewards_rows_round_trip_and_a_bad_row_is_named_by_the_check():
    rewards = [{"type": "contains", "text": " helper", "weight": 1.0}, {"type": "regex", "pattern": r"\d+", "weight": 2},
               {"type": "exact_match", "column": "answer", "weight": 1.0},
               {"type": "length", "max_tokens": 64, "weight": 0.5},
               {"type": "format", "tags": ["think", "answer"], "weight": 1.0},
               {"type": "python", "path": "my/rewards.py", "function": "score", "weight": -1.0}]
    rows = F.rewards_to_rows(rewards)
    assert rows[3] == ["length", "64", 0.5] and rows[5] == ["python", "my/rewards.py:score", -1.0]
    assert F.rows_to_rewards([*rows, ["", None, None]]) == rewards   # a blank row is skipped
    with pytest.raises(Exception, match=r"method.rewards: \[0\].type: must be one of"):
        RunConfig.from_dict({"method": {"name": "grpo", "rewards": F.rows_to_rewards([["containz", "x", 1]])}})
    with pytest.raises(Exception, match=r"method.rewards: \[0\]: a contains reward needs text"):
        RunConfig.from_dict({"method": {"name": "grpo", "rewards": F.rows_to_rewards([["contains", "", 1]])}})


def test_unknown_method_keys_of_a_loaded_file_stay_for_the_check():
    values = F.run_to_form({"method": {"name": "dpo", "beta": 0.3}}, [])
    extra = F.extra_of({"method": {"name": "dpo", "beta": 0.3, "betta": 1}})
    assert extra == {"method": {"betta": 1}}
    assert F.form_to_run(values, extra, [])["method"] == {"betta": 1, "name": "dpo", "beta": 0.3}


# --- the page's handlers ---

def test_picking_a_method_shows_its_settings_at_their_defaults_and_counts(page, form):
    ui, (values, extra, info) = page.ui, form
    handle = wired(page, ui.form["method.name"], "change")
    answer = handle.fn("dpo", values, extra, info, REQUEST)
    assert {ui.values, *count_outputs(ui)} <= updated(page, handle, answer)
    assert values["method.beta"] == 0.1 and values["method.loss_type"] == "sigmoid"
    assert props(answer[ui.form["method.beta"]])["visible"] is True
    assert props(answer[ui.form["method.num_generations"]])["visible"] is False
    assert props(answer[ui.form["method.loss_type"]])["choices"][0] in ("sigmoid", ("sigmoid", "sigmoid"))
    assert props(answer[ui.launch])["interactive"] is True   # dpo on `data: demo` counts and may launch
    assert props(answer[ui.rewards_box])["visible"] is False
    assert updated(page, handle, handle.fn("dpo", values, extra, info, REQUEST)) == set()   # the echo
    # GRPO: its rewards table, with a first row to fill in; no reward text yet is the one problem.
    answer = handle.fn("grpo", values, extra, info, REQUEST)
    assert props(answer[ui.rewards_box])["visible"] is True and values["method.rewards"] == [["contains", "", 1.0]]
    assert "a contains reward needs text" in answer[ui.errors]
    assert props(answer[ui.launch])["interactive"] is False


def test_the_rewards_table_and_its_buttons_build_method_rewards(page, form):
    import pandas as pd

    ui, (values, extra, info) = page.ui, form
    wired(page, ui.form["method.name"], "change").fn("grpo", values, extra, info, REQUEST)
    table = ui.form["method.rewards"]
    edit = wired(page, table, "change")
    frame = pd.DataFrame([["contains", "helper", 1.0]], columns=F.REWARD_COLUMNS)
    answer = edit.fn(frame, values, extra, info, REQUEST)
    assert updated(page, edit, answer) == {ui.values, *count_outputs(ui)}
    assert props(answer[ui.launch])["interactive"] is True
    assert updated(page, edit, edit.fn(frame, values, extra, info, REQUEST)) == set()   # the echo
    add = wired(page, ui.add_reward, "click")
    answer = add.fn(values, extra, info, REQUEST)
    assert len(values["method.rewards"]) == 2 and table in updated(page, add, answer)
    remove = wired(page, ui.remove_reward, "click")
    remove.fn(values, extra, info, REQUEST)
    assert values["method.rewards"] == [["contains", "helper", 1.0]]
    text = panel.run_file_text(values, extra, info)
    assert "name: grpo" in text and "text: helper" in text


def test_the_dpo_preset_fills_the_method_and_a_lora_preset_keeps_it(page, form):
    ui, (values, extra, info) = page.ui, form
    handle = wired(page, ui.preset, "select")
    answer = handle.fn("dpo", values, extra, info, REQUEST)
    assert answer[ui.form["method.name"]] == "dpo" and values["method.name"] == "dpo"
    assert props(answer[ui.form["method.beta"]])["visible"] is True
    handle.fn("rslora", values, extra, info, REQUEST)
    assert values["method.name"] == "dpo"


def test_an_sft_preset_after_grpo_leaves_no_rewards_behind(page, form):
    ui, (values, extra, info) = page.ui, form
    handle = wired(page, ui.preset, "select")
    handle.fn("grpo", values, extra, info, REQUEST)
    assert values["method.rewards"] == [["contains", "helper", 1.0]]
    answer = handle.fn("dpo", values, extra, info, REQUEST)
    assert values["method.name"] == "dpo" and props(answer[ui.rewards_box])["visible"] is False
    assert "rewards" not in panel.run_file_text(values, extra, info)


# --- the Space refuses python rewards before launch ---

def test_a_python_reward_is_refused_on_a_space_unless_the_owner_allows_code(tmp_path):
    from finetune.ui import access

    run = RunConfig.from_dict({"method": {"name": "grpo", "rewards": [
        {"type": "contains", "text": "x"}, {"type": "python", "path": "r.py", "function": "score"}]}})
    space = {"SPACE_ID": "alice/space", "SYSTEM": "spaces"}
    problems = access.policy_problems(run, space, uploads=tmp_path)
    assert problems == [p for p in problems if p.startswith("method.rewards[1]:")] and len(problems) == 1
    assert access.policy_problems(run, {**space, "FINETUNE_ALLOW_REMOTE_CODE": "1"}, uploads=tmp_path) == []
    assert access.policy_problems(run, {}, uploads=tmp_path) == []   # locally: your own code


# --- the method's curves ---

def test_the_method_frame_leads_with_an_empty_row_per_series_and_picks_the_methods_curves():
    series = {"rewards/margins": [[1, 0.1], [2, 0.3]], "rewards/accuracies": [[1, 0.5], [2, 1.0]],
              "rewards/chosen": [[1, 0.0]], "kl": [[1, 0.2]]}
    assert plots.method_series(series) == ["rewards/margins", "rewards/accuracies"]
    frame = plots.method_frame(series)
    assert frame["series"].tolist()[:2] == ["rewards/margins", "rewards/accuracies"]
    assert frame["value"].isna().tolist()[:2] == [True, True] and len(frame) == 6
    grpo = {"reward": [[1, 0.2]], "reward_std": [[1, 0.1]], "rewards/contains/mean": [[1, 0.2]]}
    assert plots.method_series(grpo) == ["reward"]   # one reward: its mean is the same curve
    grpo["rewards/regex/mean"] = [[1, 0.0]]
    assert plots.method_series(grpo) == ["reward", "rewards/contains/mean", "rewards/regex/mean"]
    assert plots.method_series({}) == [] and plots.method_frame(None).empty


def test_the_watch_poll_draws_the_method_curve_and_hides_it_for_sft(page, tmp_path):
    """A DPO run folder written by hand: the data goes first, then the settings (visible, colours) alone."""
    import json

    ui, runs = page.ui, page.jobs.runs_dir
    folder = runs / "dpo-by-hand"
    folder.mkdir()
    (folder / "run.yaml").write_text("model: {name_or_path: demo}\nmethod: {name: dpo}\n")
    (folder / "status.json").write_text(json.dumps({"state": "running", "step": 2, "max_steps": 10}))
    (folder / "metrics.jsonl").write_text("".join(json.dumps({"step": s, "loss": 0.7 - s / 10, "rewards/margins":
                                                             s / 10, "rewards/accuracies": 0.5}) + "\n"
                                                  for s in (1, 2)))
    tick = wired(page, ui.timer, "tick", ui.loss_plot)
    first = tick.fn("dpo-by-hand", None)
    assert ui.method_plot in updated(page, tick, first)
    assert set(first[ui.method_plot]["series"].dropna()) == {"rewards/margins", "rewards/accuracies"}
    second = tick.fn("dpo-by-hand", first[ui.seen])
    assert props(second[ui.method_plot])["visible"] is True
    assert set(props(second[ui.method_plot])["color_map"]) == {"rewards/margins", "rewards/accuracies"}
    nothing = tick.fn(None, second[ui.seen])
    nothing = tick.fn(None, nothing[ui.seen]) if nothing != gr.skip() else nothing
    assert props(nothing[ui.method_plot])["visible"] is False


# --- the runs table, the compare view and the model card name the method ---

def _run_folder(root, run_id: str, run_yaml: str):
    import json

    folder = root / run_id
    folder.mkdir()
    (folder / "run.yaml").write_text(run_yaml)
    (folder / "status.json").write_text(json.dumps({"state": "completed", "step": 1, "max_steps": 1}))
    (folder / "metrics.jsonl").write_text(json.dumps({"step": 1, "loss": 0.5}) + "\n")
    return folder


def test_the_runs_table_and_the_compare_diff_name_the_method(tmp_path):
    from finetune.jobs import history
    from finetune.ui.runs import compare_data, table

    _run_folder(tmp_path, "sft-run", "model: {name_or_path: demo}\nlora: {r: 8}\n")
    _run_folder(tmp_path, "dpo-run", "model: {name_or_path: demo}\nlora: {r: 8}\nmethod: {name: dpo, beta: 0.1}\n")
    frame = table(history.summaries(tmp_path))
    assert dict(zip(frame["run"], frame["method"], strict=True)) == {"sft-run": "sft", "dpo-run": "dpo"}
    _, diff = compare_data(tmp_path, ["sft-run", "dpo-run"])
    assert "- `method.name`: sft | dpo" in diff and "- `method.beta`: (unset) | 0.1" in diff


def test_the_model_card_names_the_method_its_settings_and_rewards(tmp_path):
    from finetune.adapter.card import render
    from finetune.adapter.source import AdapterSource
    from finetune.train.runfolder import RunFolder

    folder = _run_folder(tmp_path, "grpo-run", "")
    run = RunConfig.from_dict({"model": {"name_or_path": "demo"}, "method": {"name": "grpo", "num_generations": 4,
                               "rewards": [{"type": "regex", "pattern": "a|b", "weight": 2}]}})
    source = AdapterSource(RunFolder(folder), run, folder / "adapter", None, "completed")
    text = render(source, "alice/grpo-adapter", has_plot=False)
    line = next(li for li in text.splitlines() if li.startswith("| Method |"))
    assert "GRPO (Group Relative" in line and "num_generations 4" in line and "temperature 1" in line
    assert r"regex (pattern `a\|b`, weight 2)" in line and line.count(" | ") == 1   # the | escaped: one cell
    assert "- grpo" in text.split("---")[1]   # the Hub's tags
    sft = AdapterSource(RunFolder(folder), RunConfig.from_dict({"model": {"name_or_path": "demo"}}),
                        folder / "adapter", None, "completed")
    assert "| Method | SFT (supervised fine-tuning on the examples) |" in render(sft, "alice/x", has_plot=False)


def test_the_method_charts_settings_wait_for_a_frame_naming_its_series(page):
    """A run's series appear at its first log: the poll that sees them sends their data first, the settings
    (which rebuild the chart's colour scale from the data it holds) on the next one (finetune/ui/plots.py)."""
    import json

    ui, runs = page.ui, page.jobs.runs_dir
    folder = runs / "dpo-later"
    folder.mkdir()
    (folder / "run.yaml").write_text("model: {name_or_path: demo}\nmethod: {name: dpo}\n")
    (folder / "status.json").write_text(json.dumps({"state": "running", "step": 0, "max_steps": 10}))
    tick = wired(page, ui.timer, "tick", ui.loss_plot)
    seen = None
    for _ in range(4):   # settled with no series yet
        answer = tick.fn("dpo-later", seen)
        seen = answer[ui.seen] if answer != gr.skip() else seen
    (folder / "metrics.jsonl").write_text(json.dumps({"step": 1, "loss": 0.7, "rewards/margins": 0.1}) + "\n")
    first = tick.fn("dpo-later", seen)
    assert set(first[ui.method_plot]["series"].dropna()) == {"rewards/margins"}   # the data, not the settings
    second = tick.fn("dpo-later", first[ui.seen])
    assert props(second[ui.method_plot])["visible"] is True
