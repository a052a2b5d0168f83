"""LoRA Launchpad: configure a LoRA or QLoRA fine-tune, see exactly what it trains, launch it, watch it.

    python app.py                      # http://127.0.0.1:7860 (GRADIO_SERVER_NAME / GRADIO_SERVER_PORT)
    FINETUNE_RUNS_DIR=/data/runs python app.py

On a Hugging Face Space (SPACE_ID set) it listens on 0.0.0.0 and only signed-in allowed users may launch
(see finetune/ui/access.py).
"""

import os

from finetune.data.uploads import max_upload_bytes
from finetune.space import real_space
from finetune.ui import build_app, upload_gate
from finetune.ui.layout import CSS


def main() -> None:
    demo, jobs = build_app(os.environ.get("FINETUNE_RUNS_DIR"))
    # 0.0.0.0 only on a real Space: SPACE_ID set by hand elsewhere must not open the app to the network.
    host = os.environ.get("GRADIO_SERVER_NAME") or ("0.0.0.0" if real_space() else "127.0.0.1")
    port = int(os.environ.get("GRADIO_SERVER_PORT") or 7860)
    try:
        # blocked_paths: nothing in the runs folder is ever served (logs, errors, run files, uploaded data), even
        # where Gradio's cache folder holds it; downloads are short-lived copies handed out by the page
        # (finetune/ui/downloads.py). max_file_size: Gradio refuses a larger upload before writing it
        # (FINETUNE_MAX_UPLOAD_MB, default 200); the upload gate holds visitors who may not upload datasets to
        # run files (finetune/ui/upload_gate.py).
        demo.launch(server_name=host, server_port=port, css=CSS, blocked_paths=[str(jobs.runs_dir)],
                    footer_links=["api"], max_file_size=max_upload_bytes(),
                    app_kwargs={"middleware": [upload_gate.middleware()]})
    finally:
        jobs.shutdown()


if __name__ == "__main__":
    main()
