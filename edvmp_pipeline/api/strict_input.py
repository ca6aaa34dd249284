"""Strict input: JSON bodies are strict UTF-8 JSON, query strings name only known
parameters, both checked before FastAPI parses them.

Why: FastAPI decides by ``Content-Type`` whether to parse a body at all, and how it fails
depends on where. A JSON object sent as ``text/plain``, form-encoded or without a type was
handed to the model as raw bytes and refused with 422 "body: Input should be a valid
dictionary" (the body *was* an object); invalid UTF-8, a 5000-digit number (past ``int()``'s
digit limit) or 20 000 nested arrays were a bare 400 "There was an error parsing the body";
a syntax error was "21: JSON decode error". And ``json.loads`` silently keeps the last of
duplicate keys, so ``{"filename": "a.mp4", "filename": "b.txt"}`` meant whatever the
reader's parser picked (RFC 8259 §4: their meaning is unpredictable), and takes ``NaN``,
which is not JSON.

:class:`StrictInputRoute` runs :func:`check_json_body` before FastAPI's own handler for every
route with a body: a body not declared as JSON is a 415 naming the type it was sent as, one
that is not a strict UTF-8 JSON document a 422 ``body: …`` saying what is wrong (the shape
of the app's other 422s). A body that passes parses in FastAPI to the same value (it is the
same ``json.loads``, minus what is refused here), so the models see exactly what was checked.

Query strings likewise (:func:`check_query`): FastAPI ignores a parameter it does not know
and takes the last of repeated ones, so ``/incidents?openonly=true`` (a typo) silently
answered every incident, and ``?limit=300&limit=10`` was 10 while ``?limit=10&limit=300``
was refused. The request bodies already forbid unknown fields; an unknown or repeated query
parameter is now a 422 ``query: …`` naming it and the ones the route takes.

The headers that say how to read a body are checked too (:func:`check_body_headers`), before
the body is read when the request declares one (so a client that sent ``Expect:
100-continue`` hears the refusal instead of uploading first): two ``Content-Type`` headers, or
one naming ``charset`` twice, were read by whichever came first (415: which one counts would
depend on the reader); a ``Content-Encoding`` was ignored, so a gzip-compressed JSON body was
a misleading 422 "not UTF-8 text" and a body labelled ``br`` was parsed as if it were plain
(415 naming the coding, with ``Accept-Encoding: identity``). A client that disconnects while
its body is read gets no answer, and the request is counted as 499 (nginx's "client closed
request"), not as a 500 with a traceback in the server log.

And a path with an encoded ``/`` (``%2F``) is a 404: Starlette routes on the decoded path, so
``/jobs/<id>%2Fresult`` was served as ``/jobs/<id>/result``, while a proxy that routes or
filters on the path as sent sees one segment. Such a path names a job whose id holds a
``/``, and no job id does (Apache refuses them the same way by default).
"""

from __future__ import annotations

import email.message
import json
from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import HTTPException, Request, Response
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute
from starlette.requests import ClientDisconnect

# More digits than any size in bytes (S3's 5 TiB object limit has 13); a longer number is a
# mistake, and int() refuses past 4300 digits anyway.
MAX_INT_DIGITS = 20
_UTF8 = {"utf-8", "utf8"}
# What nginx logs for a request whose client went away before the answer; nobody receives it,
# it only keeps a disconnect out of the 5xx counts.
CLIENT_CLOSED_REQUEST = 499
_IDENTITY = "identity"


class BodyRefused(HTTPException):
    """A body, query or path refused before parsing (404, 415 or 422, with a one-line
    ``detail``)."""


def _media_type(request: Request) -> tuple[str, str | None] | None:
    """(type/subtype lower-cased, charset or None) of the request, None without the header."""
    header = request.headers.get("content-type")
    if header is None or not header.strip():
        return None
    # The type as sent (email's get_content_type() turns a malformed one into "text/plain",
    # which the 415 would then wrongly quote); email only for the parameter syntax.
    message = email.message.Message()
    message["content-type"] = header
    charset = message.get_param("charset")
    return header.split(";", 1)[0].strip().lower(), charset if isinstance(charset, str) else None


def _declares_body(request: Request) -> bool:
    """Whether the request's headers announce a body (a Content-Length over 0, or chunked)."""
    if "transfer-encoding" in request.headers:
        return True
    length = request.headers.get("content-length", "").strip()
    return bool(length) and length != "0"


def check_body_headers(request: Request) -> None:
    """Raise :class:`BodyRefused` (415) for headers that leave a body's reading ambiguous or
    unsupported: two ``Content-Type`` headers, a ``charset`` given twice, a
    ``Content-Encoding`` other than ``identity``."""
    types = request.headers.getlist("content-type")
    if len(types) > 1:
        raise BodyRefused(
            415,
            f"{len(types)} Content-Type headers (which one counts would depend on the reader); "
            "send one: Content-Type: application/json",
        )
    if types:
        message = email.message.Message()
        message["content-type"] = types[0]
        names = [name.strip().lower() for name, _ in message.get_params(header="content-type")[1:]]
        if names.count("charset") > 1:
            raise BodyRefused(
                415, "Content-Type names charset more than once; JSON is UTF-8 (charset=utf-8)"
            )
    codings = [
        coding.strip().lower()
        for value in request.headers.getlist("content-encoding")
        for coding in value.split(",")
        if coding.strip()
    ]
    refused = [c for c in codings if c != _IDENTITY]
    if refused:
        raise BodyRefused(
            415,
            f"Content-Encoding {', '.join(refused)[:80]!r} is not accepted; send the JSON body "
            "uncompressed (it is at most a few KiB)",
            headers={"Accept-Encoding": _IDENTITY},
        )


class _LongNumber:
    """Stands in for an integer with too many digits until its key is known."""

    def __init__(self, digits: str) -> None:
        self.digits = digits


def _parse_int(digits: str) -> int | _LongNumber:
    # int() of a few thousand digits is slow and refused past 4300 (FastAPI's bare 400);
    # the key is not known yet here, so the object hook names it.
    return _LongNumber(digits) if len(digits.lstrip("-")) > MAX_INT_DIGITS else int(digits)


def _too_long(where: str) -> BodyRefused:
    return BodyRefused(422, f"body: {where}: a number with over {MAX_INT_DIGITS} digits")


def _object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise BodyRefused(422, f"body: duplicate key {key[:80]!r} (send each field once)")
        if isinstance(value, _LongNumber):
            raise _too_long(key[:80])
        out[key] = value
    return out


def _refuse_constant(name: str) -> Any:
    raise BodyRefused(422, f"body: {name} is not JSON (RFC 8259 has no NaN or Infinity)")


def _has_long_number(value: Any) -> bool:
    """Whether a long number is left where no object hook saw it (in a list, or alone),
    anywhere in the document.
    Iterative: the document may be nested as deep as json.loads allows."""
    pending = [value]
    while pending:
        item = pending.pop()
        if isinstance(item, _LongNumber):
            return True
        if isinstance(item, list):
            pending.extend(item)
        elif isinstance(item, dict):
            pending.extend(item.values())
    return False


def _json_media_type(media_type: str) -> bool:
    maintype, _, subtype = media_type.partition("/")
    return maintype == "application" and (subtype == "json" or subtype.endswith("+json"))


def check_json_media(media: tuple[str, str | None] | None) -> None:
    """Raise :class:`BodyRefused` (415) unless ``media`` (the request's media type and
    charset) declares UTF-8 JSON."""
    expected = "send JSON with Content-Type: application/json"
    if media is None:
        raise BodyRefused(415, f"no Content-Type; {expected}")
    media_type, charset = media
    if not _json_media_type(media_type):
        raise BodyRefused(415, f"Content-Type {media_type[:100]!r} is not JSON; {expected}")
    if charset is not None and charset.strip().lower() not in _UTF8:
        raise BodyRefused(
            415, f"charset {charset[:40]!r}: JSON is UTF-8 (application/json; charset=utf-8)"
        )


def check_json_body(body: bytes, media: tuple[str, str | None] | None) -> None:
    """Raise :class:`BodyRefused` unless ``body`` is empty or a strict UTF-8 JSON document
    declared as JSON (``media``: the request's media type and charset)."""
    if not body:
        return  # the model's own "Field required" names what is missing
    check_json_media(media)
    try:
        # A UTF-8 byte order mark is tolerated (RFC 8259 §8.1 lets a parser ignore it, and
        # Windows tools write one); json.loads of the bytes, as FastAPI does, skips it too.
        text = body.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise BodyRefused(422, f"body: not UTF-8 text (byte {exc.start}); JSON is UTF-8") from None
    try:
        parsed = json.loads(
            text, object_pairs_hook=_object, parse_constant=_refuse_constant, parse_int=_parse_int
        )
    except json.JSONDecodeError as exc:
        raise BodyRefused(
            422, f"body: invalid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}"
        ) from None
    except RecursionError:
        raise BodyRefused(422, "body: JSON nested too deeply") from None
    if _has_long_number(parsed):
        raise _too_long("in a list")


def query_names(dependant: Dependant) -> frozenset[str]:
    """The query parameters a route takes, its dependencies' included."""
    names: set[str] = set()
    pending = [dependant]
    while pending:
        current = pending.pop()
        names.update(field.alias for field in current.query_params)
        pending.extend(current.dependencies)
    return frozenset(names)


def check_query(pairs: list[tuple[str, str]], known: frozenset[str]) -> None:
    """Raise :class:`BodyRefused` (422) for a query parameter not in ``known`` or repeated."""
    takes = f"this route takes {', '.join(sorted(known))}" if known else "this route takes none"
    seen: set[str] = set()
    for name, _ in pairs:
        if name not in known:
            raise BodyRefused(422, f"query: unknown parameter {name[:80]!r} ({takes})")
        if name in seen:
            raise BodyRefused(422, f"query: {name!r} given more than once")
        seen.add(name)


def check_path(request: Request) -> None:
    """Raise :class:`BodyRefused` (404) for a path with an encoded ``/`` (``%2F``): routing
    reads it as a separator, while it is part of a segment as sent (RFC 3986 §2.2)."""
    raw = request.scope.get("raw_path")
    if isinstance(raw, bytes) and b"%2f" in raw.lower():
        path = raw.decode("latin-1")[:200]
        raise BodyRefused(
            404,
            f"no such route: {request.method} {path!r} (an encoded '/', %2F, is not a "
            "path separator, and no job id holds one)",
        )


class StrictInputRoute(APIRoute):
    """An API route whose path (:func:`check_path`), query string (:func:`check_query`) and
    JSON body (:func:`check_body_headers`, :func:`check_json_body`) are checked first."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()
        known = query_names(self.dependant)
        has_body = self.body_field is not None

        async def checked(request: Request) -> Response:
            check_path(request)
            check_query(request.query_params.multi_items(), known)
            if has_body:
                declared = _declares_body(request)
                if declared:
                    # Before reading: a client waiting on "Expect: 100-continue" is told now.
                    check_body_headers(request)
                    check_json_media(_media_type(request))
                try:
                    # request.body() is cached on the request, so FastAPI's handler reads
                    # the same bytes without touching the stream again (the body limit
                    # applied).
                    body = await request.body()
                except ClientDisconnect:
                    # The client went away mid-body: there is nobody to answer.
                    return Response(status_code=CLIENT_CLOSED_REQUEST)
                if body and not declared:
                    check_body_headers(request)
                check_json_body(body, _media_type(request))
            return await handler(request)

        return checked
