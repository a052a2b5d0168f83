"""`python tests/hf_follower.py RUN [--resume]`: what `python -m finetune train RUN` does for a run on Hugging
Face Jobs, against the fake Jobs service named by FAKE_HF_JOBS_URL and FAKE_HF_JOBS_ROOT (tests/fake_hf_jobs.py).
The job manager's tests start it as their job command."""

import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from fake_hf_jobs import FakeApi

from finetune.jobs import remote
from finetune.runfile import load_run

if __name__ == "__main__":
    api = FakeApi(os.environ["FAKE_HF_JOBS_URL"], os.environ["FAKE_HF_JOBS_ROOT"])
    sys.exit(remote.main(load_run(sys.argv[1]), resume="--resume" in sys.argv[2:], api=api, poll=0.2))
