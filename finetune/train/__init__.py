"""The training job, `python -m finetune train RUN` (or `python -m finetune.train RUN`): setup, train and
cleanup in job.py; its Trainer callback, graceful stop, and the run folder it writes (the contract with
the job manager and the UI)."""
