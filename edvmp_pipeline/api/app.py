"""The jobs HTTP API (FastAPI): log in, ask for an upload, follow the job, read its result.

Routes and field names are the API's contract (see the README). Everything but ``/healthz``
and ``/metrics`` needs a bearer token from ``POST /auth/login``. Bad input is a 4xx with a
JSON ``detail``: a body over 64 KiB is a 413 before anything reads it (``body_limit``), a
field of the wrong JSON type a 422 (the request models are strict: ``true`` or ``"12"`` is
not a size); a backend that cannot be reached (state store, S3 signing) is a 503 with
the reason, never a 500 with a trace. Query strings and JSON bodies are checked strictly
before FastAPI parses them (``strict_input``: 415 for a body not sent as plain JSON, 422 for
duplicate keys, bad UTF-8, unknown query parameters), and every error status is declared
in the OpenAPI schema as ``ErrorResponse``, the ``{"detail": str}`` the app sends. The API
reads the state store and the catalog and presigns uploads; processing stays with the object
sensor and its runs.
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from fastapi import Depends, FastAPI, HTTPException, Query, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, ConfigDict, Field, StrictInt, StrictStr
from starlette.types import Receive, Scope, Send

from edvmp_pipeline.api.auth import Authenticator, Principal, Unauthorized
from edvmp_pipeline.api.body_limit import MAX_BODY_BYTES, BodyLimitMiddleware
from edvmp_pipeline.api.metrics import install_metrics
from edvmp_pipeline.api.strict_input import StrictInputRoute
from edvmp_pipeline.catalog.store import Catalog
from edvmp_pipeline.domain.errors import ConfigError, PipelineError
from edvmp_pipeline.services import api_jobs
from edvmp_pipeline.services.api_jobs import JobRefused, NotReady, UploadSettings

log = logging.getLogger(__name__)

MAX_HISTORY = 200
DEFAULT_HISTORY = 50
# The order methods are listed in an Allow header (RFC 9110's order).
_METHOD_ORDER = {m: i for i, m in enumerate(("GET", "HEAD", "POST", "PUT", "DELETE", "PATCH"))}


@dataclass
class ApiConfig:
    """What the app needs, resolved from settings by ``edvmp serve`` (or a test)."""

    catalog: Catalog
    authenticator: Authenticator
    uploads: UploadSettings
    s3_client: Callable[[], Any]


# Request models are strict (``ConfigDict(strict=True)`` and Strict* fields): pydantic's lax
# mode would take ``true`` as the size 1 and ``"12"`` as 12, and a client that sends the wrong
# type has a bug it should hear about (a 422 naming the field), not a presigned URL for a
# size it never meant.


class LoginRequest(BaseModel):
    """``POST /auth/login`` body."""

    model_config = ConfigDict(extra="forbid", strict=True)
    username: StrictStr = Field(min_length=1, max_length=64)
    password: StrictStr = Field(min_length=1, max_length=1024)


class ErrorResponse(BaseModel):
    """Every refusal and failure the API answers: one line saying what is wrong."""

    detail: str


# What each error status means, declared per route in the OpenAPI schema with ErrorResponse:
# generated clients deserialise error bodies by that schema, and FastAPI's default 422 schema
# (a list of {loc, msg, type}) is not what this app sends.
_ERROR_MEANING = {
    400: "malformed Content-Length",
    401: "no valid bearer token, or wrong credentials (WWW-Authenticate: Bearer)",
    404: "no such job, or not the caller's",
    409: "the job has no result (yet); its status is in the detail",
    413: f"request body over {MAX_BODY_BYTES} bytes, or size_bytes over the upload limit",
    415: "a request body not sent as uncompressed UTF-8 JSON (one Content-Type: "
    "application/json, no Content-Encoding)",
    422: "a refused field or query parameter, or a body that is not one strict JSON object",
    503: "the state store or S3 signing is unavailable",
}


def errors(*codes: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` for these error statuses, plus the body limit's 400 and 413
    (refused before routing, on any route)."""
    return {
        code: {"model": ErrorResponse, "description": _ERROR_MEANING[code]}
        for code in sorted({400, 413, *codes})
    }


# Response models declare every field the app always sends as required (no defaults): a
# generated client types a field that is not required as optional ("Unset | str"), and these
# are never left out. Times are ISO 8601 strings with their offset, declared as date-time.
def _timestamp() -> Any:
    return Field(json_schema_extra={"format": "date-time"})


# The token and the presigned URL are credentials: no cache may keep them (RFC 6749 §5.1
# for token responses; the upload URL is as good as a token for its key until it expires).
_NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}


class TokenResponse(BaseModel):
    access_token: str
    token_type: Literal["bearer"]
    expires_in: int


class CreateJobRequest(BaseModel):
    """``POST /jobs`` body: the file to upload (``size_bytes`` optional: when given, the
    upload URL accepts exactly that many bytes)."""

    model_config = ConfigDict(extra="forbid", strict=True)
    filename: StrictStr = Field(min_length=1, max_length=255)
    content_type: StrictStr | None = Field(default=None, max_length=255)
    # Optional: left out or null means no size (the upload URL then takes any length).
    size_bytes: StrictInt | None = Field(default=None, ge=1)


class CreateJobResponse(BaseModel):
    job_id: str
    s3_bucket: str
    s3_key: str
    upload_url: str
    expires_in: int
    upload_method: str = Field(description="the HTTP method of the upload: PUT")
    upload_headers: dict[str, str] = Field(
        description="headers the PUT must send (they are signed)"
    )


class JobResponse(BaseModel):
    job_id: str
    status: Literal[api_jobs.API_STATUSES]  # type: ignore[valid-type]
    created_at: str = _timestamp()
    updated_at: str = _timestamp()
    s3_bucket: str
    s3_key: str
    error_code: str | None
    error_message: str | None


class ResultResponse(BaseModel):
    job_id: str
    metadata: dict[str, Any]
    summary: dict[str, Any] | None
    checks: list[dict[str, Any]]
    analysis: dict[str, Any] | None = Field(
        description="the media analysis (EDVMP_ANALYSIS=on), null without"
    )


class HistoryResponse(BaseModel):
    items: list[JobResponse]


class IncidentsResponse(BaseModel):
    items: list[dict[str, Any]]


class HealthResponse(BaseModel):
    status: Literal["ok"]


_bearer = HTTPBearer(auto_error=False)


def _unauthorized(detail: str) -> HTTPException:
    return HTTPException(status_code=401, detail=detail, headers={"WWW-Authenticate": "Bearer"})


def _not_bearer(header: str | None) -> str:
    """Why an Authorization header is not a bearer token: its scheme, never its secret."""
    expected = "send 'Authorization: Bearer <token>' (POST /auth/login gives one)"
    if header is None or not header.strip():
        return f"missing bearer token; {expected}"
    scheme, space, rest = header.strip().partition(" ")
    if scheme.lower() == "bearer" and not rest.strip():
        return f"empty bearer token; {expected}"
    if not space or not scheme.isascii() or not scheme.isalnum() or len(scheme) > 20:
        # No scheme word, or one whose text may be the credential itself: not echoed.
        return f"Authorization is not '<scheme> <credentials>'; {expected}"
    return f"Authorization scheme {scheme!r} is not accepted; {expected}"


def caller(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Principal:
    """The caller a request's bearer token names; 401 without a valid one."""
    sent = request.headers.getlist("authorization")
    if len(sent) > 1:
        # Which one counts would depend on the reader (this app took the first, a proxy may
        # check the last): refused, as HTTP allows one Authorization field.
        raise _unauthorized(f"{len(sent)} Authorization headers; send one")
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise _unauthorized(_not_bearer(sent[0] if sent else None))
    config: ApiConfig = request.app.state.config
    try:
        return config.authenticator.verify(credentials.credentials)
    except Unauthorized as exc:
        raise _unauthorized(str(exc)) from None


Caller = Annotated[Principal, Depends(caller)]


def create_app(config: ApiConfig) -> FastAPI:
    """The API app over ``config`` (routes, auth, error mapping, ``/metrics``)."""
    app = FastAPI(
        title="edvmp jobs API",
        version="1",
        description="Upload videos and read their metadata, summary and compliance checks.",
        # Starlette's default answers "/jobs/" with a 307 to an absolute URL built from the
        # Host header (plain http behind a TLS proxy, with the bearer token following it);
        # a 404 that names the path (below) tells the client what to fix.
        redirect_slashes=False,
    )
    # Query strings and JSON bodies are checked before FastAPI parses them (strict_input):
    # unknown or repeated parameters, and anything but one strict UTF-8 JSON document.
    app.router.route_class = StrictInputRoute
    app.state.config = config
    catalog = config.catalog
    # Added before install_metrics, so it runs inside the metrics middleware: refused bodies
    # are counted like any other answer (413, under route "unmatched" when the Content-Length
    # refused them before routing).
    app.add_middleware(BodyLimitMiddleware, max_bytes=MAX_BODY_BYTES)

    def job_or_404(job_id: str, principal: Principal) -> Any:
        job = api_jobs.find_job(catalog, job_id, owner=principal.owner_filter)
        if job is None:
            raise HTTPException(status_code=404, detail=f"no such job: {job_id[:80]!r}")
        return job

    @app.exception_handler(RequestValidationError)
    async def bad_request(request: Request, exc: RequestValidationError) -> JSONResponse:
        # One line per problem, naming the field; never the submitted value echoed back.
        problems = [
            f"{'.'.join(str(p) for p in e.get('loc', ()) if p != 'body') or 'body'}: {e.get('msg')}"
            for e in exc.errors()
        ]
        return JSONResponse(status_code=422, content={"detail": "; ".join(problems)[:1000]})

    @app.exception_handler(405)
    async def wrong_method(request: Request, exc: Exception) -> JSONResponse:
        # Starlette's "Method Not Allowed" does not say which methods are; the Allow
        # header it sets does, and is kept.
        headers = dict(getattr(exc, "headers", None) or {})
        methods = [m.strip() for m in headers.get("Allow", "").split(",") if m.strip()]
        if "GET" in methods and "HEAD" not in methods:
            # The route that refused is the GET one; its HEAD twin is a route of its own.
            methods.append("HEAD")
        # Starlette joins a set (its own routes, /docs and /openapi.json, said "HEAD, GET" or
        # "GET, HEAD" depending on the process's hash seed): one order, whatever the process.
        methods = sorted(set(methods), key=lambda m: (_METHOD_ORDER.get(m, len(_METHOD_ORDER)), m))
        detail = f"{request.method} is not allowed on {request.url.path[:200]!r}"
        if methods:
            headers["Allow"] = ", ".join(methods)
            detail += f" (allowed: {headers['Allow']})"
        return JSONResponse(status_code=405, content={"detail": detail}, headers=headers)

    @app.exception_handler(sqlite3.Error)
    async def store_down(request: Request, exc: sqlite3.Error) -> JSONResponse:
        log.error("state store error on %s: %s", request.url.path, exc)
        return JSONResponse(
            status_code=503, content={"detail": f"state store unavailable: {exc}"[:300]}
        )

    @app.exception_handler(PipelineError)
    async def pipeline_error(request: Request, exc: PipelineError) -> JSONResponse:
        status = 422 if isinstance(exc, ConfigError) else 503
        return JSONResponse(status_code=status, content={"detail": exc.reason[:1000]})

    @app.post("/auth/login", response_model=TokenResponse, responses=errors(401, 415, 422))
    def login(body: LoginRequest, response: Response) -> TokenResponse:
        """Exchange a username and password for a bearer token."""
        try:
            token = config.authenticator.login(body.username, body.password)
        except Unauthorized as exc:
            raise _unauthorized(str(exc)) from None
        response.headers.update(_NO_STORE)
        return TokenResponse(
            access_token=token, token_type="bearer", expires_in=config.authenticator.token_ttl_s
        )

    @app.post(
        "/jobs",
        response_model=CreateJobResponse,
        status_code=201,
        responses=errors(401, 415, 422, 503),
    )
    def create_job(
        body: CreateJobRequest, principal: Caller, response: Response
    ) -> CreateJobResponse:
        """Create a job: a presigned PUT for a fresh object key in the uploads bucket."""
        try:
            new = api_jobs.create_job(
                catalog,
                config.s3_client(),
                config.uploads,
                owner=principal.name,
                filename=body.filename,
                content_type=body.content_type,
                size_bytes=body.size_bytes,
            )
        except JobRefused as exc:
            status = 413 if "over the upload limit" in exc.reason else 422
            raise HTTPException(status_code=status, detail=exc.reason) from None
        response.headers.update(_NO_STORE)
        return CreateJobResponse(
            job_id=new.job.job_id,
            s3_bucket=new.job.bucket,
            s3_key=new.job.object_key,
            upload_url=new.upload.url,
            expires_in=new.expires_in,
            upload_method=new.upload.method,
            upload_headers=new.upload.headers,
        )

    @app.get("/jobs/{job_id}", response_model=JobResponse, responses=errors(401, 404, 422, 503))
    def get_job(job_id: str, principal: Caller) -> dict[str, Any]:
        """Where a job stands."""
        return api_jobs.job_view(catalog, job_or_404(job_id, principal)).as_json()

    @app.get(
        "/jobs/{job_id}/result",
        response_model=ResultResponse,
        responses=errors(401, 404, 409, 422, 503),
    )
    def get_result(job_id: str, principal: Caller) -> dict[str, Any]:
        """Metadata (normalised and raw ffprobe), summary and checks of a SUCCEEDED job."""
        job = job_or_404(job_id, principal)
        try:
            return api_jobs.job_result(catalog, job)
        except NotReady as exc:
            raise HTTPException(status_code=409, detail=exc.detail) from None

    @app.get("/history", response_model=HistoryResponse, responses=errors(401, 422, 503))
    def get_history(
        principal: Caller,
        limit: Annotated[int, Query(ge=1, le=MAX_HISTORY)] = DEFAULT_HISTORY,
    ) -> dict[str, Any]:
        """The caller's newest jobs first."""
        views = api_jobs.history(catalog, owner=principal.name, limit=limit)
        return {"items": [v.as_json() for v in views]}

    @app.get("/incidents", response_model=IncidentsResponse, responses=errors(401, 422, 503))
    def get_incidents(
        principal: Caller,
        limit: Annotated[int, Query(ge=1, le=MAX_HISTORY)] = DEFAULT_HISTORY,
        open_only: bool = False,
    ) -> dict[str, Any]:
        """The newest incidents of the caller's uploads (every incident for an admin)."""
        incidents = catalog.state.recent_incidents(
            limit=limit, owner=principal.owner_filter, open_only=open_only
        )
        return {"items": [api_jobs.incident_json(i) for i in incidents]}

    # /healthz and /metrics take no query parameters, and refuse unknown ones like every route
    # (422), so that is declared too.
    @app.get("/healthz", response_model=HealthResponse, responses=errors(422, 503))
    def healthz() -> JSONResponse:
        """200 when the state store answers, 503 with the reason otherwise."""
        try:
            catalog.state.status_counts()
        except (sqlite3.Error, OSError, PipelineError) as exc:
            return JSONResponse(
                status_code=503, content={"status": "unavailable", "detail": str(exc)}
            )
        return JSONResponse(content={"status": "ok"})

    install_metrics(app, lambda: catalog, responses=errors(422))
    _answer_head_like_get(app)

    starlette_not_found = app.router.default

    async def no_route(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":  # a websocket handshake: Starlette closes it
            await starlette_not_found(scope, receive, send)
            return
        path = scope.get("path", "")
        hint = " (without the trailing '/')" if len(path) > 1 and path.endswith("/") else ""
        raise HTTPException(
            status_code=404, detail=f"no such route: {scope.get('method')} {path[:200]!r}{hint}"
        )

    # What Starlette's router calls when no route matches the path (a 405 is still a 405).
    app.router.default = no_route
    return app


def _answer_head_like_get(app: FastAPI) -> None:
    """Answer HEAD on every GET route as GET does, without the body.

    RFC 9110 §9.1: a server that supports GET supports HEAD (uptime checkers and ``curl -I``
    send it). Starlette's own routes (``/docs``, ``/openapi.json``) do; FastAPI's API routes
    answered 405. A hidden HEAD twin of each route runs the same endpoint (its auth and
    errors included), and uvicorn sends only the head of the answer. The twin is a route of
    its own, so metrics label it with the same template.
    """
    for route in list(app.router.routes):
        if isinstance(route, APIRoute) and "GET" in route.methods:
            app.router.add_api_route(
                route.path,
                route.endpoint,
                methods=["HEAD"],
                response_model=route.response_model,
                status_code=route.status_code,
                response_class=route.response_class,
                name=f"{route.name}_head",
                include_in_schema=False,
            )
