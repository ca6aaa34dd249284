"""The jobs HTTP API (FastAPI): log in, ask for an upload, follow the job, read its result.

Routes and field names are the API's contract (see the README). Everything but ``/healthz``
and ``/metrics`` needs a bearer token from ``POST /auth/login``. Bad input is a 4xx with a
JSON ``detail``: a body over 64 KiB is a 413 before anything reads it (``body_limit``), a
field of the wrong JSON type a 422 (the request models are strict: ``true`` or ``"12"`` is
not a size); a backend that cannot be reached (state store, S3 signing) is a 503 with
the reason, never a 500 with a trace. The API reads the state store and the catalog and
presigns uploads; processing stays with the object sensor and its runs.
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends, FastAPI, HTTPException, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, ConfigDict, Field, StrictInt, StrictStr

from edvmp_pipeline.api.auth import Authenticator, Principal, Unauthorized
from edvmp_pipeline.api.body_limit import MAX_BODY_BYTES, BodyLimitMiddleware
from edvmp_pipeline.api.metrics import install_metrics
from edvmp_pipeline.catalog.store import Catalog
from edvmp_pipeline.domain.errors import ConfigError, PipelineError
from edvmp_pipeline.services import api_jobs
from edvmp_pipeline.services.api_jobs import JobRefused, NotReady, UploadSettings

log = logging.getLogger(__name__)

MAX_HISTORY = 200
DEFAULT_HISTORY = 50


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


class TokenResponse(BaseModel):
    access_token: str
    token_type: str = "bearer"
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
    upload_method: str = "PUT"
    upload_headers: dict[str, str] = Field(
        default_factory=dict, description="headers the PUT must send (they are signed)"
    )


class JobResponse(BaseModel):
    job_id: str
    status: str = Field(description=" | ".join(api_jobs.API_STATUSES))
    created_at: str
    updated_at: str
    s3_bucket: str
    s3_key: str
    error_code: str | None
    error_message: str | None


class ResultResponse(BaseModel):
    job_id: str
    metadata: dict[str, Any]
    summary: dict[str, Any] | None
    checks: list[dict[str, Any]]
    analysis: dict[str, Any] | None = None
    """The media analysis (EDVMP_ANALYSIS=on) with its ``near_duplicates``; null without."""


class HistoryResponse(BaseModel):
    items: list[JobResponse]


class IncidentsResponse(BaseModel):
    items: list[dict[str, Any]]


_bearer = HTTPBearer(auto_error=False)


def _unauthorized(detail: str) -> HTTPException:
    return HTTPException(status_code=401, detail=detail, headers={"WWW-Authenticate": "Bearer"})


def caller(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Principal:
    """The caller a request's bearer token names; 401 without a valid one."""
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise _unauthorized("missing bearer token (POST /auth/login)")
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
    )
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

    @app.post("/auth/login", response_model=TokenResponse)
    def login(body: LoginRequest) -> TokenResponse:
        """Exchange a username and password for a bearer token."""
        try:
            token = config.authenticator.login(body.username, body.password)
        except Unauthorized as exc:
            raise _unauthorized(str(exc)) from None
        return TokenResponse(access_token=token, expires_in=config.authenticator.token_ttl_s)

    @app.post("/jobs", response_model=CreateJobResponse, status_code=201)
    def create_job(body: CreateJobRequest, principal: Caller) -> CreateJobResponse:
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
        return CreateJobResponse(
            job_id=new.job.job_id,
            s3_bucket=new.job.bucket,
            s3_key=new.job.object_key,
            upload_url=new.upload.url,
            expires_in=new.expires_in,
            upload_method=new.upload.method,
            upload_headers=new.upload.headers,
        )

    @app.get("/jobs/{job_id}", response_model=JobResponse)
    def get_job(job_id: str, principal: Caller) -> dict[str, Any]:
        """Where a job stands."""
        return api_jobs.job_view(catalog, job_or_404(job_id, principal)).as_json()

    @app.get(
        "/jobs/{job_id}/result",
        response_model=ResultResponse,
        responses={409: {"description": "the job has no result (yet)"}},
    )
    def get_result(job_id: str, principal: Caller) -> dict[str, Any]:
        """Metadata (normalised and raw ffprobe), summary and checks of a SUCCEEDED job."""
        job = job_or_404(job_id, principal)
        try:
            return api_jobs.job_result(catalog, job)
        except NotReady as exc:
            raise HTTPException(status_code=409, detail=exc.detail) from None

    @app.get("/history", response_model=HistoryResponse)
    def get_history(
        principal: Caller,
        limit: Annotated[int, Query(ge=1, le=MAX_HISTORY)] = DEFAULT_HISTORY,
    ) -> dict[str, Any]:
        """The caller's newest jobs first."""
        views = api_jobs.history(catalog, owner=principal.name, limit=limit)
        return {"items": [v.as_json() for v in views]}

    @app.get("/incidents", response_model=IncidentsResponse)
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

    @app.get("/healthz")
    def healthz() -> JSONResponse:
        """200 when the state store answers, 503 with the reason otherwise."""
        try:
            catalog.state.status_counts()
        except (sqlite3.Error, OSError, PipelineError) as exc:
            return JSONResponse(
                status_code=503, content={"status": "unavailable", "detail": str(exc)}
            )
        return JSONResponse(content={"status": "ok"})

    install_metrics(app, lambda: catalog)
    return app
