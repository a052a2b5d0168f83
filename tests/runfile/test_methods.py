"""The `method` section (finetune/runfile/method.py, rewards.py), the data formats of each method, GRPO's
built-in rewards and the /status series, without training; the CLI refuses bad method inputs in one line each."""

import json

import pytest
import yaml

from finetune.data.formats import detect_format, load_examples, to_trl
from finetune.demo import DEMO_DATA, MODEL_DIR
from finetune.errors import DataError, RunFileError
from finetune.jobs.report import series
from finetune.runfile import RunConfig, parse_run
from finetune.train.job import main
from finetune.train.rewards import Reward, code_problems, tagged


def problems(text: str) -> list[str]:
    with pytest.raises(RunFileError) as exc:
        parse_run(text)
    return exc.value.problems


@pytest.fixture(scope="module")
def tok():
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(MODEL_DIR)


def test_sft_run_files_are_written_as_before_and_methods_fill_trl_defaults():
    assert "method" not in RunConfig().to_dict() and "method" not in parse_run("method: {name: sft}").to_yaml()
    dpo = parse_run("method: {name: dpo}")
    assert dpo.to_dict()["method"] == {"name": "dpo", "beta": 0.1, "loss_type": "sigmoid"}
    assert parse_run(dpo.to_yaml()).to_dict() == dpo.to_dict()   # run.yaml reads back the same
    grpo = parse_run("method: {name: grpo, num_generations: 4, rewards: [{type: contains, text: hi}]}")
    assert grpo.method.beta == 0.0 and grpo.method.max_completion_length == 512
    assert grpo.method.rewards == [{"type": "contains", "weight": 1.0, "text": "hi"}]


@pytest.mark.parametrize("text, expected", [
    ("method: {name: dpo, num_generations: 4}", "method.num_generations: a setting of grpo, not of dpo"),
    ("method: {name: sft, beta: 0.2}", "method.beta: a setting of dpo, kto, orpo, grpo, not of sft"),
    ("method: {name: kto, loss_type: ipo}", "method.loss_type: kto takes one of kto, apo_zero_unpaired"),
    ("method: {name: grpo}", "method.rewards: grpo needs at least one reward"),
    ("method: {name: grpo, rewards: []}", "method.rewards: grpo needs at least one reward"),
    ("method: {name: grpo, rewards: [{type: contains}]}", "method.rewards: [0]: a contains reward needs text"),
    ("method: {name: grpo, rewards: [{type: regex, pattern: '(a'}]}", "is not a valid regular expression"),
    ("method: {name: grpo, rewards: [{type: regex, pattern: '(?i)a'}]}", "write flags scoped to a group"),
    ("method: {name: grpo, rewards: [{type: smile}]}", "method.rewards: [0].type: must be one of contains"),
    ("method: {name: grpo, rewards: [{type: length, max_tokens: 0}]}", "[0].max_tokens: must be a whole number"),
    ("method: {name: grpo, rewards: [{type: format, tags: ['<b>']}]}", "is not a tag name"),
    ("method: {name: grpo, rewards: [{type: contains, text: a, colour: red}]}", "[0].colour: not a key"),
    ("method: {name: dpo}\ndata: {packing: true}", "data.packing: only for sft"),
    ("method: {name: ppo}", "method.name: must be one of"),
])
def test_each_bad_method_setting_is_one_line_naming_it(text, expected):
    found = problems(text)
    assert len(found) == 1 and expected in found[0], found


def test_auto_detects_each_methods_format_and_names_what_is_missing():
    def fmt(columns, method="sft", format="auto"):
        return detect_format(columns, RunConfig.from_dict({"data": {"format": format}}).data, method)

    assert fmt(["prompt", "completion", "label"], "kto") == "unpaired_preference"
    assert fmt(["prompt", "chosen", "rejected"], "dpo") == fmt(["chosen", "rejected"], "orpo") == "preference"
    assert fmt(["prompt"], "grpo") == "prompt_only" and fmt(["prompt", "completion"], "grpo") == "prompt_completion"
    for columns, method, missing in [(["messages"], "dpo", "chosen, rejected"),
                                     (["prompt", "completion"], "kto", "label"),
                                     (["prompt", "chosen"], "dpo", "rejected"),
                                     (["messages"], "grpo", "prompt")]:
        with pytest.raises(DataError) as exc:
            fmt(columns, method)
        assert f"the column(s) {missing} are missing" in str(exc.value), exc.value
    with pytest.raises(DataError, match=r"set method\.name to kto"):
        fmt(["prompt", "completion", "label"])   # order matters: not prompt_completion under sft
    with pytest.raises(DataError, match="method dpo does not train on chat data"):
        fmt(["messages"], "dpo", "chat")


@pytest.mark.parametrize("method, columns, n", [("dpo", ["prompt", "chosen", "rejected"], 200),
                                                ("kto", ["prompt", "completion", "label"], 200),
                                                ("grpo", ["prompt", "answer"], 200)])
def test_demo_data_is_the_methods_own(tok, method, columns, n):
    rewards = [{"type": "exact_match", "column": "answer"}] if method == "grpo" else []
    run = RunConfig.from_dict({"method": {"name": method, **({"rewards": rewards} if rewards else {})}})
    examples = load_examples(run, tok)
    assert examples.train.column_names == columns and len(examples.train) == n
    assert DEMO_DATA[method].is_file()


def test_bad_rows_of_the_new_formats_are_named_by_line(tok, tmp_path):
    path = tmp_path / "d.jsonl"
    path.write_text(json.dumps({"prompt": "q", "completion": "a", "label": "yes"}) + "\n"
                    + json.dumps({"prompt": "q", "completion": "a", "label": True}) + "\n")
    data = RunConfig.from_dict({"data": {"path": str(path)}}).data
    with pytest.raises(DataError, match='line 1: "label" must be true'):
        to_trl(data, tok, method="kto")
    path.write_text(json.dumps({"prompt": "q", "chosen": [{"role": "assistant", "content": "a"}],
                                "rejected": "b"}) + "\n")
    with pytest.raises(DataError, match="must all be strings or all be lists"):
        to_trl(data, tok, method="dpo")


def test_builtin_rewards_score_each_completion():
    chat = [[{"role": "assistant", "content": "I am a small Helper."}], [{"role": "assistant", "content": "no"}]]
    assert Reward("contains", "r", {"type": "contains", "text": "Helper"})(None, chat) == [1.0, 0.0]
    assert Reward("regex", "r", {"type": "regex", "pattern": r"sm[a-z]ll"})(None, chat) == [1.0, 0.0]
    exact = Reward("exact_match", "r", {"type": "exact_match", "column": "answer"})
    assert exact(None, ["  The Fox\nlives. ", "x"], answer=["the fox lives.", "y"]) == [1.0, 0.0]
    assert Reward("length", "r", {"type": "length", "max_tokens": 4})(None, ["", ""], [[1] * 4, [1] * 6]) == [1.0, 0.5]
    assert tagged(" <think>a</think>\n<answer>b</answer>", ["think", "answer"])
    assert not tagged("<think>a</think>x<answer>b</answer>", ["think", "answer"]) and not tagged("<think>", ["think"])


def test_a_hostile_regex_stops_in_bounded_time_with_one_line():
    import time

    reward = Reward("regex", "method.rewards[0]", {"type": "regex", "pattern": "(.|.)*Z"})
    started = time.monotonic()
    with pytest.raises(RunFileError, match=r"method.rewards\[0\].pattern: .* simplify the pattern"):
        reward(None, ["a" * 40] * 4)
    assert time.monotonic() - started < 10


def test_python_rewards_need_trusted_code_on_a_space():
    run = parse_run("method: {name: grpo, rewards: [{type: python, path: r.py, function: score}]}")
    assert code_problems(run, {}) == []
    assert "FINETUNE_ALLOW_REMOTE_CODE=1" in code_problems(run, {"SPACE_ID": "a/b"})[0]
    assert code_problems(run, {"SPACE_ID": "a/b", "FINETUNE_ALLOW_REMOTE_CODE": "1"}) == []


def test_status_carries_the_methods_series_bounded():
    metrics = [{"step": s, "loss": 1.0, "rewards/margins": s / 10, "rewards/contains/mean": 0.5} for s in range(1, 4)]
    found = series(metrics)
    assert found["rewards/margins"] == [[1, 0.1], [2, 0.2], [3, 0.3]] and "rewards/contains/mean" in found
    assert series([{"step": 1, "loss": 2.0}]) == {}


def write(tmp_path, run: dict) -> str:
    run.setdefault("training", {})["output_dir"] = str(tmp_path / "out")
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(run), encoding="utf-8")
    return str(path)


@pytest.mark.parametrize("run, expected", [
    ({"method": {"name": "dpo"}, "data": {"path": str(DEMO_DATA["kto"])}}, "the column(s) chosen, rejected are missing"),
    ({"method": {"name": "kto"}, "data": {"path": str(DEMO_DATA["sft"])}}, "the column(s) prompt, completion, label"),
    ({"method": {"name": "dpo", "temperature": 0.7}}, "method.temperature: a setting of grpo, not of dpo"),
    ({"method": {"name": "grpo", "rewards": []}}, "method.rewards: grpo needs at least one reward"),
    ({"method": {"name": "grpo", "rewards": [{"type": "regex", "pattern": "[z"}]}}, "method.rewards: [0].pattern"),
    ({"method": {"name": "grpo", "rewards": [{"type": "exact_match", "column": "gold"}]}}, 'column "gold"'),
    ({"method": {"name": "dpo"}, "training": {"assistant_only_loss": True}},
     "training.assistant_only_loss: not a setting of DPOConfig"),
])
def test_cli_refuses_bad_method_inputs_in_one_line(tmp_path, capsys, run, expected):
    assert main(write(tmp_path, run)) == 2
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1 and expected in err and err.startswith("error: "), err
    assert not (tmp_path / "out").exists()


def test_cli_refuses_a_python_reward_on_a_space(tmp_path, capsys, monkeypatch):
    (tmp_path / "r.py").write_text("def score(prompts, completions, **kw):\n    return [0.0] * len(completions)\n")
    monkeypatch.setenv("SPACE_ID", "someone/space")
    monkeypatch.delenv("FINETUNE_ALLOW_REMOTE_CODE", raising=False)
    run = {"method": {"name": "grpo", "rewards": [{"type": "python", "path": str(tmp_path / "r.py"),
                                                   "function": "score"}]}}
    assert main(write(tmp_path, run)) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "method.rewards[0]: a python reward runs your own code" in err, err
