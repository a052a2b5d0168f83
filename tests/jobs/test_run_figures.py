"""A run's figures (last loss, best eval loss, tokens/s) have one definition, finetune/jobs/history.figures,
shown by the runs table (history.summary), JobManager.list_runs and status (jobs/report.py), a sweep's
ranking (jobs/ranking.py) and the model card (adapter/card.py). They used to differ: list_runs's and the
card's loss was the last record in the file, the table's the curve's last step; status's tokens/s was the
last logged value, the table's the upper of the two middle values, the ranking's the median."""

import math

from finetune.adapter.card import losses
from finetune.jobs import history, report
from finetune.jobs.ranking import summarise
from finetune.train.runfolder import RunFolder

# A resumed run whose earlier attempt got further than the checkpoint it went on from (a crash mid-write):
# the curve's last point is step 6, though the file's last loss record is step 4's; a NaN loss logged
# at step 5 is not a point. Four rates: their median is 250.
RECORDS = [{"step": 2, "loss": 3.0, "tokens_per_second": 100.0}, {"step": 6, "loss": 1.25, "tokens_per_second": 300.0},
           {"step": 4, "eval_loss": 2.5}, {"step": 3, "loss": 2.0, "tokens_per_second": 200.0},
           {"step": 5, "loss": math.nan, "tokens_per_second": 400.0}, {"step": 4, "loss": 1.75},
           {"step": 4, "eval_loss": 2.25, "tokens_per_second": True}]


def make_run(tmp_path) -> RunFolder:
    folder = RunFolder(tmp_path / "20260101-000000-run")
    folder.path.mkdir()
    folder.run_yaml.write_text("model: {name_or_path: demo}\nlora: {r: 4}\n")
    folder.write_status(state="completed", step=6, max_steps=6, started_at=1.0, finished_at=2.0)
    for record in RECORDS:
        folder.append_metrics(record)
    return folder


def test_the_owner_s_figures():
    assert history.figures(RECORDS) == {"last_loss": 1.25, "best_loss": 1.25, "best_eval_loss": 2.25,
                                        "tokens_per_second": 250.0}
    assert history.figures([]) == dict.fromkeys(("last_loss", "best_loss", "best_eval_loss", "tokens_per_second"))


def test_every_list_of_runs_shows_the_same_figures(tmp_path):
    folder = make_run(tmp_path)
    table, listed, status = history.summary(folder), report.summary(folder.path, []), report.status(folder)
    ranked = summarise(folder)
    assert table["last_loss"] == listed["loss"] == ranked["final_loss"] == 1.25
    assert table["best_eval_loss"] == ranked["best_eval_loss"] == 2.25
    assert table["tokens_per_second"] == status["tokens_per_second"] == ranked["tokens_per_second"] == 250.0
    card = losses(folder.read_metrics())   # the model card pushed to the Hub
    assert card["final"] == (6, 1.25) and card["eval_final"] == (4, 2.25)
