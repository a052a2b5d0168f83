"""LoRA Launchpad: configure a LoRA or QLoRA fine-tune, see exactly what it trains, launch it, watch it.

    python app.py                      # http://127.0.0.1:7860 (GRADIO_SERVER_NAME / GRADIO_SERVER_PORT)
    FINETUNE_RUNS_DIR=/data/runs python app.py

On a Hugging Face Space (SPACE_ID set) it listens on 0.0.0.0 and only signed-in allowed users may launch
(see finetune/ui/access.py).
"""

import os

from finetune.data.uploads import max_upload_bytes
from finetune.ui import build_app
from finetune.ui.access import on_a_space
from finetune.ui.layout import CSS


def main() -> None:
    demo, jobs = build_app(os.environ.get("FINETUNE_RUNS_DIR"))
    # 0.0.0.0 only on a real Space: SPACE_ID set by hand elsewhere must not open the app to the network.
    host = os.environ.get("GRADIO_SERVER_NAME") or ("0.0.0.0" if on_a_space() else "127.0.0.1")
    port = int(os.environ.get("GRADIO_SERVER_PORT") or 7860)
    try:
        # The adapter zips are served from the run folders.
        # max_file_size: Gradio refuses a larger upload before writing it (FINETUNE_MAX_UPLOAD_MB, default 200).
        demo.launch(server_name=host, server_port=port, css=CSS, allowed_paths=[str(jobs.runs_dir)],
                    footer_links=["api"], max_file_size=max_upload_bytes())
    finally:
        jobs.shutdown()


if __name__ == "__main__":
    main()
