"""A cap on request body size, enforced before anything reads the body.

Why: FastAPI reads a JSON body in full before it validates it, and it does so for
``POST /auth/login``, which needs no token. Without a cap, one request with a 1 GB body
made the server grow to 3 GB before it answered 422. The API's JSON documents are small
(a login, a job request: a few hundred bytes; uploads go straight to S3 through presigned
URLs and never through this process), so a request over the limit is refused with 413 and a
one-line ``{"detail": "request body over N bytes"}``, the shape of the app's other 4xx
answers.

Pure ASGI (not ``BaseHTTPMiddleware``), so it sits in front of routing, authentication and
JSON parsing and sees the raw ``receive``:

* a ``Content-Length`` over the limit is refused at once, without reading a byte of the
  body; a malformed one (not digits, or several that disagree) is a 400;
* a body without ``Content-Length`` (``Transfer-Encoding: chunked``) is counted as it
  streams through a wrapped ``receive``; the chunk that crosses the limit is not handed to
  the app, whatever the app then answers (FastAPI turns a failed read into a 400) is
  dropped, and the 413 goes out instead.
"""

from __future__ import annotations

from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

# 64 KiB: five times the largest legitimate body (a login whose 1024-character password is
# all \u-escaped astral characters is about 12 KiB; a job request stays under 2 KiB), and
# small enough that a flood of refused requests costs next to nothing.
MAX_BODY_BYTES = 64 * 1024


class BodyTooLarge(Exception):
    """Raised by the wrapped ``receive`` when the streamed body crosses the limit."""


def _content_length(scope: Scope) -> int | str | None:
    """The request's declared length: an int, ``None`` when absent, or the reason (a str)
    it cannot be used."""
    values = {v.strip() for k, v in scope.get("headers", ()) if k.lower() == b"content-length"}
    if not values:
        return None
    if len(values) > 1:
        return "conflicting Content-Length headers"
    (value,) = values
    # int() alone would accept "+5", "-5" and "5_0"; HTTP allows ASCII digits only (and
    # bytes.isdigit() is ASCII-only).
    if not value.isdigit():
        return "malformed Content-Length header"
    # A longer number is valid HTTP and simply far over any limit; not parsed (int() of a
    # few thousand digits is slow, and refused past 4300).
    return int(value) if len(value) <= 18 else 10**18


class BodyLimitMiddleware:
    """Refuse HTTP requests whose body is over ``max_bytes`` with 413 (400 for a malformed
    ``Content-Length``), before the app reads the body."""

    def __init__(self, app: ASGIApp, max_bytes: int = MAX_BODY_BYTES) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def _refuse(
        self, scope: Scope, receive: Receive, send: Send, status: int, detail: str
    ) -> None:
        # The JSONResponse the app's own error handlers use, so the answer has their shape.
        # "Connection: close": the rest of the body is not read, so the connection cannot
        # carry another request.
        response = JSONResponse(
            {"detail": detail}, status_code=status, headers={"Connection": "close"}
        )
        await response(scope, receive, send)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """The ASGI entry point: check the declared length, then count what streams in."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        too_large = f"request body over {self.max_bytes} bytes"
        declared = _content_length(scope)
        if isinstance(declared, str):
            await self._refuse(scope, receive, send, 400, declared)
            return
        if declared is not None and declared > self.max_bytes:
            await self._refuse(scope, receive, send, 413, too_large)
            return

        # Counted even with a Content-Length under the limit: the server normally enforces
        # the declared length, but this must not depend on which server runs the app.
        received = 0
        exceeded = False
        response_started = False

        async def limited_receive() -> Message:
            nonlocal received, exceeded
            if exceeded:
                raise BodyTooLarge(too_large)
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    exceeded = True
                    raise BodyTooLarge(too_large)
            return message

        async def guarded_send(message: Message) -> None:
            nonlocal response_started
            if exceeded and not response_started:
                return  # the app's answer to a read it could not finish; the 413 replaces it
            if message["type"] == "http.response.start":
                response_started = True
            await send(message)

        try:
            await self.app(scope, limited_receive, guarded_send)
        except Exception:
            # The app may let BodyTooLarge (or what it made of it) escape; that is ours to
            # answer. Anything else, or a response already under way, is the app's error.
            if not exceeded or response_started:
                raise
        if exceeded and not response_started:
            await self._refuse(scope, receive, send, 413, too_large)
