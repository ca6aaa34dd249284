"""Upload jobs of the HTTP API: which client asked to upload what, under which object key.

A job exists from the moment ``POST /jobs`` hands out its presigned URL, before any object
does, so it needs a row of its own; it holds only what nothing else knows (owner, file name,
the key it was given, when). Its status is *not* stored here: it is the state of the object
version the sensor registers under that key (one home per fact), read by (source, key)
through the ``versions_by_object`` index. Keyed reads only: by job id, or an owner's newest
jobs through ``upload_jobs_by_owner``.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass, fields
from datetime import datetime

SCHEMA = """
CREATE TABLE IF NOT EXISTS upload_jobs (
    job_id TEXT PRIMARY KEY,
    owner TEXT NOT NULL,
    bucket TEXT NOT NULL,
    object_key TEXT NOT NULL UNIQUE,
    filename TEXT NOT NULL,
    content_type TEXT,
    size_bytes INTEGER,
    created_at INTEGER NOT NULL,
    url_expires_at INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS upload_jobs_by_owner ON upload_jobs (owner, created_at);
"""


@dataclass(frozen=True)
class UploadJob:
    """One job handed out by the API (see the module doc for what is not in it)."""

    job_id: str
    owner: str
    bucket: str
    object_key: str
    filename: str
    content_type: str | None
    size_bytes: int | None
    created_at: datetime
    url_expires_at: datetime


COLUMNS = tuple(f.name for f in fields(UploadJob))
TIMES = frozenset({"created_at", "url_expires_at"})


def insert(con: sqlite3.Connection, row: list[object]) -> None:
    """Insert one job (values in :data:`COLUMNS` order, times as microseconds)."""
    con.execute(
        f"INSERT INTO upload_jobs ({', '.join(COLUMNS)}) "  # nosec B608
        f"VALUES ({', '.join('?' * len(COLUMNS))})",
        row,
    )
