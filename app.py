"""LoRA Launchpad: configure a LoRA or QLoRA fine-tune, see exactly what it trains, launch it, watch it.

    python app.py                      # http://127.0.0.1:7860 (GRADIO_SERVER_NAME / GRADIO_SERVER_PORT)
    FINETUNE_RUNS_DIR=/data/runs python app.py

On a Hugging Face Space (SPACE_ID set) it listens on 0.0.0.0 and only signed-in allowed users may launch
(see finetune/ui/access.py).
"""

import os

from finetune.ui import build_app
from finetune.ui.layout import CSS


def main() -> None:
    demo, jobs = build_app(os.environ.get("FINETUNE_RUNS_DIR"))
    host = os.environ.get("GRADIO_SERVER_NAME") or ("0.0.0.0" if os.environ.get("SPACE_ID") else "127.0.0.1")
    port = int(os.environ.get("GRADIO_SERVER_PORT") or 7860)
    try:
        # The adapter zips are served from the run folders.
        demo.launch(server_name=host, server_port=port, css=CSS, allowed_paths=[str(jobs.runs_dir)],
                    footer_links=["api"])
    finally:
        jobs.shutdown()


if __name__ == "__main__":
    main()
