"""The app's sweep endpoints: a grid of runs queued as one, and their ranking.

    /sweep         run file text, `section.key=v1,v2` lines (text, or a list of lines) -> run ids, queued in
                   order through the job manager (they train in turn, one per free slot)
    /sweep_status  run ids (a list, or text one per line or comma-separated) -> the runs ranked
                   (finetune/jobs/ranking.py): rank, values, state, final_loss, best_eval_loss,
                   tokens_per_second, ranked_by, step, max_steps, error, run_id, queue_position

/sweep needs what /launch needs (on a Space, a signed-in allowed user) and checks every combination before
it queues the first: the run file's checks, the server's policy, the count against the model. Each run's
status.json records `sweep: {"id", "name", "values"}`, so a page can find a sweep's runs again from the
folders. A page builds on queue_sweep and sweep_ranking directly.
"""

from __future__ import annotations

import time

import gradio as gr

from finetune.errors import RunFileError
from finetune.jobs.ranking import rank_folders
from finetune.jobs.sweep import model_problems
from finetune.runfile import parse_text
from finetune.runfile.sweep import MAX_COMBINATIONS, name_problems, plan_sweep
from finetune.train.runfolder import RunFolder
from finetune.ui import access
from finetune.ui.api import checked_run
from finetune.ui.guard import refusals, require, user_error, username


def queue_sweep(jobs, run_text: str, vary, profile=None) -> list[str]:
    """Check every combination, then queue them all; their run ids in the sweep's order. Nothing is queued
    when any combination is refused; a run the manager still refuses while queuing (a slot rule checked
    only there) cancels the runs queued before it."""
    require(profile)
    if vary is not None and not isinstance(vary, (str, list)):
        raise user_error(f"vary: must be text or a list of section.key=v1,v2 lines, got {type(vary).__name__}")
    checked_run(run_text)   # the base: a valid run file within this server's policy
    with refusals():
        combos = plan_sweep(parse_text(run_text or ""), vary or [], "sweep")   # output_dir: the manager's
        policy = {c.name: p for c in combos if (p := access.policy_problems(c.run))}
        if problems := (name_problems(combos, policy) if policy else []) + model_problems(combos):
            raise RunFileError(problems)
        sweep_id, run_ids = time.strftime("%Y%m%d-%H%M%S"), []
        try:
            for combo in combos:
                run_ids.append(jobs.submit(combo.run, origin="api"))   # open pages follow it (ui/live.py)
                RunFolder(jobs.runs_dir / run_ids[-1]).write_status(
                    sweep={"id": sweep_id, "name": combo.name, "values": combo.values})
        except RunFileError as exc:
            for run_id in run_ids:
                jobs.cancel(run_id)
            raise RunFileError([f"{combo.name}: {p}" for p in exc.problems] +
                               [f"sweep: the {len(run_ids)} run(s) queued before it were cancelled"] * bool(run_ids)) \
                from None
    return run_ids


def run_id_list(run_ids) -> list[str]:
    if isinstance(run_ids, str):
        run_ids = run_ids.replace(",", "\n").splitlines()
    if not isinstance(run_ids, list) or not all(isinstance(r, str) for r in run_ids):
        raise user_error("run ids: must be a list of run ids, or text with one per line")
    run_ids = [r.strip() for r in run_ids if r.strip()]
    if len(run_ids) > MAX_COMBINATIONS:
        raise user_error(f"run ids: {len(run_ids)} given; at most {MAX_COMBINATIONS} are ranked at once")
    return run_ids


def sweep_ranking(jobs, run_ids, profile=None) -> list[dict]:
    """The runs ranked (best first) from their folders; `values`: what each sweep run varied (recorded at
    /sweep), else the settings in which the runs' run.yaml differ. A visitor who may not see run details
    gets no error text, as with /status."""
    ids = run_id_list(run_ids)
    with refusals():
        statuses = [jobs.status(run_id) for run_id in ids]   # UnknownRun for an id that is not a run
    folders = [RunFolder(jobs.runs_dir / run_id) for run_id in ids]
    recorded = [(s.get("sweep") or {}).get("values") for s in statuses]
    ranking = rank_folders(folders, recorded if all(isinstance(v, dict) for v in recorded) else None)
    by_path = {str(f.path): (run_id, s) for f, run_id, s in zip(folders, ids, statuses, strict=True)}
    out = []
    for entry in ranking:
        run_id, status = by_path[entry.pop("output_dir")]   # a server path: the run id names the run
        entry.update(run_id=run_id, queue_position=status.get("queue_position"))
        out.append(access.visitor_status(entry, username(profile)))
    return out


def register_sweep_api(jobs) -> None:
    """Declare /sweep and /sweep_status; call inside the app's gr.Blocks (build_page does, after
    api.register_api, whose checked_run this module uses: api.py never imports it back)."""

    def sweep(run_text: str, vary: str, profile: gr.OAuthProfile | None = None) -> list[str]:
        """Queue one run per combination of the varied settings; returns their run ids. vary: lines of
        section.key=v1,v2 (values are YAML: 1e-4, true, [q_proj,v_proj]), at most 32 combinations."""
        return queue_sweep(jobs, run_text, vary, profile)

    def sweep_status(run_ids: str, profile: gr.OAuthProfile | None = None) -> list[dict]:
        """The runs ranked, best first: by best eval loss when any run evaluated, else by final train loss;
        each with its values, state, final_loss, best_eval_loss, tokens_per_second and rank."""
        return sweep_ranking(jobs, run_ids, profile)

    gr.api(sweep, api_name="sweep", queue=False)
    gr.api(sweep_status, api_name="sweep_status", queue=False)
