"""Who may upload to Gradio's own upload route, and how much.

Every file a page event takes arrives first through `POST /gradio_api/upload`, before any handler or sign-in
check runs: Gradio stores it in its cache (for an hour here, gr.Blocks(delete_cache=...)) for anyone, each up
to max_file_size, as many as they send. On a Space, ten 20 MB files from a signed-out visitor took 1.6 s and
put 211 MB on disk.

A visitor who may not upload datasets (access.may_use: on a Space, anyone but signed-in allowed users) needs
the route for one thing only: "Load a run file", which counts parameters and is open to all. A run file is at
most runfile.limits.MAX_BYTES, so for them each request must declare its length and carry one file of at
most that (plus the form's own headers); one client (by address) gets PER_CLIENT of them an hour and all such
visitors together ALL_COUNT and ALL_BYTES an hour, the cap that holds whoever spreads over many addresses.
Their requests are read here before Gradio sees them, to count the files in them, CONCURRENT at a time,
each within READ_S.
Users who may upload datasets (everyone, locally) keep Gradio's own cap, FINETUNE_MAX_UPLOAD_MB a file.

Installed as an ASGI middleware through `launch(app_kwargs={"middleware": [...]})` (app.py): FastAPI places
it inside the session middleware that Gradio's sign-in adds, so it reads the same session the handlers do.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections import deque
from collections.abc import Callable, Mapping

from starlette.datastructures import Headers
from starlette.middleware import Middleware
from starlette.responses import PlainTextResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from finetune.runfile.limits import MAX_BYTES
from finetune.space import real_space
from finetune.ui import access

log = logging.getLogger("finetune.app")

VISITOR_BYTES = MAX_BYTES + 64 * 1024   # one run file and the multipart form around it
PER_CLIENT = 20                  # uploads an hour from one address that may not upload datasets
ALL_COUNT = 500                  # ... and from all of them together,
ALL_BYTES = 50 * 1024 * 1024     # ... at most this many bytes: what such visitors can hold on disk at a time
WINDOW_S = 3600.0                # Gradio's cache forgets uploads after an hour (delete_cache)
CONCURRENT = 4                   # visitors' requests read into memory at a time (at most VISITOR_BYTES each)
READ_S = 30.0                    # ... each within this time (a run file needs ~35 KB/s)


def middleware(env: Mapping[str, str] | None = None) -> Middleware:
    """What app.py hands to launch(app_kwargs={"middleware": [...]})."""
    return Middleware(UploadGate, env=env)


def is_upload_route(path: str) -> bool:
    """Gradio's upload route, however the path is spelled (doubled or trailing slashes)."""
    return re.sub(r"/+", "/", path).rstrip("/").endswith("/upload")


def signed_in_user(scope: Scope) -> str | None:
    """The Hub user of this request's sign-in session (what Gradio's /login/callback stored), None when
    nobody signed in, the sign-in expired, or the app has no sign-in (no session middleware)."""
    session = scope.get("session") or {}
    info = session.get("oauth_info") if isinstance(session, dict) else None
    if not isinstance(info, dict) or (info.get("expires_at") or float("inf")) < time.time():
        return None
    name = (info.get("userinfo") or {}).get("preferred_username")
    return name if isinstance(name, str) else None


def client_of(scope: Scope, headers: Headers, env: Mapping[str, str] | None = None) -> str:
    """Who sends this request. On a Space every request comes from its proxy, which names the visitor last
    in X-Forwarded-For (earlier entries are whatever the visitor wrote there)."""
    forwarded = headers.get("x-forwarded-for", "")
    if real_space(env) and forwarded.strip():
        return forwarded.rsplit(",", 1)[-1].strip()
    return (scope.get("client") or ("?",))[0]


class Budget:
    """Visitors' uploads in the last WINDOW_S seconds, oldest first: at most ALL_COUNT entries."""

    def __init__(self, clock: Callable[[], float] = time.monotonic):
        self.clock = clock
        self.recent: deque[tuple[float, str, int]] = deque()

    def take(self, client: str, size: int) -> str | None:
        """Count one upload of `size` bytes from `client`; the reason it is refused instead, if it is."""
        now = self.clock()
        while self.recent and now - self.recent[0][0] > WINDOW_S:
            self.recent.popleft()
        if sum(1 for _, who, _ in self.recent if who == client) >= PER_CLIENT:
            return f"at most {PER_CLIENT} uploads an hour without signing in"
        if len(self.recent) >= ALL_COUNT or sum(n for *_, n in self.recent) + size > ALL_BYTES:
            return "no more uploads from visitors who have not signed in this hour"
        self.recent.append((now, client, size))
        return None


class UploadGate:
    """The ASGI middleware: passes every request through, except visitors' uploads it refuses (module doc)."""

    def __init__(self, app: ASGIApp, env: Mapping[str, str] | None = None,
                 clock: Callable[[], float] = time.monotonic):
        self.app, self.env = app, env
        self.budget = Budget(clock)
        self.reading = asyncio.Semaphore(CONCURRENT)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST" or not is_upload_route(scope["path"]):
            await self.app(scope, receive, send)
            return
        allowed, why_not = access.may_use(signed_in_user(scope), "upload datasets", self.env)
        if allowed:
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        client = client_of(scope, headers, self.env)
        status, why, body = await self.check(headers, client, receive)
        if not status:
            return
        if why:
            log.warning("refused upload from %s: %s", client, why)
            limit = f"without that, uploads are run files of at most {MAX_BYTES / 1e6:g} MB, one at a time"
            response = PlainTextResponse(f"{why} ({why_not}; {limit})", status_code=status,
                                         headers={"Connection": "close"})
            await response(scope, receive, send)
            return
        await self.app(scope, replay(body, receive), send)

    async def check(self, headers: Headers, client: str, receive: Receive) -> tuple[int, str, bytes]:
        """(status, why refused or "", the request's body once read); status 0 when the client went away."""
        length = headers.get("content-length", "")
        if not length.isdigit():
            return 411, "an upload must declare its length", b""
        if int(length) > VISITOR_BYTES:
            return 413, f"{int(length) / 1e6:,.1f} MB is too large", b""
        boundary = re.search(r'boundary="?([^";]+)', headers.get("content-type", ""))
        if not boundary:
            return 400, "an upload is a multipart form", b""
        if self.reading.locked():
            return 429, "too many uploads at once", b""
        refused = self.budget.take(client, int(length))
        if refused:
            return 429, refused, b""
        async with self.reading:
            try:   # a slow sender would hold one of the few reading slots
                body = await asyncio.wait_for(read_body(receive, int(length)), READ_S)
            except TimeoutError:
                return 408, f"the upload took longer than {READ_S:g} s", b""
        if body is None:
            return 0, "", b""   # the visitor left before the upload arrived: nobody to answer
        # Each part of the form starts with --boundary, and the form ends with --boundary--.
        if body.count(b"--" + boundary.group(1).encode("latin-1")) > 2:
            return 413, "one file at a time", b""
        return 200, "", body


async def read_body(receive: Receive, limit: int) -> bytes | None:
    """The request's body, at most `limit` bytes (the declared length; the server sends no more); None when
    the client went away before sending it all."""
    chunks, size = [], 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return None
        chunks.append(message.get("body", b""))
        size += len(chunks[-1])
        if size >= limit or not message.get("more_body"):
            return b"".join(chunks)[:limit]


def replay(body: bytes, receive: Receive) -> Receive:
    """A receive that hands the app the body already read, then whatever the client sends next (its
    disconnect)."""
    sent = False

    async def again() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return again
