"""The Gradio app (the only package besides app.py that imports gradio): `build_app()` returns the Blocks and
the JobManager behind it. Layout in layout.py, configure events in events.py, launch-and-watch in live.py,
HTTP endpoints in api.py, the Spaces sign-in rule in access.py. Every refusal a handler raises goes
through guard.py (user_error, refusals): one log line each, not a traceback. Gradio's own routes: downloads
are handed out as copies in its cache (downloads.py; the runs folder is never served), visitors' uploads pass
upload_gate.py, files named in events page.py."""

from __future__ import annotations


def build_app(runs_dir=None):
    """(demo, jobs): the page and its JobManager (runs under `runs_dir`, default env FINETUNE_RUNS_DIR or
    runs/). Call `jobs.shutdown()` when the server stops."""
    from finetune.data.uploads import prune as prune_uploads
    from finetune.jobs import JobManager

    jobs = JobManager(runs_dir)
    prune_uploads(jobs.runs_dir)   # uploads older than a day that no run names (finetune/data/uploads.py)
    demo, _ = build_page(jobs)
    jobs.warm_up()   # jobs forked with the training libraries imported (jobs/warm.py), once the page is built
    return demo, jobs


def build_page(jobs):
    """(demo, ui): the page over a job manager, and the namespace of its components (layout.build_layout),
    which tests use to call and check the page's handlers without a browser."""
    from finetune.adapter.keeper import Keeper
    from finetune.adapter.service import Playground
    from finetune.ui import devices, sweep_view
    from finetune.ui.api import register_api
    from finetune.ui.events import wire_configure
    from finetune.ui.force import wire_force
    from finetune.ui.keep import register_push_api
    from finetune.ui.layout import build_layout
    from finetune.ui.live import on_page_load, wire_live
    from finetune.ui.page import Page
    from finetune.ui.panel import initial
    from finetune.ui.playground import register_generate_api, wire_playground
    from finetune.ui.runs import wire_runs
    from finetune.ui.sweep import register_sweep_api

    # Gradio keeps every upload in its cache (a visitor's only as the upload gate lets it, ui/upload_gate.py),
    # and the downloads handed out (ui/downloads.py): both deleted after an hour. Page: forged file paths in
    # events are refused in one log line (ui/page.py).
    with Page(title="LoRA Launchpad", delete_cache=(3600, 3600)) as demo:
        ui = build_layout(initial())   # reads the demo model once: the first count is fast
        wire_configure(ui, jobs)
        wire_live(ui, jobs)
        wire_runs(ui, jobs)   # the runs table and compare (ui/runs.py)
        sweep_view.wire(ui, jobs)   # Launch sweep, its ranked table and Load best (ui/sweep_view.py)
        wire_force(ui, jobs)   # the Force stop button, once a graceful cancel is overdue
        devices.wire(ui)
        # The playground's generation worker and push-when-done on a Space (finetune/adapter/, ui/playground.py)
        ui.keeper = Keeper(jobs)
        playground = Playground(jobs)
        wire_playground(ui, jobs, playground)
        register_api(jobs, ui.keeper)
        register_sweep_api(jobs)   # /sweep, /sweep_status
        register_generate_api(jobs, playground)
        register_push_api(jobs)
        demo.load(on_page_load(jobs), None, [ui.run_select, ui.run_list], queue=False, api_visibility="private")
    return demo, ui
