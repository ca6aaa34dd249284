"""Read and write the catalog: a folder of Parquet tables plus a DuckDB file of views."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, fields
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb

from edvmp_pipeline.catalog import schemas
from edvmp_pipeline.catalog.parquet_files import append_rows, ensure_table
from edvmp_pipeline.catalog.views import view_sql
from edvmp_pipeline.domain.records import ObjectVersion, StreamRecord, VideoRecord

DB_FILE = "catalog.duckdb"

PENDING, RUNNING, SUCCEEDED, FAILED = "PENDING", "RUNNING", "SUCCEEDED", "FAILED"


def utcnow() -> datetime:
    """The current time, timezone-aware UTC (what every catalog timestamp uses)."""
    return datetime.now(UTC)


@dataclass(frozen=True)
class JobState:
    """The catalog's current view of one version's processing."""

    partition_key: str
    status: str
    attempts: int
    error_class: str | None
    error: str | None


class Catalog:
    """The catalog rooted at one folder. Cheap to create; holds no open handles."""

    def __init__(self, root: Path | str) -> None:
        self.root = Path(root).expanduser().resolve()

    # -- set-up ---------------------------------------------------------------------------
    def ensure(self) -> Catalog:
        """Create the table folders (idempotent)."""
        for name, schema in schemas.TABLES.items():
            ensure_table(self.root, name, schema)
        return self

    @property
    def db_path(self) -> Path:
        return self.root / DB_FILE

    def connect(self) -> duckdb.DuckDBPyConnection:
        """An in-memory DuckDB connection with every catalog view defined.

        In-memory, so that any number of processes can read while runs write files; nothing
        here ever takes the database file's write lock.
        """
        self.ensure()
        con = duckdb.connect(":memory:")
        for name, sql in view_sql(self.root).items():
            con.execute(f"CREATE VIEW {name} AS {sql}")
        return con

    def write_database_file(self) -> bool:
        """(Re)create the DuckDB file's views so external tools can open it.

        Returns False when another process holds the file (its views are already there then;
        they only change when the catalog moves).
        """
        self.ensure()
        try:
            con = duckdb.connect(str(self.db_path))
        except duckdb.IOException:
            return False
        try:
            for name, sql in view_sql(self.root).items():
                con.execute(f"CREATE OR REPLACE VIEW {name} AS {sql}")
        finally:
            con.close()
        return True

    def query(self, sql: str, params: Sequence[Any] | None = None) -> tuple[list[str], list[tuple]]:
        """Run one SQL statement on the views; returns (column names, rows)."""
        con = self.connect()
        try:
            cur = con.execute(sql, params or [])
            if cur.description is None:
                return [], []
            return [d[0] for d in cur.description], cur.fetchall()
        finally:
            con.close()

    # -- registration and job state -------------------------------------------------------
    def register(self, versions: Iterable[tuple[str, ObjectVersion]], registered_by: str) -> int:
        """Record new versions (``(partition_key, version)`` pairs) as PENDING jobs."""
        now = utcnow()
        pairs = list(versions)
        append_rows(
            self.root,
            "objects",
            schemas.OBJECTS,
            (
                {
                    "partition_key": pk,
                    "source": v.source,
                    "object_key": v.object_key,
                    "etag": v.etag,
                    "size_bytes": v.size_bytes,
                    "last_modified": v.last_modified,
                    "registered_at": now,
                    "registered_by": registered_by,
                }
                for pk, v in pairs
            ),
        )
        self.record_events(((pk, v) for pk, v in pairs), PENDING, run_id=None)
        return len(pairs)

    def record_events(
        self,
        items: Iterable[tuple[str, ObjectVersion]],
        status: str,
        *,
        run_id: str | None,
        errors: dict[str, tuple[str, str]] | None = None,
    ) -> None:
        """Append one job event per version; ``errors`` maps partition key → (class, message)."""
        now = utcnow()
        errors = errors or {}
        rows = []
        for pk, v in items:
            error_class, error = errors.get(pk, (None, None))
            rows.append(
                {
                    "partition_key": pk,
                    "source": v.source,
                    "object_key": v.object_key,
                    "etag": v.etag,
                    "status": status,
                    "error_class": error_class,
                    "error": error,
                    "run_id": run_id,
                    "event_at": now,
                }
            )
        append_rows(self.root, "job_events", schemas.JOB_EVENTS, rows)

    def versions(self, partition_keys: Sequence[str]) -> dict[str, ObjectVersion]:
        """Look up registered versions by partition key (unknown keys are absent)."""
        if not partition_keys:
            return {}
        _, rows = self.query(
            "SELECT partition_key, source, object_key, etag, size_bytes, last_modified "
            "FROM objects WHERE partition_key IN (SELECT unnest(?))",
            [list(partition_keys)],
        )
        return {
            r[0]: ObjectVersion(
                source=r[1], object_key=r[2], etag=r[3], size_bytes=r[4], last_modified=r[5]
            )
            for r in rows
        }

    def job_states(self, partition_keys: Sequence[str] | None = None) -> dict[str, JobState]:
        """Current job state per version (all versions when ``partition_keys`` is None)."""
        sql = "SELECT partition_key, status, attempts, error_class, error FROM jobs"
        params: list[Any] = []
        if partition_keys is not None:
            if not partition_keys:
                return {}
            sql += " WHERE partition_key IN (SELECT unnest(?))"
            params.append(list(partition_keys))
        _, rows = self.query(sql, params)
        return {r[0]: JobState(r[0], r[1], int(r[2] or 0), r[3], r[4]) for r in rows}

    # -- results --------------------------------------------------------------------------
    def write_results(
        self,
        results: Sequence[tuple[str, ObjectVersion, VideoRecord]],
        *,
        run_id: str | None,
    ) -> None:
        """Land probed records: one ``videos`` file and one ``streams`` file for the batch."""
        now = utcnow()
        video_rows = []
        stream_rows = []
        for pk, version, record in results:
            row = record.as_row()
            tags = row.pop("tags") or {}
            video_rows.append(
                {
                    **row,
                    "partition_key": pk,
                    "source": version.source,
                    "object_key": version.object_key,
                    "etag": version.etag,
                    "size_bytes": version.size_bytes,
                    "last_modified": version.last_modified,
                    "tags_json": json.dumps(tags, sort_keys=True, ensure_ascii=False),
                    "processed_at": now,
                    "run_id": run_id,
                }
            )
            for stream in record.streams:
                stream_rows.append(
                    {
                        **stream.__dict__,
                        "partition_key": pk,
                        "object_key": version.object_key,
                        "etag": version.etag,
                        "processed_at": now,
                    }
                )
        # Streams first: a reader that sees a video row can always find its streams.
        append_rows(self.root, "streams", schemas.STREAMS, stream_rows)
        append_rows(self.root, "videos", schemas.VIDEOS, video_rows)

    # -- summaries and compliance checks --------------------------------------------------
    def video_records(
        self, partition_keys: Sequence[str]
    ) -> dict[str, tuple[ObjectVersion, VideoRecord]]:
        """The catalogued record of each version (its newest ``videos`` row and the streams
        written with it), rebuilt as the prober returned it. Versions without one are absent.
        """
        if not partition_keys:
            return {}
        keys = [list(partition_keys)]
        cols, rows = self.query(
            "SELECT * FROM videos WHERE partition_key IN (SELECT unnest(?))", keys
        )
        # Only the streams landed with that row: a re-probe that found fewer streams leaves
        # older stream rows behind, with an older processed_at.
        stream_cols, stream_rows = self.query(
            "SELECT s.* FROM streams s JOIN videos v USING (partition_key) "
            "WHERE s.partition_key IN (SELECT unnest(?)) AND s.processed_at = v.processed_at "
            "ORDER BY s.partition_key, s.stream_index",
            keys,
        )
        stream_names = [f.name for f in fields(StreamRecord)]
        streams: dict[str, list[StreamRecord]] = {}
        for values in stream_rows:
            row = dict(zip(stream_cols, values, strict=True))
            streams.setdefault(row["partition_key"], []).append(
                StreamRecord(**{name: row.get(name) for name in stream_names})
            )
        scalar_names = [f.name for f in fields(VideoRecord) if f.name not in ("tags", "streams")]
        records: dict[str, tuple[ObjectVersion, VideoRecord]] = {}
        for values in rows:
            row = dict(zip(cols, values, strict=True))
            pk = row["partition_key"]
            version = ObjectVersion(
                source=row["source"],
                object_key=row["object_key"],
                etag=row["etag"],
                size_bytes=row["size_bytes"],
                last_modified=row["last_modified"],
            )
            record = VideoRecord(
                **{name: row.get(name) for name in scalar_names},
                tags=json.loads(row["tags_json"] or "{}"),
                streams=tuple(streams.get(pk, ())),
            )
            records[pk] = (version, record)
        return records

    def write_summaries(self, rows: Iterable[Mapping[str, Any]], *, run_id: str | None) -> int:
        """Land summaries (``schemas.SUMMARIES`` columns) as one file; returns the row count."""
        now = utcnow()
        batch = [{**row, "created_at": now, "run_id": run_id} for row in rows]
        append_rows(self.root, "summaries", schemas.SUMMARIES, batch)
        return len(batch)

    def write_checks(self, rows: Iterable[Mapping[str, Any]], *, run_id: str | None) -> int:
        """Land compliance results (``schemas.CHECKS`` columns) as one file; returns the count."""
        now = utcnow()
        batch = [{**row, "checked_at": now, "run_id": run_id} for row in rows]
        append_rows(self.root, "checks", schemas.CHECKS, batch)
        return len(batch)
