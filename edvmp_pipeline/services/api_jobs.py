"""The jobs API's use-cases: hand out an upload, say where a job stands, serve its result.

A job is one upload handed out by ``POST /jobs``: a fresh object key
``<EDVMP_PREFIX>api/<job_id>/<filename>`` in the uploads bucket and a presigned PUT for it
(:func:`edvmp_pipeline.services.uploads.presign_upload`, the one ``edvmp upload`` uses). From
there the path is the existing one: the object sensor sees the object, registers its version
and runs the pipeline. The API adds no queue and keeps no status of its own; a job's status is
the state of the newest version registered under its key, mapped onto the API's names:

=====================  ==========================================================
API status             state store
=====================  ==========================================================
``AWAITING_UPLOAD``    no version under the key yet (not uploaded, or uploaded and
                       not yet seen by the sensor: at most one sensor interval)
``SUBMITTED``          ``PENDING``: registered, its run not started or not done
``PROCESSING``         ``RUNNING``
``SUCCEEDED``          ``SUCCEEDED`` (metadata, checks and summary all landed)
``FAILED``             ``FAILED``: ``error_code`` is the failure class, ``error_message``
                       its one-line reason
``EXPIRED``            no version under the key, :data:`UPLOAD_GRACE_S` after the upload
                       URL expired: nothing will arrive (``error_code`` ``upload_expired``)
=====================  ==========================================================

No Dagster import here: the API server reads the state store and the catalog only.
"""

from __future__ import annotations

import json
import re
import unicodedata
import uuid
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from typing import Any

from edvmp_pipeline.catalog.analysis_tables import analysis_result
from edvmp_pipeline.catalog.state_store import (
    FAILED,
    PENDING,
    RUNNING,
    SUCCEEDED,
    Incident,
    JobState,
    utcnow,
)
from edvmp_pipeline.catalog.store import Catalog
from edvmp_pipeline.catalog.upload_jobs import UploadJob
from edvmp_pipeline.domain.object_keys import InvalidObjectKey, validate_object_key
from edvmp_pipeline.domain.video_filter import skip_reason
from edvmp_pipeline.services.uploads import (
    PresignedUpload,
    guess_content_type,
    presign_upload,
)

AWAITING_UPLOAD, SUBMITTED, PROCESSING = "AWAITING_UPLOAD", "SUBMITTED", "PROCESSING"
EXPIRED = "EXPIRED"
API_STATUSES = (AWAITING_UPLOAD, SUBMITTED, PROCESSING, SUCCEEDED, FAILED, EXPIRED)
UPLOAD_EXPIRED = "upload_expired"
UPLOAD_GRACE_S = 3600
"""How long after its URL expired a job may still see its upload arrive: S3 checks the
signature when a PUT starts, so a large upload begun just in time lands later, and the
sensor registers it up to an interval after that. Past it, a job with nothing under its key
is EXPIRED, so a client polling for an end state gets one. Derived, not stored: should an
upload still land, the job shows it."""
_FROM_STATE = {PENDING: SUBMITTED, RUNNING: PROCESSING, SUCCEEDED: SUCCEEDED, FAILED: FAILED}
MAX_FILENAME_BYTES = 255
# Characters that make a file name display as another ("Trojan Source", CVE-2021-42574:
# "clip\u202egpj.mp4" reads "clip4pm.jpg"): bidirectional embeddings, overrides and
# isolates, and the zero-width characters that make look-alike names. The joiners U+200C
# and U+200D are not among them: Persian, Indic scripts and emoji sequences need them.
_SPOOFING = frozenset(
    [chr(c) for c in range(0x202A, 0x202F)]
    + [chr(c) for c in range(0x2066, 0x206A)]
    + ["\u200b", "\u2060", "\ufeff"]
)
# A job id is what POST /jobs made: 32 lower-case hex digits (uuid4().hex). Clients may spell
# that UUID upper-case or dashed (8-4-4-4-12); UUIDs compare case-insensitively (RFC 9562),
# so those spellings name the same job. Nothing else does: no whitespace, braces or "urn:".
_JOB_ID = re.compile(r"[0-9a-f]{32}")
_JOB_ID_SPELLING = re.compile(
    r"[0-9a-fA-F]{32}|[0-9a-fA-F]{8}(?:-[0-9a-fA-F]{4}){3}-[0-9a-fA-F]{12}"
)
# Types an uploader may declare: a video, or "I do not know" (the sensor decides by probing).
# Parameters are checked by presign_upload; [ \t], not \s: a CR/LF is never part of a header.
_ACCEPTED_TYPE = re.compile(
    r"(video/[\w.+-]+|application/octet-stream)([ \t]*;[^\x00-\x1f\x7f]*)?", re.IGNORECASE
)


class JobRefused(Exception):
    """A request the API refuses as it stands (a 4xx, with this one-line reason).

    Not a :class:`PipelineError`: a refused request never becomes a run, so it has no
    failure class and the incident classifier never sees it.
    """

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class NotReady(Exception):
    """The job has no result (yet, or ever: it failed); ``status`` says which."""

    def __init__(self, status: str, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail


@dataclass(frozen=True)
class UploadSettings:
    """Where API uploads go and what they may be."""

    bucket: str
    prefix: str
    extensions: frozenset[str]
    url_expiry_s: int
    max_upload_bytes: int


@dataclass(frozen=True)
class JobView:
    """What ``GET /jobs/{job_id}`` answers (field names are the API's contract)."""

    job_id: str
    status: str
    created_at: datetime
    updated_at: datetime
    s3_bucket: str
    s3_key: str
    error_code: str | None
    error_message: str | None

    def as_json(self) -> dict[str, Any]:
        """JSON-ready (times as ISO 8601 with offset)."""
        out = asdict(self)
        out["created_at"] = self.created_at.isoformat()
        out["updated_at"] = self.updated_at.isoformat()
        return out


@dataclass(frozen=True)
class NewJob:
    """A job just created, with the upload its client must perform."""

    job: UploadJob
    upload: PresignedUpload
    expires_in: int


def api_status(state: JobState | None, job: UploadJob | None = None) -> str:
    """The API status of ``job`` whose newest version is ``state`` (see the module doc)."""
    if state is None:
        return EXPIRED if job is not None and upload_expired(job) else AWAITING_UPLOAD
    return _FROM_STATE.get(state.status, SUBMITTED)


def upload_expired(job: UploadJob, now: datetime | None = None) -> bool:
    """Whether ``job``'s upload can no longer arrive (its URL expired a grace period ago)."""
    return (now or utcnow()) > job.url_expires_at + timedelta(seconds=UPLOAD_GRACE_S)


def is_job_id(text: str) -> bool:
    """Whether ``text`` has the shape of a job id (so a malformed one is a plain 404)."""
    return bool(_JOB_ID.fullmatch(text))


def canonical_job_id(text: str) -> str | None:
    """The job id ``text`` spells (32 hex digits or a dashed UUID, any case), or None."""
    if not _JOB_ID_SPELLING.fullmatch(text):
        return None
    return text.replace("-", "").lower()


def _check_filename(filename: str) -> str:
    if not isinstance(filename, str) or not filename.strip():
        raise JobRefused("filename must be a non-empty file name, e.g. clip.mp4")
    if "/" in filename or "\\" in filename:
        raise JobRefused(f"filename must be a bare file name without '/' or '\\': {filename!r}")
    if filename in (".", ".."):
        raise JobRefused(f"filename {filename!r} is not a file name")
    hidden = next((c for c in filename if c in _SPOOFING), None)
    if hidden is not None:
        raise JobRefused(
            f"filename holds the invisible character U+{ord(hidden):04X} "
            f"({unicodedata.name(hidden)}), which makes a name read as another"
        )
    if len(filename.encode("utf-8", "surrogatepass")) > MAX_FILENAME_BYTES:
        raise JobRefused(f"filename is longer than {MAX_FILENAME_BYTES} bytes")
    return filename


def _check_content_type(content_type: str | None, filename: str) -> str | None:
    chosen = content_type if content_type is not None else guess_content_type_of(filename)
    if chosen is None:
        return None
    if not _ACCEPTED_TYPE.fullmatch(chosen):
        raise JobRefused(
            f"content_type {chosen!r} is not a video type (video/..., or "
            "application/octet-stream when unknown)"
        )
    return chosen


def guess_content_type_of(filename: str) -> str | None:
    """The MIME type a file name suggests (``clip.mp4`` → ``video/mp4``), or None."""
    from pathlib import PurePosixPath

    return guess_content_type(PurePosixPath(filename))  # type: ignore[arg-type]


def create_job(
    catalog: Catalog,
    s3_client: Any,
    settings: UploadSettings,
    *,
    owner: str,
    filename: str,
    content_type: str | None = None,
    size_bytes: int | None = None,
) -> NewJob:
    """Create a job and its presigned upload; raises :class:`JobRefused` for a request that
    names no acceptable file (the reason is the API's 4xx detail).

    ``size_bytes``, when the client declares it, must be at most the configured limit and is
    signed into the URL (S3 then refuses a body of any other length). Without it, a presigned
    PUT cannot bound the size; S3's single-PUT limit (5 GiB) applies.
    """
    filename = _check_filename(filename)
    if size_bytes is not None:
        if size_bytes < 1:
            raise JobRefused("size_bytes must be at least 1 (an empty file is not a video)")
        if size_bytes > settings.max_upload_bytes:
            raise JobRefused(
                f"size_bytes {size_bytes} is over the upload limit of "
                f"{settings.max_upload_bytes} bytes"
            )
    job_id = uuid.uuid4().hex
    key = f"{settings.prefix}api/{job_id}/{filename}"
    try:
        validate_object_key(key)
    except InvalidObjectKey as exc:
        raise JobRefused(f"filename gives an unusable object key: {exc.reason}") from None
    reason = skip_reason(key, settings.extensions)
    if reason is not None:
        raise JobRefused(f"filename {filename!r} would not be processed ({reason})")
    chosen_type = _check_content_type(content_type, filename)
    upload = presign_upload(
        s3_client,
        settings.bucket,
        key,
        settings.url_expiry_s,
        chosen_type,
        content_length=size_bytes,
    )
    now = utcnow()
    job = UploadJob(
        job_id=job_id,
        owner=owner,
        bucket=settings.bucket,
        object_key=key,
        filename=filename,
        content_type=chosen_type,
        size_bytes=size_bytes,
        created_at=now,
        url_expires_at=now + timedelta(seconds=settings.url_expiry_s),
    )
    catalog.state.create_upload_job(job)
    return NewJob(job=job, upload=upload, expires_in=settings.url_expiry_s)


def find_job(catalog: Catalog, job_id: str, *, owner: str | None) -> UploadJob | None:
    """The job with this id (in any spelling :func:`canonical_job_id` takes), when it exists
    and ``owner`` may see it (None: anyone)."""
    canonical = canonical_job_id(job_id)
    if canonical is None:
        return None
    job = catalog.state.upload_job(canonical)
    if job is None or (owner is not None and job.owner != owner):
        return None
    return job


def _view(job: UploadJob, state: JobState | None) -> JobView:
    updated = job.created_at
    if state is not None and state.updated_at is not None and state.updated_at > updated:
        updated = state.updated_at
    status = api_status(state, job)
    error_code = error_message = None
    if state is not None and state.status == FAILED:
        error_code, error_message = state.error_class, state.error
    elif status == EXPIRED:
        error_code = UPLOAD_EXPIRED
        error_message = (
            f"the upload URL expired at {job.url_expires_at.isoformat()} and no upload "
            "arrived; create a new job to upload"
        )
    return JobView(
        job_id=job.job_id,
        status=status,
        created_at=job.created_at,
        updated_at=updated,
        s3_bucket=job.bucket,
        s3_key=job.object_key,
        error_code=error_code,
        error_message=error_message,
    )


def _newest_states(catalog: Catalog, jobs: list[UploadJob]) -> dict[str, JobState]:
    by_bucket: dict[str, list[str]] = {}
    for job in jobs:
        by_bucket.setdefault(job.bucket, []).append(job.object_key)
    found: dict[str, JobState] = {}
    for bucket, keys in by_bucket.items():
        for key, state in catalog.state.newest_versions_of(f"s3://{bucket}", keys).items():
            found[f"{bucket}/{key}"] = state
    return found


def job_view(catalog: Catalog, job: UploadJob) -> JobView:
    """Where one job stands (two keyed reads)."""
    states = _newest_states(catalog, [job])
    return _view(job, states.get(f"{job.bucket}/{job.object_key}"))


def history(catalog: Catalog, *, owner: str, limit: int) -> list[JobView]:
    """An owner's newest jobs first: one index range read and one batched version lookup."""
    jobs = catalog.state.upload_jobs_of(owner, limit=limit)
    states = _newest_states(catalog, jobs)
    return [_view(j, states.get(f"{j.bucket}/{j.object_key}")) for j in jobs]


def _jsonable(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, float) and value != value:  # NaN is not JSON
        return None
    return value


def job_result(catalog: Catalog, job: UploadJob) -> dict[str, Any]:
    """``{job_id, metadata, summary, checks, analysis}`` of a SUCCEEDED job (``analysis``
    null unless the version was analysed); raises :class:`NotReady`
    with the job's status otherwise.

    ``metadata`` is the normalised ``videos`` record with its ``streams``, plus ``ffprobe``:
    ffprobe's own ``format`` and ``streams`` as it printed them (None for versions probed
    before the raw output was kept, or when it was over the size cap).
    """
    states = _newest_states(catalog, [job])
    state = states.get(f"{job.bucket}/{job.object_key}")
    status = api_status(state, job)
    if state is None or state.status != SUCCEEDED:
        detail = {
            AWAITING_UPLOAD: "no upload has been processed for this job yet",
            EXPIRED: "its upload URL expired and no upload arrived",
            SUBMITTED: "the upload is waiting to be processed",
            PROCESSING: "the upload is being processed",
            FAILED: "the job failed; GET /jobs/{job_id} says why",
        }[status]
        raise NotReady(status, f"job {job.job_id} has no result: {detail} (status {status})")
    rows = catalog.video_rows([state.partition_key])
    if not rows:
        raise NotReady(PROCESSING, f"job {job.job_id}: the result is not readable yet; retry")
    row = rows[0]
    raw = row.pop("ffprobe_json", None)
    tags = json.loads(row.pop("tags_json", None) or "{}")
    streams = catalog.stream_rows(state.partition_key, row["processed_at"])
    metadata = {k: _jsonable(v) for k, v in row.items()}
    metadata["tags"] = tags
    metadata["streams"] = [
        {k: _jsonable(v) for k, v in s.items() if k not in ("partition_key", "object_key", "etag")}
        for s in streams
    ]
    metadata["ffprobe"] = json.loads(raw) if raw else None
    summary = catalog.summary_row(state.partition_key)
    checks = [
        {k: _jsonable(v) for k, v in c.items() if k not in ("partition_key", "object_key", "etag")}
        for c in catalog.check_rows(state.partition_key)
    ]
    analysis = analysis_result(catalog, state.partition_key)
    return {
        "job_id": job.job_id,
        "metadata": metadata,
        "summary": {k: _jsonable(v) for k, v in summary.items() if k != "partition_key"}
        if summary
        else None,
        "checks": checks,
        "analysis": _jsonable_deep(analysis) if analysis is not None else None,
    }


def _jsonable_deep(value: Any) -> Any:
    """Nested lists and dicts (the analysis row's segments, loudness) made JSON-friendly."""
    if isinstance(value, dict):
        return {k: _jsonable_deep(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable_deep(v) for v in value]
    return _jsonable(value)


def incident_json(incident: Incident) -> dict[str, Any]:
    """One incident as the API shows it."""
    return {
        "incident_id": incident.incident_id,
        "job_key": incident.partition_key,
        "object_key": incident.object_key,
        "failure_class": incident.failure_class,
        "retryable": incident.retryable,
        "status": incident.status,
        "message": incident.message,
        "action": incident.action,
        "runbook": incident.runbook,
        "attempts": incident.attempts,
        "redrives": incident.redrives,
        "first_seen": incident.first_seen.isoformat(),
        "last_seen": incident.last_seen.isoformat(),
    }
