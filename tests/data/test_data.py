"""finetune.data.formats: every supported file type and format reaches TRL's shapes, and every kind of bad data is one
clear line that names the file, the line or row, and the columns found. No model weights are loaded here."""

import json

import pytest

from finetune.data.formats import count_too_long, eval_count, last_reply_as_completion, load_examples, preview, to_trl
from finetune.errors import DataError
from finetune.model.loading import load_tokenizer
from finetune.runfile import DataSection, ModelSection, RunConfig

CHAT = {"messages": [{"role": "user", "content": "Where does the fox live?"},
                     {"role": "assistant", "content": "The fox lives in the forest."}]}
PC = {"prompt": "Where does the fox live?", "completion": " The fox lives in the forest."}
ALPACA = {"instruction": "Say where the fox lives.", "input": "fox", "output": "The fox lives in the forest."}
TEXT = {"text": "The fox lives in the forest."}


@pytest.fixture(scope="module")
def chat_tok():
    return load_tokenizer(ModelSection())


@pytest.fixture(scope="module")
def plain_tok(plain_model_dir):
    return load_tokenizer(ModelSection(name_or_path=str(plain_model_dir)))


def data(path, **kw):
    return DataSection(path=str(path), **kw)


def to_trl_rows(section, tokenizer):
    ds, fmt = to_trl(section, tokenizer)
    return ds.to_list(), fmt


def problems(path, tokenizer, **kw):
    with pytest.raises(DataError) as info:
        to_trl(data(path, **kw), tokenizer)
    return info.value.problems


@pytest.mark.parametrize("row, fmt, columns", [
    (CHAT, "chat", {"messages"}),
    (PC, "prompt_completion", {"prompt", "completion"}),
    (ALPACA, "alpaca", {"prompt", "completion"}),
    (TEXT, "text", {"text"}),
    ({"conversations": [{"from": "human", "value": "Hi"}, {"from": "gpt", "value": "Hello"}]}, "chat", {"messages"}),
])
def test_auto_recognises_each_format(write_jsonl, chat_tok, row, fmt, columns):
    rows, found = to_trl_rows(data(write_jsonl([row, row])), chat_tok)
    assert found == fmt and set(rows[0]) == columns and len(rows) == 2


def test_sharegpt_turns_become_messages(write_jsonl, chat_tok):
    row = {"conversations": [{"from": "human", "value": "Hi"}, {"from": "gpt", "value": "Hello"}]}
    rows, _ = to_trl_rows(data(write_jsonl([row])), chat_tok)
    assert rows[0]["messages"] == [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}]


def test_alpaca_uses_the_chat_template_when_the_model_has_one(write_jsonl, chat_tok, plain_tok):
    path = write_jsonl([ALPACA])
    chat, _ = to_trl_rows(data(path), chat_tok)
    assert chat[0]["prompt"] == [{"role": "user", "content": "Say where the fox lives.\n\nfox"}]
    assert chat[0]["completion"] == [{"role": "assistant", "content": "The fox lives in the forest."}]
    plain, _ = to_trl_rows(data(path), plain_tok)
    assert plain[0]["prompt"].startswith("### Instruction:\nSay where") and "### Input:\nfox" in plain[0]["prompt"]
    assert plain[0]["prompt"].endswith("### Response:\n") and plain[0]["completion"] == ALPACA["output"]


def test_json_csv_and_parquet_files_load(tmp_path, chat_tok):
    import datasets

    (tmp_path / "d.json").write_text(json.dumps([PC, PC, PC]), encoding="utf-8")
    (tmp_path / "d.csv").write_text("prompt,completion\nHi,there\nA,b\n", encoding="utf-8")
    datasets.Dataset.from_list([TEXT] * 4).to_parquet(str(tmp_path / "d.parquet"))
    assert [len(to_trl_rows(data(tmp_path / n), chat_tok)[0]) for n in ("d.json", "d.csv", "d.parquet")] == [3, 2, 4]


def test_other_columns_are_dropped_whatever_their_types(write_jsonl, chat_tok):
    rows, fmt = to_trl_rows(data(write_jsonl([dict(TEXT, id=1), "", dict(TEXT, id="x", tags=["a"])])), chat_tok)
    assert fmt == "text" and rows == [TEXT, TEXT]


def test_format_can_be_given(write_jsonl, chat_tok):
    row = dict(TEXT, prompt="p", completion="c")
    assert to_trl_rows(data(write_jsonl([row]), format="text"), chat_tok)[1] == "text"
    assert to_trl_rows(data(write_jsonl([row])), chat_tok)[1] == "prompt_completion"


@pytest.mark.parametrize("rows, expected", [
    (['{"text": "ok"}', '{"text": "broken"'], 'line 2 is not valid JSON'),
    (['{"text": "ok"}', "", '[1, 2]'], "line 3 must be a JSON object, got list"),
    ([{"text": "ok"}, "", {"text": 7}], 'line 3: "text" must be a string, got int'),
    ([PC, {"prompt": "p", "completion": None}], 'line 2: "completion" must be a string, got null'),
    ([CHAT, {"messages": [{"role": "user", "content": "hi"}]}], 'line 2: "messages" has no assistant message'),
    ([{"messages": [{"role": "robot", "content": "x"}]}], 'line 1: "messages" has an unknown role "robot"'),
    ([{"messages": "hello"}], 'line 1: "messages" must be a non-empty list of messages'),
    ([{"question": "q", "answer": "a"}], "no known format in its columns (question, answer)"),
])
def test_bad_rows_are_named(write_jsonl, chat_tok, rows, expected):
    found = problems(write_jsonl(rows), chat_tok)
    assert len(found) == 1 and expected in found[0] and "data.jsonl" in found[0], found


def test_many_bad_rows_are_summarised(write_jsonl, chat_tok):
    found = problems(write_jsonl([{"text": i} for i in range(9)]), chat_tok)
    assert len(found) == 6 and found[-1].endswith("... and 4 more problem(s) like these")


def test_missing_empty_and_unsupported_files(tmp_path, chat_tok):
    assert problems(tmp_path / "nope.jsonl", chat_tok) == [f'data.path: "{tmp_path / "nope.jsonl"}": no such file']
    (tmp_path / "empty.jsonl").write_text("")
    assert problems(tmp_path / "empty.jsonl", chat_tok)[0].endswith("the file is empty")
    (tmp_path / "blank.jsonl").write_text("\n\n")
    assert problems(tmp_path / "blank.jsonl", chat_tok)[0].endswith("the file has no examples")
    (tmp_path / "d.txt").write_text("hello")
    assert "unsupported file type '.txt'" in problems(tmp_path / "d.txt", chat_tok)[0]


def test_a_hub_dataset_that_cannot_be_reached_is_one_line(chat_tok):
    found = problems("someone/no-such-dataset", chat_tok)
    assert len(found) == 1 and found[0].startswith('data.path: "someone/no-such-dataset": cannot be loaded')


def test_a_given_format_names_the_missing_columns(write_jsonl, chat_tok):
    found = problems(write_jsonl([TEXT]), chat_tok, format="alpaca")
    assert found == [f'data.format: "alpaca" needs the column(s) instruction, output; '
                     f'"{write_jsonl([TEXT])}" has text']


def test_chat_data_needs_a_chat_template(write_jsonl, plain_tok):
    found = problems(write_jsonl([CHAT]), plain_tok)
    assert len(found) == 1 and "has no chat template" in found[0]
    conversational_pc = {"prompt": CHAT["messages"][:1], "completion": CHAT["messages"][1:]}
    assert "has no chat template" in problems(write_jsonl([conversational_pc]), plain_tok)[0]


@pytest.mark.parametrize("size, n, expected", [(0, 10, 0), (0.2, 10, 2), (0.01, 10, 1), (3, 10, 3)])
def test_eval_count(size, n, expected):
    assert eval_count(DataSection(eval_size=size), n) == expected


@pytest.mark.parametrize("size, message", [(1.5, "must be whole"), (10, "leaves no example to train on")])
def test_eval_size_errors(size, message):
    with pytest.raises(DataError, match=message):
        eval_count(DataSection(eval_size=size), 10)


def test_load_examples_splits_off_an_eval_set(chat_tok):
    run = RunConfig(data=DataSection(eval_size=0.1))
    ex = load_examples(run, chat_tok)
    assert (len(ex.train), len(ex.eval), ex.format) == (360, 40, "chat")


def test_last_reply_as_completion(chat_tok):
    from datasets import Dataset

    turns = CHAT["messages"] + [{"role": "user", "content": "And the owl?"}]
    out = last_reply_as_completion(Dataset.from_list([{"messages": turns}]))[0]
    assert out["prompt"] == CHAT["messages"][:1] and out["completion"] == CHAT["messages"][1:2]


def test_count_too_long(write_jsonl, chat_tok):
    from datasets import Dataset

    rows = Dataset.from_list([{"text": "The fox lives in the forest. " * n} for n in (1, 2, 40)])
    assert count_too_long(rows, chat_tok, max_length=30) == (1, 3)


def test_preview_shows_the_text_the_model_reads(write_jsonl, plain_model_dir):
    shown = preview(RunConfig())
    assert len(shown) == 3 and all(s.startswith("<|im_start|>") and s.endswith("<|im_end|>\n") for s in shown)
    run = RunConfig(model=ModelSection(name_or_path=str(plain_model_dir)),
                    data=DataSection(path=str(write_jsonl([PC] * 5))))
    assert preview(run, n=2) == ["Where does the fox live? The fox lives in the forest.<|endoftext|>"] * 2
