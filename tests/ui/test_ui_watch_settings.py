"""Issue 18's form widgets: training.early_stopping_patience, training.report_to and samples.prompts carried from
the form to the run file and back; an empty widget writes no key (a null report_to would be refused)."""

from finetune.runfile import RunConfig
from finetune.ui import form as F
from finetune.ui import panel


def test_early_stopping_trackers_and_prompts_go_into_the_run_file_and_back():
    start = panel.initial()
    values, info = start["values"], start["info"]
    assert values["training.report_to"] == [] and values["samples.prompts"] == ""
    raw = F.form_to_run(values, {}, info["all_linear"])
    assert "report_to" not in raw["training"] and "early_stopping_patience" not in raw["training"]
    assert "prompts" not in (raw.get("samples") or {})
    values = {**values, "training.early_stopping_patience": 3.0, "training.report_to": ["tensorboard"],
              "samples.prompts": "What is LoRA?\n\n  Say hello  \n", "data.eval_size": 8}
    raw = F.form_to_run(values, {}, info["all_linear"])
    assert raw["training"]["early_stopping_patience"] == 3 and raw["training"]["report_to"] == ["tensorboard"]
    assert raw["samples"]["prompts"] == ["What is LoRA?", "Say hello"]
    back = panel.form_values(raw, info)
    assert back["training.early_stopping_patience"] == 3 and back["training.report_to"] == ["tensorboard"]
    assert back["samples.prompts"] == "What is LoRA?\nSay hello"
    run = RunConfig.from_dict({**raw, "training": {k: v for k, v in raw["training"].items() if k != "report_to"}})
    assert run.training.early_stopping_patience == 3 and run.samples.prompts == ["What is LoRA?", "Say hello"]


def test_a_loaded_report_to_string_or_none_shows_as_ticks():
    assert F.run_value_to_widget("training.report_to", "TensorBoard") == ["tensorboard"]
    assert F.run_value_to_widget("training.report_to", "none") == []
    assert F.run_value_to_widget("training.report_to", None) == []
    # A file without them empties the widgets (a preset after a loaded file leaves none of its trackers ticked).
    assert F.run_to_form({}, [])["training.report_to"] == [] and F.run_to_form({}, [])["samples.prompts"] == ""
