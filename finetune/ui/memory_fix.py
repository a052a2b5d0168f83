"""The memory panel's "Apply the fix" button (#apply-fix, drawn by memory_view.py): applies the fix the count
panel proposes through the form's own state, then recounts. Its own module: it needs the panel (panel.py), and
the panel draws the memory view, so in memory_view.py it made a cycle.
"""

from __future__ import annotations

import gradio as gr

from finetune.ui.form import FORM_KEYS
from finetune.ui.panel import count_view, understand
from finetune.ui.wiring import FAST


def wire(ui, locked, count_out: list, then_text) -> None:
    """The fix button: recompute the fix from the form's state (what the page shows may be a moment old), write
    its changes into the state and the widgets, and recount: the widgets' own change events then find their
    values already in the state and do nothing (events.field_handler). (gradio is imported at the top of this
    module: Gradio finds `request: gr.Request` by resolving the annotation in the module's globals; without it
    the handler got None for its request, and so the lock every session shares.)"""
    widgets = [ui.form[k] for k in FORM_KEYS]

    def apply(values, extra, info, request: gr.Request):
        with locked(request):
            fix = understand(values, extra, info).get("fix") or {}
            before = dict(values)
            values.update(fix)
            changed = {ui.form[k]: values[k] for k in FORM_KEYS if k in fix and values[k] != before.get(k)}
            return {**changed, ui.values: values, **count_view(ui, values, extra, info)}

    then_text(ui.apply_fix.click(apply, [ui.values, ui.extra, ui.model_info], [*widgets, ui.values, *count_out],
                                 **FAST))
