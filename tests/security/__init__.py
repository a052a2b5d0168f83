"""The threat model of a LoRA Launchpad that anyone can reach (a public Space), one test module per threat.
Each test reproduces a defect found by a red-team pass (issue #7) and failed before its fix.

| threat                                            | where it is stopped                         | tests               |
|---------------------------------------------------|---------------------------------------------|---------------------|
| YAML alias bomb, huge / deep / duplicate-key input | runfile/limits.py (the parser, every caller) | test_parser_limits  |
| an error message that quotes a huge value          | runfile/validators.py show(), errors.py      | test_parser_limits  |
| the app stalls while such input is refused         | (the above, measured against the served app) | test_app_under_load |
| a run file pushing to the Hub with the host token  | runfile/allowlist.py (training keys)         | test_training_keys  |
| visitors reading server files, filling the disk    | ui/access.py, data/uploads.py, data/files.py | test_space_data     |
| a second Cancel throwing the graceful save away    | train/stopping.py, jobs/manager.py           | test_cancel         |
| a bad output folder, a half-written checkpoint     | train/checkpoints.py, train/job.py           | test_output_folder  |
| long run ids, tracebacks in the log, foreign PIDs, | jobs/manager.py, jobs/process.py,           | test_small          |
| SPACE_ID outside a Space                           | ui/access.py                                 |                     |
| a broken run folder stalling the queue and the list | train/statusfile.py, jobs/manager.py         | test_broken_runs    |
| a refused job reported as killed                   | train/outcome.py, jobs/process.py            | test_job_refusal    |
| a full disk mid-checkpoint: tracebacks, `running`  | train/diskfull.py, train/runfolder.py        | test_disk_full      |
| the runs folder served to anyone (logs, uploads)    | app.py blocked_paths, ui/downloads.py        | test_file_route, test_downloads |
| anyone filling the disk through Gradio's uploads   | ui/upload_gate.py                            | test_upload_route   |
| made-up file paths or URLs in events flooding the log | ui/page.py                                | test_log_flood      |
| a regex that backtracks forever freezing the app   | model/patterns.py (bounded helper processes) | test_patterns       |
| 1e100 as a step count, 1.5 as a batch size         | runfile/validators.py Int (every bound said) | test_numbers        |
| an Axolotl key that crashes the importer           | runfile/importers.py                         | test_import_keys    |
| a 1 MB prompt, a caller who left, a blocked queue  | adapter/generate.py, adapter/service.py      | test_generate_limits |
| the CLI pushing with the Space's HF_TOKEN          | adapter/hub.py, adapter/cli.py               | test_cli_token      |
"""
