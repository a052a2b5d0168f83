"""Options shared by the modules that wire the page's events."""

from __future__ import annotations

from typing import Any

# A small event that answers at once: one plain HTTP request outside the queue (no waiting behind a slow event),
# no progress overlay flashing over its outputs, and no public API endpoint (the page's own plumbing).
FAST: dict[str, Any] = dict(queue=False, show_progress="hidden", api_visibility="private")
