"""The catalog: the state store (one home of job state and incidents), the Parquet result
tables (kept to a bounded number of files by the writers themselves) and the DuckDB views
that people query.

Every read and write of the catalog goes through :class:`Catalog`; callers get dataclasses
or rows of named queries, never a connection to run their own SQL on (``edvmp query`` is the
one place where a person's SQL runs, on the views, through :meth:`Catalog.read_only_query`).
"""

from __future__ import annotations

import json
import re
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import fields
from pathlib import Path
from typing import Any, TypeVar

import duckdb
import pyarrow as pa
import pyarrow.compute as pc

from edvmp_pipeline.catalog import schemas
from edvmp_pipeline.catalog.compaction import maybe_compact
from edvmp_pipeline.catalog.lake import Lake, LocalLake, open_lake
from edvmp_pipeline.catalog.parquet_files import new_stem, rows_table
from edvmp_pipeline.catalog.read_only_sql import require_read_only
from edvmp_pipeline.catalog.state_store import (
    FAILED,
    INCIDENT_COLUMNS,
    INCIDENT_TIME_COLUMNS,
    JOB_COLUMNS,
    JOB_TIME_COLUMNS,
    PENDING,
    RUNNING,
    STATE_FILE,
    SUCCEEDED,
    JobState,
    SqliteStateStore,
    utcnow,
)
from edvmp_pipeline.catalog.views import (
    STATE_INCIDENTS,
    STATE_JOB_COLUMNS,
    STATE_JOBS,
    STATE_SOURCES,
    STATE_VIEW_SQL,
    newest,
    result_view_sql,
)
from edvmp_pipeline.domain.records import ObjectVersion, StreamRecord, VideoRecord

DB_FILE = "catalog.duckdb"

__all__ = [
    "DB_FILE",
    "FAILED",
    "PENDING",
    "RUNNING",
    "SUCCEEDED",
    "Catalog",
    "JobState",
    "retry_on_vanished_file",
    "utcnow",
]

T = TypeVar("T")
_VANISHED = (
    "No such file",
    "No files found",
    "Cannot open file",
    "could not be opened",
    # pyarrow on S3 (the lake), directly or through DuckDB's Arrow scan
    "NoSuchKey",
    "does not exist",
)


def retry_on_vanished_file(fn: Callable[[], T], *, attempts: int = 20) -> T:
    """Run a DuckDB read again when a file it listed was merged away meanwhile.

    Compaction deletes merged files only after their rows are in a new file, so a second
    listing always finds every row.
    """
    for attempt in range(attempts):
        try:
            return fn()
        except (duckdb.IOException, duckdb.InvalidInputException, OSError) as exc:
            if attempt == attempts - 1 or not any(s in str(exc) for s in _VANISHED):
                raise
            # Under a burst of merges a listing can go stale more than once (seen in CI).
            time.sleep(min(0.2, 0.01 * (attempt + 1)))
    raise AssertionError("unreachable")


def _lock_down(con: duckdb.DuckDBPyConnection, readable: Sequence[Path], spill: Path) -> None:
    """Confine a connection whose views are set up to reading ``readable`` folders.

    After this the connection cannot open any other file or URL (``read_csv('/etc/passwd')``,
    ``glob``, ``ATTACH``, ``COPY`` outside, extensions, Python replacement scans), and no
    setting can be changed again, so a statement cannot undo it. What it still allows, a
    write *inside* the folders (``COPY`` or ``EXPLAIN ANALYZE COPY``), the statement
    classifier refuses.
    """
    # DuckDB allows its temp directory implicitly: point it at a private folder, not the
    # default ``./.tmp`` of whatever directory the user runs edvmp from.
    con.execute("SET temp_directory = ?", [str(spill)])
    # A trailing separator: DuckDB matches these as prefixes ("videos" would allow "videos2").
    con.execute("SET allowed_directories = ?", [[f"{p}/" for p in readable]])
    con.execute("SET enable_external_access = false")
    con.execute("SET lock_configuration = true")


def _arrow(rows: Iterable[list[tuple]], names: Sequence[str], times: frozenset[str]) -> pa.Table:
    """State-store rows as an Arrow table with the view's types (columns built in C)."""
    batch = [row for chunk in rows for row in chunk]
    columns = list(zip(*batch, strict=True)) if batch else [() for _ in names]
    arrays = []
    for name, values in zip(names, columns, strict=True):
        if name in times:
            arrays.append(pa.array(values, pa.int64()).cast(schemas.TS))
        elif name == "retryable":
            arrays.append(pa.array(values, pa.int64()).cast(pa.bool_()))
        elif name in ("attempts", "max_redrives", "redrives"):
            arrays.append(pa.array(values, pa.int32()))
        elif name == "size_bytes":
            arrays.append(pa.array(values, pa.int64()))
        else:
            arrays.append(pa.array(values, pa.string()))
    return pa.Table.from_arrays(arrays, names=list(names))


def open_state_store(root: Path) -> SqliteStateStore:
    """The state store ``EDVMP_STATE`` names: SQLite next to the catalog, or DynamoDB.

    Typed as the SQLite store because both implement the same methods (the contract suite in
    ``test_state_store.py`` runs against each).
    """
    from edvmp_pipeline import settings

    if settings.state_backend() == "dynamodb":
        from edvmp_pipeline.catalog.dynamodb_state import DynamoDbStateStore

        endpoint = settings.dynamodb_endpoint_url()
        store = DynamoDbStateStore(
            table_prefix=settings.dynamodb_table_prefix(),
            endpoint_url=endpoint,
            create_tables=endpoint is not None,
        )
        return store  # type: ignore[return-value]
    return SqliteStateStore(root / STATE_FILE)


class Catalog:
    """The catalog rooted at one folder. Cheap to create; holds no open handles."""

    def __init__(self, root: Path | str) -> None:
        text = str(root)
        self.lake: Lake
        if text.startswith("s3://"):
            from edvmp_pipeline.settings import lake_state_dir

            # Result tables on S3; what stays local (state.sqlite, query spill) beside.
            self.lake = open_lake(text)
            self.root = lake_state_dir(text)
        else:
            self.root = Path(root).expanduser().resolve()
            self.lake = LocalLake(self.root)
        self._state: SqliteStateStore | None = None
        self._ensured = False

    @property
    def location(self) -> str:
        """Where the result tables are (a folder or ``s3://bucket/prefix``), for messages."""
        return self.lake.url

    @property
    def on_s3(self) -> bool:
        return self.lake.local_root is None

    # -- set-up ---------------------------------------------------------------------------
    def ensure(self) -> Catalog:
        """Create the table folders and the state store; migrate a first-release catalog.

        For an S3 lake: check once that the bucket answers (a missing bucket or a wrong
        endpoint is a one-line error here, not a traceback at the first write).
        """
        if self._ensured:
            return self
        if self.on_s3:
            self.lake.exists()
            self.root.mkdir(parents=True, exist_ok=True)
        for name, schema in schemas.TABLES.items():
            self.lake.ensure(name, schema)
        if not self.on_s3:
            from edvmp_pipeline.catalog.migration import migrate_if_needed

            migrate_if_needed(self.root, self.state)
        self._ensured = True
        return self

    @property
    def state(self) -> SqliteStateStore:
        """The state store (registry, job state, incidents)."""
        if self._state is None:
            self.root.mkdir(parents=True, exist_ok=True)
            self._state = open_state_store(self.root)
        return self._state

    @property
    def db_path(self) -> Path:
        return self.root / DB_FILE

    def connect(self, sql: str | None = None) -> duckdb.DuckDBPyConnection:
        """An in-memory DuckDB connection with the catalog's views.

        In-memory, so that any number of processes can read while runs write files. The
        state views are loaded from the state store only when ``sql`` names one of them
        (all of them when ``sql`` is None): a query of results never pays for the registry.
        """
        self.ensure()
        con = duckdb.connect(":memory:")
        for name, view in self._result_views(con).items():
            con.execute(f"CREATE VIEW {name} AS {view}")
        wanted = {
            name
            for name in STATE_VIEW_SQL
            if sql is None or re.search(rf"\b{name}\b", sql, re.IGNORECASE)
        }
        sources = {STATE_SOURCES[name] for name in wanted}
        if STATE_JOBS in sources:
            # Only the columns the named views show: loading is most of such a query's cost.
            needed = {c for name in wanted for c in STATE_JOB_COLUMNS.get(name, ())}
            columns = [c for c in JOB_COLUMNS if c in needed]
            con.register(
                STATE_JOBS, _arrow(self.state.iter_jobs(columns), columns, JOB_TIME_COLUMNS)
            )
        if STATE_INCIDENTS in sources:
            con.register(
                STATE_INCIDENTS,
                _arrow(self.state.iter_incidents(), INCIDENT_COLUMNS, INCIDENT_TIME_COLUMNS),
            )
        for name in wanted:
            con.execute(f"CREATE VIEW {name} AS {STATE_VIEW_SQL[name]}")
        return con

    def _result_views(self, con: duckdb.DuckDBPyConnection) -> dict[str, str]:
        """The result views' SQL on ``con``: over the Parquet files by glob for a folder;
        for an S3 lake over pyarrow datasets registered on ``con`` (DuckDB scans them
        through Arrow, reading only the columns and row groups a query needs)."""
        if not self.on_s3:
            return result_view_sql(self.root)
        sources = {}
        for table, schema in schemas.TABLES.items():
            name = f"_lake_{table}"
            con.register(name, self.lake.dataset(table, schema))
            sources[table] = name
        return result_view_sql(sources=sources)

    def write_database_file(self) -> bool:
        """(Re)create the DuckDB file's result views so other DuckDB clients can open it.

        The file holds views over the Parquet tables only; ``jobs``, ``objects`` and
        ``incidents`` live in ``state.sqlite`` (``edvmp query`` shows them, and a DuckDB
        client that can load the ``sqlite`` extension can ATTACH it). Returns False when
        another process holds the file, and for an S3 lake (a DuckDB client elsewhere could
        not read ``s3://`` without the ``httpfs`` extension; Athena or ``edvmp query`` can).
        """
        if self.on_s3:
            return False
        self.ensure()
        try:
            con = duckdb.connect(str(self.db_path))
        except duckdb.IOException:
            return False
        try:
            for name, sql in result_view_sql(self.root).items():
                con.execute(f"CREATE OR REPLACE VIEW {name} AS {sql}")
            # Views of the first release that now live in the state store.
            for name in (*STATE_VIEW_SQL, "job_events", "incident_events"):
                con.execute(f"DROP VIEW IF EXISTS {name}")
        finally:
            con.close()
        return True

    def query(self, sql: str, params: Sequence[Any] | None = None) -> tuple[list[str], list[tuple]]:
        """Run one SQL statement on the views; returns (column names, rows)."""

        def run() -> tuple[list[str], list[tuple]]:
            con = self.connect(sql)
            try:
                cur = con.execute(sql, params or [])
                if cur.description is None:
                    return [], []
                return [d[0] for d in cur.description], cur.fetchall()
            finally:
                con.close()

        return retry_on_vanished_file(run)

    def read_only_query(
        self, sql: str, *, timeout_s: float | None = None
    ) -> tuple[list[str], list[tuple]]:
        """Run a person's SQL (``edvmp query``) on the views, unable to change or read
        anything else; returns (column names, rows).

        Raises ``ConfigError`` for anything but one SELECT or EXPLAIN
        [ANALYZE] of one, and ``duckdb.PermissionException`` when the statement reaches for a
        file or URL outside the catalog's result tables. With ``timeout_s`` the statement is
        interrupted after that long (``duckdb.InterruptException``): one SQL line can keep
        every core busy for hours.
        """
        require_read_only(sql)
        # Only the result tables' folders: the views read nothing else from disk (the state
        # views are Arrow tables already in memory), so neither state.sqlite nor any host
        # file is readable.
        readable = [self.root / table for table in schemas.TABLES] if not self.on_s3 else []

        def run() -> tuple[list[str], list[tuple]]:
            with tempfile.TemporaryDirectory(prefix="edvmp-query-") as spill:
                con = self.connect(sql)
                try:
                    _lock_down(con, readable, Path(spill))
                    timer = threading.Timer(timeout_s, con.interrupt) if timeout_s else None
                    if timer is not None:
                        timer.daemon = True
                        timer.start()
                    try:
                        cur = con.execute(sql)
                        if cur.description is None:
                            return [], []
                        return [d[0] for d in cur.description], cur.fetchall()
                    finally:
                        if timer is not None:
                            timer.cancel()
                finally:
                    con.close()

        return retry_on_vanished_file(run)

    # -- named queries for the CLI (tables to render) ------------------------------------
    @staticmethod
    def _incident_filter(open_only: bool, failure_class: str | None) -> tuple[str, list[Any]]:
        clauses, params = [], []
        if open_only:
            clauses.append("status = 'OPEN'")
        if failure_class:
            clauses.append('"class" = ?')
            params.append(failure_class)
        return (" WHERE " + " AND ".join(clauses) if clauses else ""), params

    def incident_list(
        self, *, open_only: bool = False, failure_class: str | None = None
    ) -> tuple[list[str], list[tuple]]:
        """Incidents, newest first (what ``edvmp incidents`` prints)."""
        where, params = self._incident_filter(open_only, failure_class)
        return self.query(
            # bandit B608 waived: spliced names are catalog constants, values are bound
            "SELECT incident_id, class, retryable, status, object_key, etag, message, attempts, "  # nosec B608
            "redrives, first_seen, last_seen, partition_key, fingerprint, action, runbook "
            f"FROM incidents{where} ORDER BY last_seen DESC",
            params,
        )

    def incident_summary(
        self, *, open_only: bool = False, failure_class: str | None = None
    ) -> tuple[list[str], list[tuple]]:
        """Incidents grouped by class and fingerprint: the page on-call reads first."""
        where, params = self._incident_filter(open_only, failure_class)
        return self.query(
            # bandit B608 waived: spliced names are catalog constants, values are bound
            f"""
            SELECT "class", count(*) AS incidents, count(DISTINCT object_key) AS objects,
                   count(*) FILTER (WHERE status = 'OPEN') AS open,
                   bool_or(retryable) AS retryable, min(first_seen) AS first_seen,
                   max(last_seen) AS last_seen, any_value(message) AS example,
                   list(DISTINCT object_key ORDER BY object_key)[1:5] AS affected,
                   any_value(action) AS action, any_value(runbook) AS runbook, fingerprint
            FROM incidents{where}
            GROUP BY "class", fingerprint
            ORDER BY open DESC, incidents DESC, "class"
            """,  # nosec B608
            params,
        )

    def video_table(self) -> list[dict[str, Any]]:
        """Every version's ``videos`` row, by object key (what ``edvmp check`` evaluates)."""
        cols, rows = self.query("SELECT * FROM videos ORDER BY object_key, partition_key")
        return [dict(zip(cols, r, strict=True)) for r in rows]

    # -- registration and job state -------------------------------------------------------
    def register(self, versions: Iterable[tuple[str, ObjectVersion]], registered_by: str) -> int:
        """Record new versions (``(partition_key, version)`` pairs) as PENDING jobs; returns
        how many were new."""
        return len(self.state.register(versions, registered_by))

    def job_states(self, partition_keys: Sequence[str]) -> dict[str, JobState]:
        """Current job state per version (batched keyed reads; unknown keys absent)."""
        return self.state.get_many(partition_keys)

    def job(self, partition_key: str) -> JobState | None:
        """One version's job state (a point read)."""
        return self.state.get(partition_key)

    def versions(self, partition_keys: Sequence[str]) -> dict[str, ObjectVersion]:
        """Look up registered versions by partition key (unknown keys are absent)."""
        return {pk: s.version for pk, s in self.state.get_many(partition_keys).items()}

    # -- results --------------------------------------------------------------------------
    def _append(
        self, table: str, rows: Sequence[Mapping[str, Any]], *, stem: str | None = None
    ) -> None:
        if not rows:
            return
        data = rows_table(schemas.TABLES[table], rows)
        self.lake.write(table, f"{stem or new_stem()}.parquet", data)
        maybe_compact(self.lake, table)

    def write_results(
        self,
        results: Sequence[tuple[str, ObjectVersion, VideoRecord]],
        *,
        run_id: str | None,
    ) -> str | None:
        """Land probed records: one ``videos`` file and one ``streams`` file for the batch.

        Returns the file stem both share (None when there was nothing to write), which the
        state store keeps as each version's ``result_file``.
        """
        if not results:
            return None
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
        stem = new_stem()
        # Streams first: a reader that sees a video row can always find its streams.
        self._append("streams", stream_rows, stem=stem)
        self._append("videos", video_rows, stem=stem)
        return stem

    def _scan_by_key(
        self, table: str, partition_keys: Sequence[str]
    ) -> tuple[list[str], list[tuple]]:
        """The newest rows of ``table`` for these versions, searching every file of it."""
        if not partition_keys:
            return [], []
        if self.on_s3:
            return retry_on_vanished_file(lambda: self._scan_lake_by_key(table, partition_keys))

        def run() -> tuple[list[str], list[tuple]]:
            files = self.lake.files(table)
            if not files:
                return [], []
            con = duckdb.connect(":memory:")
            try:
                src = (
                    "(SELECT * FROM read_parquet(?, union_by_name = true) "
                    "WHERE partition_key IN (SELECT unnest(?)))"
                )
                cur = con.execute(newest(table, src), [files, list(partition_keys)])
                return [d[0] for d in cur.description], cur.fetchall()
            finally:
                con.close()

        return retry_on_vanished_file(run)

    def _scan_lake_by_key(
        self, table: str, partition_keys: Sequence[str]
    ) -> tuple[list[str], list[tuple]]:
        """:meth:`_scan_by_key` on S3: pyarrow filters by key (row-group statistics skip the
        rest of each sorted, merged file), DuckDB keeps the newest row per key."""
        import pyarrow.dataset as ds

        files = self.lake.files(table)
        if not files:
            return [], []
        wanted = pa.array(list(partition_keys), pa.string())
        found = self.lake.dataset(table, schemas.TABLES[table], files).to_table(
            filter=ds.field("partition_key").isin(wanted)
        )
        con = duckdb.connect(":memory:")
        try:
            con.register("_found", found)
            cur = con.execute(newest(table, "_found"))
            return [d[0] for d in cur.description], cur.fetchall()
        finally:
            con.close()

    def _rows_by_key(self, table: str, partition_keys: Sequence[str]) -> list[dict[str, Any]]:
        """The newest rows of ``table`` (``videos`` or ``streams``) for these versions.

        The state store names the file each version's results were written to; while that
        file exists (until a compaction merges it, usually long after the run), it is the only
        one read. Versions whose file is gone are searched for across the table.
        """
        keys = list(dict.fromkeys(partition_keys))
        by_file: dict[str, list[str]] = {}
        for pk, state in self.job_states(keys).items():
            if state.result_file:
                by_file.setdefault(state.result_file, []).append(pk)
        rows: list[dict[str, Any]] = []
        found: set[str] = set()
        for stem, wanted in by_file.items():
            try:
                data = self.lake.read(self.lake.path(table, f"{stem}.parquet"))
            except FileNotFoundError:
                continue
            mask = pc.is_in(data.column("partition_key"), value_set=pa.array(wanted, pa.string()))
            part = data.filter(mask).to_pylist()
            rows += part
            found.update(r["partition_key"] for r in part)
        missing = [pk for pk in keys if pk not in found]
        if missing:
            cols, values = self._scan_by_key(table, missing)
            rows += [dict(zip(cols, v, strict=True)) for v in values]
        return rows

    def video_rows(self, partition_keys: Sequence[str]) -> list[dict[str, Any]]:
        """The ``videos`` row of each of these versions that has one, by object key."""
        out = [
            {k: v for k, v in row.items() if k != "run_id"}
            for row in self._rows_by_key("videos", partition_keys)
        ]
        return sorted(out, key=lambda r: (r["object_key"], r["partition_key"]))

    def summary_row(self, partition_key: str) -> dict[str, Any] | None:
        """The newest ``summaries`` row of one version (without its run id)."""
        cols, rows = self._scan_by_key("summaries", [partition_key])
        if not rows:
            return None
        return {c: v for c, v in zip(cols, rows[0], strict=True) if c != "run_id"}

    def check_rows(self, partition_key: str) -> list[dict[str, Any]]:
        """The newest result of each rule on one version, by rule id."""
        cols, rows = self._scan_by_key("checks", [partition_key])
        out = [{c: v for c, v in zip(cols, r, strict=True) if c != "run_id"} for r in rows]
        return sorted(out, key=lambda r: r["rule_id"])

    def stream_rows(self, partition_key: str, processed_at: Any) -> list[dict[str, Any]]:
        """The streams landed with one version's ``videos`` row (same ``processed_at``)."""
        rows = self._rows_by_key("streams", [partition_key])
        out = [r for r in rows if r["processed_at"] == processed_at]
        return sorted(out, key=lambda r: r.get("stream_index") or 0)

    def summary_of(self, partition_key: str) -> str | None:
        """The newest summary text of one version."""
        cols, rows = self._scan_by_key("summaries", [partition_key])
        return rows[0][cols.index("summary")] if rows else None

    def video_records(
        self, partition_keys: Sequence[str]
    ) -> dict[str, tuple[ObjectVersion, VideoRecord]]:
        """The catalogued record of each version (its newest ``videos`` row and the streams
        written with it), rebuilt as the prober returned it. Versions without one are absent.
        """
        rows = self.video_rows(partition_keys)
        if not rows:
            return {}
        stream_rows = self._rows_by_key("streams", [r["partition_key"] for r in rows])
        processed = {r["partition_key"]: r["processed_at"] for r in rows}
        stream_names = [f.name for f in fields(StreamRecord)]
        streams: dict[str, list[StreamRecord]] = {}
        for row in stream_rows:
            # Only the streams landed with the row: a re-probe that found fewer streams
            # leaves older stream rows behind, with an older processed_at.
            if row["processed_at"] != processed[row["partition_key"]]:
                continue
            streams.setdefault(row["partition_key"], []).append(
                StreamRecord(**{name: row.get(name) for name in stream_names})
            )
        scalar_names = [f.name for f in fields(VideoRecord) if f.name not in ("tags", "streams")]
        records: dict[str, tuple[ObjectVersion, VideoRecord]] = {}
        for row in rows:
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
                streams=tuple(sorted(streams.get(pk, ()), key=lambda s: s.stream_index or 0)),
            )
            records[pk] = (version, record)
        return records

    def write_summaries(self, rows: Iterable[Mapping[str, Any]], *, run_id: str | None) -> int:
        """Land summaries (``schemas.SUMMARIES`` columns) as one file; returns the row count."""
        now = utcnow()
        batch = [{**row, "created_at": now, "run_id": run_id} for row in rows]
        self._append("summaries", batch)
        self.state.mark_done("summary", [r["partition_key"] for r in batch])
        return len(batch)

    def write_checks(
        self,
        rows: Iterable[Mapping[str, Any]],
        *,
        run_id: str | None,
        complete: Sequence[str] = (),
    ) -> int:
        """Land compliance results (``schemas.CHECKS`` columns) as one file; ``complete``
        names the versions now checked against every rule of the policy."""
        now = utcnow()
        batch = [{**row, "checked_at": now, "run_id": run_id} for row in rows]
        self._append("checks", batch)
        self.state.mark_done("checked", complete)
        return len(batch)

    def file_count(self) -> int:
        """Data files of every result table (what the benchmark and tests watch)."""
        return sum(len(self.lake.files(t)) for t in schemas.TABLES)
