"""The page's gr.Blocks: Gradio's own, except for the files an event's request names.

An event's inputs may name files only from Gradio's cache (what /gradio_api/upload stored; the browser always
uploads first). Gradio refuses a made-up local path with an InvalidPathError while preparing the inputs, and
then prints its ~25-line traceback (queueing.py, routes.py: `traceback.print_exc()` for every exception that
is not a quiet gr.Error): anyone could flood the log with them, one request each. A URL in place of a path
is worse: Gradio downloads it into its cache, any size, for anyone, past the upload gate
(ui/upload_gate.py). This page takes no file by URL, so both are refused here as a guard.user_error: the
visitor reads that it was refused, the log gets one line."""

from __future__ import annotations

import gradio as gr
from gradio.exceptions import InvalidPathError
from gradio_client.utils import is_file_obj_with_meta, is_http_url_like, traverse

from finetune.ui.guard import user_error

REFUSED = "a file named in this request was not uploaded to this app"


def names_a_url(value) -> bool:
    """Whether an event's input value holds a file given by URL (Gradio's own test of a file object)."""
    found: list[dict] = []
    traverse(value, found.append, lambda d: is_file_obj_with_meta(d) and is_http_url_like(d["path"]))
    return bool(found)


class Page(gr.Blocks):
    async def preprocess_data(self, block_fn, inputs, state, explicit_call=False):
        if not explicit_call and any(names_a_url(value) for value in inputs or []):
            raise user_error(REFUSED)
        try:
            return await super().preprocess_data(block_fn, inputs, state, explicit_call)
        except InvalidPathError:   # Gradio's reason names the server's folders: not the visitor's business
            raise user_error(REFUSED) from None
