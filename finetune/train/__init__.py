"""The training job, `python -m finetune train RUN` (`python -m finetune.train RUN` is the bare job, without
the Hub push the CLI hands it: ranks and clusters start the CLI's): setup, train and
cleanup in job.py; its Trainer callback, graceful stop, and the run folder it writes (the contract with
the job manager and the UI)."""
