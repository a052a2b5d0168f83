"""Sweeps: combinations and their names, refusals (one line each, nothing written), the ranking read from run
folders, the API handler queuing through a real JobManager, and (slow) a real two-run sweep on the demo."""

import json
import os
import subprocess
import sys
from pathlib import Path

import gradio as gr
import pytest

from finetune.cli import main
from finetune.errors import RunFileError
from finetune.jobs import JobManager
from finetune.jobs.ranking import rank_folders
from finetune.runfile.sweep import MAX_COMBINATIONS, plan_sweep, split_values
from finetune.train.runfolder import RunFolder
from finetune.ui.sweep import queue_sweep, sweep_ranking

BASE = {"model": {"name_or_path": "demo"}, "training": {"output_dir": "runs/ignored", "max_steps": 4}}
TINY = ("model: {name_or_path: demo}\nlora: {r: 4, lora_alpha: 8}\n"
        "data: {path: demo, max_length: 64, eval_size: 0.2}\n"
        "training: {max_steps: 6, per_device_train_batch_size: 2, gradient_accumulation_steps: 1, logging_steps: 1,"
        " eval_steps: 3, save_steps: 1000}\n")


def test_combinations_names_values_and_folders():
    combos = plan_sweep(BASE, ["lora.r=4,8,16", "training.learning_rate=1e-4,3e-4"], "sweeps/a")
    assert [c.name for c in combos] == ["r4-lr1e-4", "r4-lr3e-4", "r8-lr1e-4", "r8-lr3e-4", "r16-lr1e-4",
                                        "r16-lr3e-4"]
    assert combos[1].values == {"lora.r": 4, "training.learning_rate": 3e-4}
    assert isinstance(combos[1].values["training.learning_rate"], float)   # 3e-4 (no dot) is a float
    assert [c.run.training.output_dir for c in combos[:2]] == ["sweeps/a/r4-lr1e-4", "sweeps/a/r4-lr3e-4"]
    assert combos[4].run.lora.r == 16 and combos[4].run.training.max_steps == 4   # the base's own settings stay
    text = combos[0].to_yaml("base.yaml")
    assert text.startswith("# Sweep of base.yaml: lora.r=4, training.learning_rate=1e-4\n")


def test_lists_flags_and_extra_training_keys():
    assert split_values("[q_proj,v_proj], all-linear,'a,b'") == ["[q_proj,v_proj]", "all-linear", "'a,b'"]
    combos = plan_sweep(BASE, ["lora.target_modules=[q_proj,v_proj],all-linear", "data.packing=true,false",
                               "training.adam_beta2=0.95"], "s")
    assert [c.name for c in combos][:2] == ["targets_q_proj_v_proj-packing_true-adam_beta20.95",
                                           "targets_q_proj_v_proj-packing_false-adam_beta20.95"]
    assert combos[0].run.lora.target_modules == ["q_proj", "v_proj"] and combos[0].run.data.packing is True
    assert combos[0].run.training_extra == {"adam_beta2": 0.95}


@pytest.mark.parametrize("varies, expected", [
    (["lora.rr=4,8"], r'^vary lora\.rr: unknown key \(did you mean "r"\?\)$'),
    (["loar.r=4"], r'^vary loar\.r: unknown section \(did you mean "lora"\?\)'),
    (["lora.r=0,8", "training.learning_rate=1e-4,3e-4"], r"^vary lora\.r=0: lora\.r: must be a whole number >= 1"),
    (["lora.r=1,2,3,4,5,6,7,8", "lora.lora_alpha=1,2,3,4,5"],
     rf"^vary: 40 combinations \(8 x 5\); a sweep runs at most {MAX_COMBINATIONS}"),
    (["training.output_dir=a,b"], r"^vary training\.output_dir: set by the sweep"),
    (["lora.r=4,,8"], r"^vary lora\.r: an empty value"),
    (["lora.r=4,4"], r"^vary lora\.r: a value is given twice"),
])
def test_bad_input_is_one_line_and_exit_2_with_nothing_written(tmp_path, capsys, varies, expected):
    run = tmp_path / "base.yaml"
    run.write_text("model: {name_or_path: demo}\n")
    args = ["sweep", str(run), "--out", str(tmp_path / "out"), "--launch"]
    assert main(args + [a for v in varies for a in ("--vary", v)]) == 2
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), lines
    assert __import__("re").search(expected, lines[0].removeprefix("error: ")), lines[0]
    assert not (tmp_path / "out").exists()


def test_a_combination_only_bad_together_is_named():
    base = {"lora": {"target_modules": ["q_proj"]}}
    with pytest.raises(RunFileError) as err:
        plan_sweep(base, ["lora.layers_to_transform=0,null", "lora.target_modules=[q_proj],all-linear"], "s")
    assert err.value.problems == ["layers_to_transform0-targets_all-linear: lora.layers_to_transform: cannot be "
                                  "combined with target_modules all-linear (PEFT refuses the pair); list the "
                                  "module names instead"]


def test_without_launch_the_files_are_written_and_listed(tmp_path, capsys):
    run = tmp_path / "base.yaml"
    run.write_text("model: {name_or_path: demo}\ntraining: {output_dir: elsewhere}\n")
    out = tmp_path / "sw"
    assert main(["sweep", str(run), "--vary", "lora.r=4,8", "--out", str(out), "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert [e["name"] for e in listed] == ["r4", "r8"] and listed[1]["values"] == {"lora.r": 8}
    assert listed[0]["run_file"] == str(out / "r4.yaml") and listed[0]["output_dir"] == str(out / "r4")
    assert main(["count", listed[1]["run_file"]]) == 0   # each file is a run file like any other


def test_ranking_reads_run_folders(tmp_path):
    def folder(name, state, losses, evals=()):
        f = RunFolder(tmp_path / name)
        if state:
            f.write_status(state=state, step=len(losses), max_steps=3)
        for i, loss in enumerate(losses, 1):
            f.append_metrics({"step": i, "loss": loss, "tokens_per_second": 100.0 * i})
        for i, loss in enumerate(evals, 1):
            f.append_metrics({"step": i, "eval_loss": loss})
        return f

    folders = [folder("a", "failed", [2.0]), folder("b", "completed", [3.0, 1.5], [2.5, 2.2]),
               folder("c", "completed", [3.0, 1.0], [2.0, 2.4]), folder("d", None, []),
               folder("e", "cancelled", [0.5], [0.1])]
    ranking = rank_folders(folders, [{"x": n} for n in "abcde"])
    assert [e["values"]["x"] for e in ranking] == ["c", "b", "e", "d", "a"]
    best = ranking[0]
    assert (best["best_eval_loss"], best["final_loss"], best["ranked_by"], best["rank"]) == (2.0, 1.0, "eval_loss", 1)
    assert best["tokens_per_second"] == 150.0 and ranking[3]["state"] == "not run"
    # No eval split anywhere: by final train loss; values found again from run.yaml when not given.
    for name, r in (("p", 4), ("q", 8)):
        folder(name, "completed", [1.0 if r == 8 else 2.0]).run_yaml.write_text(f"lora: {{r: {r}}}\n")
    ranked = rank_folders([RunFolder(tmp_path / "p"), RunFolder(tmp_path / "q")])
    assert [(e["values"], e["ranked_by"]) for e in ranked] == [({"lora.r": 8}, "loss"), ({"lora.r": 4}, "loss")]


@pytest.fixture
def jobs(tmp_path, monkeypatch):
    """A real JobManager whose jobs exit at once (the queue, folders and statuses are what is tested here)."""
    monkeypatch.delenv("SPACE_ID", raising=False)
    manager = JobManager(tmp_path / "runs", slots=1, poll_interval=0.2, command=[sys.executable, "-c", "pass"])
    yield manager
    manager.shutdown()


def test_api_queues_every_combination_in_order(jobs):
    run_ids = queue_sweep(jobs, TINY, "lora.r=4,8\ntraining.learning_rate=1e-4", None)
    assert len(run_ids) == 2 and len(jobs.list_runs()) == 2
    for run_id, r in zip(run_ids, (4, 8), strict=True):
        status = RunFolder(jobs.runs_dir / run_id).read_status()
        assert status["origin"] == "api" and status["sweep"]["values"] == {"lora.r": r, "training.learning_rate": 1e-4}
        assert f"r: {r}" in (jobs.runs_dir / run_id / "run.yaml").read_text()
    ranking = sweep_ranking(jobs, run_ids, None)
    assert sorted(e["run_id"] for e in ranking) == sorted(run_ids)
    assert {json.dumps(e["values"]) for e in ranking} == {'{"lora.r": 4, "training.learning_rate": 0.0001}',
                                                         '{"lora.r": 8, "training.learning_rate": 0.0001}'}
    assert all("output_dir" not in e for e in ranking)   # a server path; the run id names the run


def test_api_refuses_the_whole_sweep_for_one_bad_combination(jobs):
    with pytest.raises(gr.Error, match=r'vary lora.target_modules=\[q_projj\]: lora.target_modules: "q_projj" '
                                       r"matches no module"):
        queue_sweep(jobs, TINY, ["lora.target_modules=[q_proj],[q_projj]"], None)
    with pytest.raises(gr.Error, match="at most 32"):
        queue_sweep(jobs, TINY, ["lora.r=" + ",".join(map(str, range(1, 34)))], None)
    with pytest.raises(gr.Error, match="no run"):
        sweep_ranking(jobs, "nope", None)
    assert jobs.list_runs() == []


@pytest.mark.slow
def test_a_real_sweep_trains_in_turn_and_ranks(tmp_path):
    run = tmp_path / "tiny.yaml"
    run.write_text(TINY)
    out = subprocess.run([sys.executable, "-m", "finetune", "sweep", str(run), "--vary", "lora.r=4,8",
                          "--vary", "training.learning_rate=3e-4", "--out", str(tmp_path / "sw"), "--launch",
                          "--json"], capture_output=True, text=True, timeout=600, cwd=tmp_path,
                         env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])})
    assert out.returncode == 0, out.stderr
    ranking = json.loads(out.stdout)
    assert [e["rank"] for e in ranking] == [1, 2] and {e["name"] for e in ranking} == {"r4-lr3e-4", "r8-lr3e-4"}
    for entry in ranking:
        assert {"values", "output_dir", "final_loss", "best_eval_loss", "tokens_per_second", "state"} <= set(entry)
        assert entry["state"] == "completed" and entry["ranked_by"] == "eval_loss"
        assert entry["final_loss"] > 0 and entry["tokens_per_second"] > 0
        assert (tmp_path / entry["output_dir"] / "adapter" / "adapter_model.safetensors").is_file()
        assert "completed" in (tmp_path / entry["output_dir"] / "train.log").read_text()
    assert ranking[0]["best_eval_loss"] <= ranking[1]["best_eval_loss"]
    assert ranking[0]["values"] in ({"lora.r": 4, "training.learning_rate": 3e-4},
                                    {"lora.r": 8, "training.learning_rate": 3e-4})
    assert out.stderr.count("completed after") == 2
