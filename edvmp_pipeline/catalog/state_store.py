"""The state store: registry and processing state of every object version, and incidents.

One row per object version (``versions``) and one per incident (``incidents``), with keyed
point reads and conditional writes: a version is inserted only if absent, moved to RUNNING
only by the claim that wins, and to SUCCEEDED/FAILED only by the run that holds it. This is
the one home of those facts; the Parquet tables hold analytic results, Dagster holds runs.

Local default: SQLite in WAL mode (readers never block the writer, a busy timeout instead of
"database is locked"), one file next to the Parquet tables. The :class:`StateStore` protocol
is what callers use, so that DynamoDB (conditional ``PutItem``/``UpdateItem``) or Postgres
(``INSERT ... ON CONFLICT``, ``UPDATE ... WHERE status = ...``) can take its place without
changing them. Every operation is keyed by partition key, run id or incident id, or bounded
by a ``LIMIT``: none scans the history on a hot path.
"""

from __future__ import annotations

import contextlib
import os
import socket
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, fields
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from edvmp_pipeline.catalog import operational_counters as counters
from edvmp_pipeline.catalog import upload_jobs
from edvmp_pipeline.catalog.claimants import pid_alive
from edvmp_pipeline.catalog.upload_jobs import UploadJob
from edvmp_pipeline.domain.fingerprints import Fingerprint, bucket_ids
from edvmp_pipeline.domain.records import ObjectVersion

PENDING, RUNNING, SUCCEEDED, FAILED = "PENDING", "RUNNING", "SUCCEEDED", "FAILED"
OPEN, RESOLVED, SUPERSEDED = "OPEN", "RESOLVED", "SUPERSEDED"

STATE_FILE = "state.sqlite"
SCHEMA_VERSION = "1"
# SQLite's default limit on host parameters is 32,766; stay far below for any build.
_CHUNK = 500


def utcnow() -> datetime:
    """The current time, timezone-aware UTC (what every catalog timestamp uses)."""
    return datetime.now(UTC)


def _us(value: datetime | None) -> int | None:
    """A timestamp as integer microseconds since the epoch (exact and sortable)."""
    if value is None:
        return None
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    delta = value - datetime(1970, 1, 1, tzinfo=UTC)
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def _dt(value: int | None) -> datetime | None:
    if value is None:
        return None
    return datetime.fromtimestamp(value // 1_000_000, UTC).replace(microsecond=value % 1_000_000)


def claimant() -> str:
    """``host:pid`` of this process: who holds a version while it is RUNNING."""
    return f"{socket.gethostname()}:{os.getpid()}"


@dataclass(frozen=True)
class JobState:
    """One object version: its identity, where its processing stands, and when."""

    partition_key: str
    status: str
    attempts: int
    error_class: str | None
    error: str | None
    source: str = ""
    object_key: str = ""
    etag: str = ""
    size_bytes: int | None = None
    last_modified: datetime | None = None
    registered_at: datetime | None = None
    registered_by: str | None = None
    run_id: str | None = None
    claimed_by: str | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    updated_at: datetime | None = None
    metadata_at: datetime | None = None
    summary_at: datetime | None = None
    checked_at: datetime | None = None
    result_file: str | None = None
    analysed_at: datetime | None = None

    @property
    def version(self) -> ObjectVersion:
        """The object version this job is about."""
        return ObjectVersion(
            source=self.source,
            object_key=self.object_key,
            etag=self.etag,
            size_bytes=self.size_bytes or 0,
            last_modified=self.last_modified,
        )


@dataclass(frozen=True)
class Incident:
    """One (version, failure fingerprint): what failed, how often, and what to do."""

    incident_id: str
    partition_key: str
    source: str | None
    object_key: str | None
    etag: str | None
    failure_class: str
    retryable: bool
    fingerprint: str
    message: str
    error_type: str | None
    action: str | None
    runbook: str | None
    max_redrives: int
    last_run_id: str | None
    next_attempt_at: datetime | None
    attempts: int
    first_seen: datetime
    last_seen: datetime
    redrives: int
    last_redrive_at: datetime | None
    status: str


@dataclass(frozen=True)
class NewIncident:
    """One version's failure in one run, as the classifier saw it."""

    incident_id: str
    partition_key: str
    version: ObjectVersion | None
    failure_class: str
    retryable: bool
    fingerprint: str
    message: str
    error_type: str | None
    action: str
    runbook: str
    max_redrives: int
    next_attempt_at: datetime | None


class StateStore(Protocol):
    """What callers need of the state store; SQLite now, DynamoDB/Postgres fit the same."""

    def meta(self, key: str) -> str | None:
        """A value of the store's own bookkeeping (None when never set)."""
        ...

    def set_meta(self, key: str, value: str) -> None: ...

    def register(
        self, versions: Iterable[tuple[str, ObjectVersion]], registered_by: str
    ) -> list[str]: ...

    def get(self, partition_key: str) -> JobState | None: ...

    def get_many(self, partition_keys: Sequence[str]) -> dict[str, JobState]: ...

    def statuses(self, partition_keys: Sequence[str]) -> dict[str, str]: ...

    def claim(
        self,
        partition_keys: Sequence[str],
        run_id: str,
        *,
        force: bool = False,
        retry_failed: bool = True,
    ) -> dict[str, JobState]: ...

    def mark_probed(
        self,
        partition_keys: Sequence[str],
        run_id: str,
        *,
        result_file: str | None = None,
        probe_seconds: Mapping[str, float] | None = None,
    ) -> list[str]: ...

    def mark_succeeded(self, partition_keys: Sequence[str], run_id: str) -> list[str]:
        """RUNNING → SUCCEEDED for the versions ``run_id`` holds (returned); resolves their
        incidents and supersedes the open incidents of older versions of the same objects."""
        ...

    def release(self, partition_keys: Sequence[str], run_id: str) -> list[str]: ...

    def record_verdicts(
        self,
        checked: Sequence[str],
        rule_ids: Sequence[str],
        failing: Mapping[str, Sequence[str]],
    ) -> None: ...

    def violation_counts(
        self, rule_ids: Sequence[str], *, sample: int = 100
    ) -> dict[str, tuple[int, list[str]]]: ...

    def index_fingerprints(self, fingerprints: Mapping[str, Fingerprint]) -> None: ...

    def fingerprints(self, partition_keys: Sequence[str]) -> dict[str, Fingerprint]: ...

    def bucket_members(self, buckets: Sequence[int], *, limit: int) -> dict[int, list[str]]: ...

    def mark_failed(self, failures: Mapping[str, tuple[str, str]], run_id: str) -> list[str]: ...

    def mark_done(self, step: str, partition_keys: Sequence[str]) -> None: ...

    def in_run(self, run_id: str) -> list[JobState]: ...

    def pending_versions(self) -> list[JobState]:
        """Every PENDING version (an index read: as many as wait to be processed)."""
        ...

    def record_incidents(
        self,
        run_id: str,
        incidents: Sequence[NewIncident],
        unfinished: Mapping[str, tuple[str, str]],
    ) -> list[str]: ...

    def incidents_of_run(self, run_id: str) -> list[str]: ...

    def failed_runs_of(self, partition_keys: Sequence[str]) -> dict[str, int]: ...

    def latest_incident(self, partition_key: str) -> Incident | None: ...

    def open_incidents(
        self,
        *,
        incident_id: str | None = None,
        failure_class: str | None = None,
        fingerprint: str | None = None,
    ) -> list[Incident]: ...

    def due_redrives(self, now: datetime, *, limit: int = 100) -> list[Incident]: ...

    def record_redrives(self, incident_ids: Sequence[str]) -> None: ...

    def status_counts(self) -> dict[str, int]: ...

    def oldest_unprocessed(self) -> datetime | None: ...

    def operational_counters(self) -> list[counters.CounterRow]: ...

    def create_upload_job(self, job: UploadJob) -> None: ...

    def upload_job(self, job_id: str) -> UploadJob | None: ...

    def upload_jobs_of(self, owner: str, *, limit: int) -> list[UploadJob]: ...

    def newest_versions_of(
        self, source: str, object_keys: Sequence[str]
    ) -> dict[str, JobState]: ...

    def recent_incidents(
        self, *, limit: int, owner: str | None = None, open_only: bool = False
    ) -> list[Incident]: ...


_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS versions (
    partition_key TEXT PRIMARY KEY,
    source TEXT NOT NULL,
    object_key TEXT NOT NULL,
    etag TEXT NOT NULL,
    size_bytes INTEGER,
    last_modified INTEGER,
    registered_at INTEGER NOT NULL,
    registered_by TEXT,
    status TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    error_class TEXT,
    error TEXT,
    run_id TEXT,
    claimed_by TEXT,
    started_at INTEGER,
    finished_at INTEGER,
    updated_at INTEGER NOT NULL,
    metadata_at INTEGER,
    summary_at INTEGER,
    checked_at INTEGER,
    -- Where the run that probed it wrote its result rows (a locator, not the data): the
    -- later steps read that one file instead of searching the table.
    result_file TEXT,
    analysed_at INTEGER
);
CREATE INDEX IF NOT EXISTS versions_by_run ON versions (run_id);
CREATE INDEX IF NOT EXISTS versions_by_object ON versions (source, object_key);
-- Counts by status and the oldest unprocessed upload (sensor lag) for /metrics: index reads.
CREATE INDEX IF NOT EXISTS versions_by_status ON versions (status, last_modified);
CREATE TABLE IF NOT EXISTS incidents (
    incident_id TEXT PRIMARY KEY,
    partition_key TEXT NOT NULL,
    source TEXT,
    object_key TEXT,
    etag TEXT,
    class TEXT NOT NULL,
    retryable INTEGER NOT NULL,
    fingerprint TEXT NOT NULL,
    message TEXT NOT NULL,
    error_type TEXT,
    action TEXT,
    runbook TEXT,
    max_redrives INTEGER NOT NULL,
    last_run_id TEXT,
    next_attempt_at INTEGER,
    attempts INTEGER NOT NULL,
    first_seen INTEGER NOT NULL,
    last_seen INTEGER NOT NULL,
    redrives INTEGER NOT NULL DEFAULT 0,
    last_redrive_at INTEGER,
    status TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS incidents_by_version ON incidents (partition_key);
CREATE INDEX IF NOT EXISTS incidents_by_due ON incidents (status, next_attempt_at);
CREATE INDEX IF NOT EXISTS incidents_by_class ON incidents (class, status);
CREATE INDEX IF NOT EXISTS incidents_by_fingerprint ON incidents (fingerprint, status);
CREATE INDEX IF NOT EXISTS incidents_by_last_seen ON incidents (last_seen);
-- Which runs each incident was seen in: recording the same failed run twice is a no-op,
-- and a version's attempt number counts its distinct failed runs.
CREATE TABLE IF NOT EXISTS incident_runs (
    run_id TEXT NOT NULL,
    incident_id TEXT NOT NULL,
    partition_key TEXT NOT NULL,
    PRIMARY KEY (run_id, incident_id)
);
CREATE INDEX IF NOT EXISTS incident_runs_by_version ON incident_runs (partition_key);
-- The current verdict of each policy rule: which versions fail it now. The checks Parquet
-- table holds the evidence (actual values, every evaluation); this is its keyed index, so
-- "how many catalogued versions fail rule R" is an index count, not a scan of the history.
CREATE TABLE IF NOT EXISTS violations (
    rule_id TEXT NOT NULL,
    partition_key TEXT NOT NULL,
    PRIMARY KEY (rule_id, partition_key)
);
-- Each analysed version's perceptual fingerprint (its one home: near-duplicate scoring reads
-- it by key), hashes as 8 big-endian bytes each, and its LSH buckets
-- (domain/fingerprints.bucket_ids): the index that finds near-duplicate candidates with one
-- keyed read per bucket.
CREATE TABLE IF NOT EXISTS fingerprints (
    partition_key TEXT PRIMARY KEY,
    rate_hz REAL NOT NULL,
    hashes BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS fingerprint_buckets (
    bucket INTEGER NOT NULL,
    partition_key TEXT NOT NULL,
    PRIMARY KEY (bucket, partition_key)
) WITHOUT ROWID;
"""

_JOB_COLUMNS = tuple(f.name for f in fields(JobState))
# The state column each later step stamps when it is done with a version's current metadata.
STEP_COLUMNS = {"summary": "summary_at", "checked": "checked_at", "analysis": "analysed_at"}
_JOB_TIMES = frozenset(
    {"last_modified", "registered_at", "started_at", "finished_at", "updated_at",
     "metadata_at", "summary_at", "checked_at", "analysed_at"}
)  # fmt: skip
_INCIDENT_COLUMNS = (
    "incident_id", "partition_key", "source", "object_key", "etag", "class", "retryable",
    "fingerprint", "message", "error_type", "action", "runbook", "max_redrives", "last_run_id",
    "next_attempt_at", "attempts", "first_seen", "last_seen", "redrives", "last_redrive_at",
    "status",
)  # fmt: skip
_INCIDENT_TIMES = frozenset({"next_attempt_at", "first_seen", "last_seen", "last_redrive_at"})

_initialised: set[str] = set()
_init_lock = threading.Lock()
_connections = threading.local()


def _chunks(items: Sequence[Any]) -> Iterator[Sequence[Any]]:
    for i in range(0, len(items), _CHUNK):
        yield items[i : i + _CHUNK]


def _marks(n: int) -> str:
    return ",".join("?" * n)


def _rows_for_keys(con: sqlite3.Connection, sql: str, keys: Sequence[str]) -> Iterator[Any]:
    """Rows of ``sql`` (whose ``{keys}`` is an IN list) for ``keys``, in bounded chunks."""
    for chunk in _chunks(list(dict.fromkeys(keys))):
        yield from con.execute(sql.format(keys=_marks(len(chunk))), list(chunk))


def _job(row: sqlite3.Row) -> JobState:
    values = {name: row[name] for name in _JOB_COLUMNS}
    for name in _JOB_TIMES:
        values[name] = _dt(values[name])
    return JobState(**values)


def _newer(a: JobState, b: JobState) -> bool:
    """Whether version ``a`` of an object is newer than ``b`` (uploaded, then registered)."""
    never = datetime.min.replace(tzinfo=UTC)
    return (a.last_modified or never, a.registered_at or never) > (
        b.last_modified or never,
        b.registered_at or never,
    )


def _upload_job(row: sqlite3.Row) -> UploadJob:
    return UploadJob(
        **{c: _dt(row[c]) if c in upload_jobs.TIMES else row[c] for c in upload_jobs.COLUMNS}
    )


def _incident(row: sqlite3.Row) -> Incident:
    values = {name: row[name] for name in _INCIDENT_COLUMNS}
    for name in _INCIDENT_TIMES:
        values[name] = _dt(values[name])
    values["failure_class"] = values.pop("class")
    values["retryable"] = bool(values["retryable"])
    return Incident(**values)


# Columns added to ``versions`` after its first release: (name, SQL type). A store created
# before them gets them added in place (ADD COLUMN is cheap: existing rows read NULL).
_ADDED_COLUMNS = (("analysed_at", "INTEGER"),)


def _add_missing_columns(con: sqlite3.Connection) -> None:
    have = {row[1] for row in con.execute("PRAGMA table_info(versions)")}
    for name, kind in _ADDED_COLUMNS:
        if name not in have:
            with contextlib.suppress(sqlite3.OperationalError):  # a racing first user added it
                con.execute(f"ALTER TABLE versions ADD COLUMN {name} {kind}")


class SqliteStateStore:
    """The state store in one SQLite file (WAL). Cheap to create.

    Each thread keeps one open connection per file: closing the last connection of a WAL
    database checkpoints and deletes the log, which would cost a millisecond per call. A
    forked child (Dagster's run workers) opens its own.
    """

    def __init__(self, path: Path | str, *, busy_timeout_s: float = 30.0) -> None:
        self.path = Path(path)
        self._timeout = busy_timeout_s
        self._key = str(self.path.resolve())
        if self._key not in _initialised:
            with _init_lock:
                if self._key not in _initialised:
                    self._create()
                    _initialised.add(self._key)

    # -- connection -----------------------------------------------------------------------
    def _open(self) -> sqlite3.Connection:
        con = sqlite3.connect(
            self.path, timeout=self._timeout, isolation_level=None, check_same_thread=False
        )
        con.row_factory = sqlite3.Row
        con.execute(f"PRAGMA busy_timeout = {int(self._timeout * 1000)}")
        # WAL with synchronous=NORMAL: a commit survives a killed process; only an OS crash
        # or power loss can lose the last transactions, never corrupt the file.
        con.execute("PRAGMA synchronous = NORMAL")
        return con

    def _connection(self) -> sqlite3.Connection:
        pool = _connections.__dict__.setdefault("by_path", {})
        held = pool.get(self._key)
        if held is not None and held[0] == os.getpid():
            return held[1]
        con = self._open()
        pool[self._key] = (os.getpid(), con)
        return con

    def _create(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # Racing first users (two ingests on a fresh home) can meet SQLITE_BUSY where the
        # busy timeout does not apply: switching a new file to WAL needs it exclusive. Every
        # statement below is idempotent, so the loser simply tries again.
        deadline = time.monotonic() + self._timeout
        delay = 0.01
        while True:
            try:
                self._create_once()
                return
            except sqlite3.OperationalError as exc:
                busy = "locked" in str(exc) or "busy" in str(exc)
                if not busy or time.monotonic() + delay > deadline:
                    raise
                time.sleep(delay)
                delay = min(delay * 2, 0.5)

    def _create_once(self) -> None:
        con = self._open()
        try:
            # WAL is a property of the file: set once, kept by every later connection.
            if con.execute("PRAGMA journal_mode").fetchone()[0].lower() != "wal":
                con.execute("PRAGMA journal_mode = WAL")
            con.executescript(_SCHEMA)
            _add_missing_columns(con)
            con.executescript(counters.SCHEMA)
            con.executescript(upload_jobs.SCHEMA)
            con.execute(
                "INSERT OR IGNORE INTO meta (key, value) VALUES ('schema_version', ?)",
                [SCHEMA_VERSION],
            )
        finally:
            con.close()

    @contextmanager
    def _read(self) -> Iterator[sqlite3.Connection]:
        yield self._connection()

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One transaction that takes the write lock at once (no lock-upgrade deadlocks)."""
        con = self._connection()
        con.execute("BEGIN IMMEDIATE")
        try:
            yield con
        except BaseException:
            con.execute("ROLLBACK")
            raise
        con.execute("COMMIT")

    # -- meta -----------------------------------------------------------------------------
    def meta(self, key: str) -> str | None:
        """A value of the store's own bookkeeping (schema version, migrations)."""
        with self._read() as con:
            row = con.execute("SELECT value FROM meta WHERE key = ?", [key]).fetchone()
        return row[0] if row else None

    def set_meta(self, key: str, value: str) -> None:
        """Set a bookkeeping value."""
        with self._write() as con:
            con.execute(
                "INSERT INTO meta (key, value) VALUES (?, ?) "
                "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                [key, value],
            )

    # -- versions -------------------------------------------------------------------------
    def register(
        self, versions: Iterable[tuple[str, ObjectVersion]], registered_by: str
    ) -> list[str]:
        """Insert versions that are absent as PENDING; returns the keys actually inserted.

        A version seen again (re-listing, duplicate event, two sensors) changes nothing.
        """
        now = _us(utcnow())
        inserted: list[str] = []
        pairs = list(versions)
        if not pairs:
            return inserted
        with self._write() as con:
            for pk, v in pairs:
                cur = con.execute(
                    "INSERT INTO versions (partition_key, source, object_key, etag, size_bytes, "
                    "last_modified, registered_at, registered_by, status, updated_at) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (partition_key) DO NOTHING",
                    [pk, v.source, v.object_key, v.etag, v.size_bytes, _us(v.last_modified),
                     now, registered_by, PENDING, now],
                )  # fmt: skip
                if cur.rowcount:
                    inserted.append(pk)
        return inserted

    def get(self, partition_key: str) -> JobState | None:
        """One version by partition key (a primary-key read)."""
        with self._read() as con:
            row = con.execute(
                "SELECT * FROM versions WHERE partition_key = ?", [partition_key]
            ).fetchone()
        return _job(row) if row else None

    def get_many(self, partition_keys: Sequence[str]) -> dict[str, JobState]:
        """Versions by partition key, in batched primary-key reads (unknown keys absent)."""
        with self._read() as con:
            rows = _rows_for_keys(
                con, "SELECT * FROM versions WHERE partition_key IN ({keys})", partition_keys
            )
            return {row["partition_key"]: _job(row) for row in rows}

    def statuses(self, partition_keys: Sequence[str]) -> dict[str, str]:
        """Only the status of each known version (what a sensor tick needs), batched."""
        with self._read() as con:
            sql = "SELECT partition_key, status FROM versions WHERE partition_key IN ({keys})"
            return {row[0]: row[1] for row in _rows_for_keys(con, sql, partition_keys)}

    def claim(
        self,
        partition_keys: Sequence[str],
        run_id: str,
        *,
        force: bool = False,
        retry_failed: bool = True,
    ) -> dict[str, JobState]:
        """Move the claimable versions to RUNNING for ``run_id``; returns what was claimed.

        Claimable: PENDING, FAILED (unless not ``retry_failed``: an ingest that saw the version
        PENDING must not redo it when a racing ingest failed it meanwhile), already held by
        this run, RUNNING under a process of
        this host that is gone (killed, out of memory), or SUCCEEDED when ``force``. A version
        RUNNING under a live claimant is left alone, so two ingests or a sensor run and an
        ingest racing on one version process it once.
        """
        keys = list(dict.fromkeys(partition_keys))
        host = socket.gethostname()
        me = claimant()
        now = _us(utcnow())
        claimed: dict[str, JobState] = {}
        with self._write() as con:
            for chunk in _chunks(keys):
                rows = con.execute(
                    # bandit B608 waived: spliced names are catalog constants, values are bound
                    f"SELECT partition_key, status, run_id, claimed_by FROM versions "  # nosec B608
                    f"WHERE partition_key IN ({_marks(len(chunk))})",
                    list(chunk),
                ).fetchall()
                takeable = []
                for row in rows:
                    status, holder = row["status"], row["claimed_by"] or ""
                    if (
                        status == PENDING
                        or (status == FAILED and retry_failed)
                        or (force and status == SUCCEEDED)
                    ):
                        takeable.append(row["partition_key"])
                    elif status == RUNNING:
                        holder_host, _, pid = holder.rpartition(":")
                        mine = row["run_id"] == run_id
                        dead = holder_host == host and pid.isdigit() and not pid_alive(int(pid))
                        if mine or dead or not holder:
                            takeable.append(row["partition_key"])
                for pk in takeable:
                    cur = con.execute(
                        "UPDATE versions SET status = ?, run_id = ?, claimed_by = ?, "
                        "attempts = attempts + 1, started_at = ?, finished_at = NULL, "
                        "error_class = NULL, error = NULL, updated_at = ? "
                        "WHERE partition_key = ? RETURNING *",
                        [RUNNING, run_id, me, now, now, pk],
                    )
                    row = cur.fetchone()
                    if row is not None:
                        claimed[pk] = _job(row)
        return claimed

    def mark_probed(
        self,
        partition_keys: Sequence[str],
        run_id: str,
        *,
        result_file: str | None = None,
        probe_seconds: Mapping[str, float] | None = None,
    ) -> list[str]:
        """Record that this run landed the metadata of versions it holds (still RUNNING).

        ``result_file`` names the files the results were written to (see ``Catalog``). The
        version is not SUCCEEDED yet: that waits for its summary and checks.
        ``probe_seconds`` (partition key → seconds) feeds the probe duration histogram.
        """
        now = _us(utcnow())
        done = []
        with self._write() as con:
            for pk in dict.fromkeys(partition_keys):
                cur = con.execute(
                    "UPDATE versions SET metadata_at = ?, result_file = ?, updated_at = ? "
                    "WHERE partition_key = ? AND status = ? AND run_id = ?",
                    [now, result_file, now, pk, RUNNING, run_id],
                )
                if cur.rowcount:
                    done.append(pk)
            if probe_seconds:
                durations = [probe_seconds[pk] for pk in done if pk in probe_seconds]
                counters.observe(con, counters.PROBE_DURATION, durations, counters.PROBE_BUCKETS)
        return done

    def mark_succeeded(self, partition_keys: Sequence[str], run_id: str) -> list[str]:
        """RUNNING → SUCCEEDED, only for versions this run holds; resolves their incidents
        and supersedes the open incidents of older versions of the same objects."""
        now = _us(utcnow())
        assert now is not None
        done = []
        latencies = []
        with self._write() as con:
            for pk in dict.fromkeys(partition_keys):
                row = con.execute(
                    "UPDATE versions SET status = ?, finished_at = ?, updated_at = ?, "
                    "claimed_by = NULL "
                    "WHERE partition_key = ? AND status = ? AND run_id = ? "
                    "RETURNING coalesce(last_modified, registered_at)",
                    [SUCCEEDED, now, now, pk, RUNNING, run_id],
                ).fetchone()
                if row is not None:
                    done.append(pk)
                    latencies.append((now - row[0]) / 1e6)
                    con.execute(
                        "UPDATE incidents SET status = ? WHERE partition_key = ? AND status != ?",
                        [RESOLVED, pk, RESOLVED],
                    )
                    # A good new version of the object replaces the broken older ones: their
                    # open incidents are over (a redrive of them could only fail).
                    con.execute(
                        "UPDATE incidents SET status = ? WHERE status = ? AND partition_key IN ("
                        " SELECT o.partition_key FROM versions v JOIN versions o"
                        " ON o.source = v.source AND o.object_key = v.object_key"
                        " WHERE v.partition_key = ? AND o.partition_key != v.partition_key"
                        # The order of _newer: upload time (none sorts first), then registration.
                        " AND (coalesce(o.last_modified, -1), o.registered_at)"
                        " < (coalesce(v.last_modified, -1), v.registered_at))",
                        [SUPERSEDED, OPEN, pk],
                    )
            if done:
                counters.bump(con, counters.FINISHED, len(done), {"status": SUCCEEDED})
                counters.observe(
                    con, counters.UPLOAD_TO_SUCCEEDED, latencies, counters.LATENCY_BUCKETS
                )
        return done

    def release(self, partition_keys: Sequence[str], run_id: str) -> list[str]:
        """RUNNING → PENDING for versions this run holds but did not finish (an asset of
        theirs was not selected): the next ingest, redrive or sensor pass completes them."""
        now = _us(utcnow())
        done = []
        with self._write() as con:
            for pk in dict.fromkeys(partition_keys):
                cur = con.execute(
                    "UPDATE versions SET status = ?, updated_at = ?, claimed_by = NULL "
                    "WHERE partition_key = ? AND status = ? AND run_id = ?",
                    [PENDING, now, pk, RUNNING, run_id],
                )
                if cur.rowcount:
                    done.append(pk)
        return done

    def record_verdicts(
        self,
        checked: Sequence[str],
        rule_ids: Sequence[str],
        failing: Mapping[str, Sequence[str]],
    ) -> None:
        """Replace the verdicts of ``rule_ids`` for the ``checked`` versions: the versions in
        ``failing[rule_id]`` fail that rule now, the other checked ones pass it."""
        keys = list(dict.fromkeys(checked))
        rules = list(dict.fromkeys(rule_ids))
        # Half a chunk of each: both IN lists together stay within _CHUNK parameters. One
        # DELETE per (versions, rules) block instead of one per rule and versions chunk: a
        # policy of hundreds of rules was hundreds of statements per chunk.
        half = _CHUNK // 2
        with self._write() as con:
            for k in range(0, len(keys), half):
                key_chunk = keys[k : k + half]
                for r in range(0, len(rules), half):
                    rule_chunk = rules[r : r + half]
                    con.execute(
                        # bandit B608 waived: spliced names are catalog constants, values are bound
                        f"DELETE FROM violations WHERE rule_id IN ({_marks(len(rule_chunk))}) "  # nosec B608
                        f"AND partition_key IN ({_marks(len(key_chunk))})",
                        [*rule_chunk, *key_chunk],
                    )
            con.executemany(
                "INSERT OR IGNORE INTO violations (rule_id, partition_key) VALUES (?, ?)",
                [(rule_id, pk) for rule_id in rules for pk in failing.get(rule_id, ())],
            )

    # -- fingerprint index ----------------------------------------------------------------
    def index_fingerprints(self, fingerprints: Mapping[str, Fingerprint]) -> None:
        """Store each version's fingerprint (replacing an older one) and index its buckets."""
        with self._write() as con:
            con.executemany(
                "INSERT OR REPLACE INTO fingerprints (partition_key, rate_hz, hashes) "
                "VALUES (?, ?, ?)",
                [(pk, fp.rate_hz, fp.to_bytes()) for pk, fp in fingerprints.items()],
            )
            con.executemany(
                "INSERT OR IGNORE INTO fingerprint_buckets (bucket, partition_key) VALUES (?, ?)",
                [(b, pk) for pk, fp in fingerprints.items() for b in bucket_ids(fp)],
            )

    def fingerprints(self, partition_keys: Sequence[str]) -> dict[str, Fingerprint]:
        """The stored fingerprint of each of these versions that has one (keyed reads)."""
        with self._read() as con:
            return {
                pk: Fingerprint.from_bytes(rate, data)
                for pk, rate, data in _rows_for_keys(
                    con,
                    "SELECT partition_key, rate_hz, hashes FROM fingerprints "
                    "WHERE partition_key IN ({keys})",
                    partition_keys,
                )
            }

    def bucket_members(self, buckets: Sequence[int], *, limit: int) -> dict[int, list[str]]:
        """The versions in each bucket (primary-key range reads); a bucket holding more than
        ``limit`` versions is left out, so one lookup reads at most ``limit`` per bucket
        whatever the size of the index."""
        wanted = [int(b) for b in dict.fromkeys(buckets)]
        out: dict[int, list[str]] = {}
        with self._read() as con:
            for chunk in _chunks(wanted):
                marks = _marks(len(chunk))
                small = [
                    b
                    for b, n in con.execute(
                        # bandit B608 waived: only placeholders are spliced, values are bound
                        f"SELECT bucket, count(*) FROM fingerprint_buckets WHERE bucket IN "  # nosec B608
                        f"({marks}) GROUP BY bucket",
                        list(chunk),
                    )
                    if n <= limit
                ]
                if not small:
                    continue
                for b, pk in con.execute(
                    # bandit B608 waived: only placeholders are spliced, values are bound
                    "SELECT bucket, partition_key FROM fingerprint_buckets WHERE bucket IN "  # nosec B608
                    f"({_marks(len(small))})",
                    small,
                ):
                    out.setdefault(b, []).append(pk)
        return out

    def violation_counts(
        self, rule_ids: Sequence[str], *, sample: int = 100
    ) -> dict[str, tuple[int, list[str]]]:
        """Per rule: how many catalogued versions fail it now, and up to ``sample`` of their
        object keys (index reads: the cost is the number of violations, not the catalog)."""
        rules = list(dict.fromkeys(rule_ids))
        counts: dict[str, int] = {}
        with self._read() as con:
            # One grouped count per chunk of rules; then a sample only for the rules that
            # have violations (most rules of a policy most of the time have none).
            for chunk in _chunks(rules):
                counts.update(
                    con.execute(
                        # bandit B608 waived: spliced names are catalog constants, values are bound
                        f"SELECT rule_id, count(*) FROM violations "  # nosec B608
                        f"WHERE rule_id IN ({_marks(len(chunk))}) GROUP BY rule_id",
                        list(chunk),
                    ).fetchall()
                )
            out: dict[str, tuple[int, list[str]]] = {}
            for rule_id in rules:
                count = counts.get(rule_id, 0)
                keys = []
                if count:
                    keys = [
                        row[0]
                        for row in con.execute(
                            "SELECT v.object_key FROM violations x JOIN versions v "
                            "ON v.partition_key = x.partition_key WHERE x.rule_id = ? "
                            "ORDER BY v.object_key LIMIT ?",
                            [rule_id, sample],
                        )
                    ]
                out[rule_id] = (count, keys)
        return out

    def mark_failed(self, failures: Mapping[str, tuple[str, str]], run_id: str) -> list[str]:
        """→ FAILED with (class, message), only for versions this run holds or finished."""
        now = _us(utcnow())
        done = []
        with self._write() as con:
            for pk, (error_class, error) in failures.items():
                cur = con.execute(
                    "UPDATE versions SET status = ?, error_class = ?, error = ?, "
                    "finished_at = ?, updated_at = ?, claimed_by = NULL "
                    "WHERE partition_key = ? AND run_id = ? AND status IN (?, ?)",
                    [FAILED, error_class, error, now, now, pk, run_id, RUNNING, SUCCEEDED],
                )
                if cur.rowcount:
                    done.append(pk)
            if done:
                counters.bump(con, counters.FINISHED, len(done), {"status": FAILED})
        return done

    def mark_done(self, step: str, partition_keys: Sequence[str]) -> None:
        """Record that ``step`` ("summary", "checked" or "analysis") finished for these
        versions."""
        column = STEP_COLUMNS[step]
        now = _us(utcnow())
        with self._write() as con:
            con.executemany(
                # bandit B608 waived: spliced names are catalog constants, values are bound
                f"UPDATE versions SET {column} = ?, updated_at = ? WHERE partition_key = ?",  # nosec B608
                [(now, now, pk) for pk in dict.fromkeys(partition_keys)],
            )

    def in_run(self, run_id: str) -> list[JobState]:
        """The versions whose latest processing is this run (an index read on run id)."""
        with self._read() as con:
            rows = con.execute(
                "SELECT * FROM versions WHERE run_id = ? ORDER BY partition_key", [run_id]
            ).fetchall()
        return [_job(r) for r in rows]

    def pending_versions(self) -> list[JobState]:
        """Every PENDING version (an index read: as many as wait to be processed)."""
        with self._read() as con:
            rows = con.execute(
                "SELECT * FROM versions WHERE status = ? ORDER BY partition_key", [PENDING]
            ).fetchall()
        return [_job(r) for r in rows]

    def iter_jobs(
        self, columns: Sequence[str] = _JOB_COLUMNS, batch: int = 10_000
    ) -> Iterator[list[tuple]]:
        """Every version as raw rows of ``columns`` (for the query layer)."""
        unknown = set(columns) - set(_JOB_COLUMNS)
        if unknown:
            raise ValueError(f"not a versions column: {sorted(unknown)}")
        with self._read() as con:
            cur = con.cursor()
            cur.row_factory = None  # plain tuples: ~3x faster than sqlite3.Row for bulk reads
            # bandit B608 waived: spliced names are catalog constants, values are bound
            cur.execute(f"SELECT {', '.join(columns)} FROM versions")  # nosec B608
            while rows := cur.fetchmany(batch):
                yield rows

    # -- incidents ------------------------------------------------------------------------
    def incidents_of_run(self, run_id: str) -> list[str]:
        """Incident ids already recorded for a run (recording it again is a no-op)."""
        with self._read() as con:
            rows = con.execute(
                "SELECT incident_id FROM incident_runs WHERE run_id = ? ORDER BY incident_id",
                [run_id],
            ).fetchall()
        return [r[0] for r in rows]

    def failed_runs_of(self, partition_keys: Sequence[str]) -> dict[str, int]:
        """How many distinct failed runs each version has had (its last attempt number)."""
        sql = (
            "SELECT partition_key, count(DISTINCT run_id) FROM incident_runs "
            "WHERE partition_key IN ({keys}) GROUP BY partition_key"
        )
        with self._read() as con:
            return {row[0]: int(row[1]) for row in _rows_for_keys(con, sql, partition_keys)}

    def record_incidents(
        self,
        run_id: str,
        incidents: Sequence[NewIncident],
        unfinished: Mapping[str, tuple[str, str]],
    ) -> list[str]:
        """Record one failed run's incidents, in one transaction; returns their ids.

        An incident seen again (same version, same fingerprint) counts one more attempt and
        is OPEN again; the version's other open incidents become SUPERSEDED. ``unfinished``
        (partition key → class, message) are versions the run left PENDING or RUNNING (a
        crash): they become FAILED. A run already recorded changes nothing.
        """
        now = _us(utcnow())
        with self._write() as con:
            seen = con.execute(
                "SELECT incident_id FROM incident_runs WHERE run_id = ? ORDER BY incident_id",
                [run_id],
            ).fetchall()
            if seen:
                return [r[0] for r in seen]
            crashed = 0
            for pk, (error_class, error) in unfinished.items():
                crashed += con.execute(
                    "UPDATE versions SET status = ?, error_class = ?, error = ?, "
                    "finished_at = ?, updated_at = ?, claimed_by = NULL WHERE partition_key = ? "
                    "AND (status = ? OR (status = ? AND run_id = ?))",
                    [FAILED, error_class, error, now, now, pk, PENDING, RUNNING, run_id],
                ).rowcount
            if crashed:
                counters.bump(con, counters.FINISHED, crashed, {"status": FAILED})
            for inc in incidents:
                v = inc.version
                was_open = con.execute(
                    "SELECT 1 FROM incidents WHERE incident_id = ? AND status = ?",
                    [inc.incident_id, OPEN],
                ).fetchone()
                if was_open is None:
                    # New, or re-opened after it was resolved or superseded.
                    counters.bump(con, counters.INCIDENTS_OPENED, 1, {"class": inc.failure_class})
                con.execute(
                    "INSERT INTO incidents (incident_id, partition_key, source, object_key, "
                    "etag, class, retryable, fingerprint, message, error_type, action, runbook, "
                    "max_redrives, last_run_id, next_attempt_at, attempts, first_seen, "
                    "last_seen, redrives, status) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 1, ?, ?, 0, ?) "
                    "ON CONFLICT (incident_id) DO UPDATE SET attempts = attempts + 1, "
                    "last_seen = excluded.last_seen, message = excluded.message, "
                    "error_type = excluded.error_type, last_run_id = excluded.last_run_id, "
                    "next_attempt_at = excluded.next_attempt_at, "
                    "max_redrives = excluded.max_redrives, status = excluded.status",
                    [inc.incident_id, inc.partition_key, v.source if v else None,
                     v.object_key if v else None, v.etag if v else None, inc.failure_class,
                     int(inc.retryable), inc.fingerprint, inc.message, inc.error_type,
                     inc.action, inc.runbook, inc.max_redrives, run_id,
                     _us(inc.next_attempt_at), now, now, OPEN],
                )  # fmt: skip
                con.execute(
                    "UPDATE incidents SET status = ? WHERE partition_key = ? "
                    "AND incident_id != ? AND status = ?",
                    [SUPERSEDED, inc.partition_key, inc.incident_id, OPEN],
                )
                con.execute(
                    "INSERT OR IGNORE INTO incident_runs (run_id, incident_id, partition_key) "
                    "VALUES (?, ?, ?)",
                    [run_id, inc.incident_id, inc.partition_key],
                )
        return [inc.incident_id for inc in incidents]

    # -- what /metrics reads ----------------------------------------------------------------
    def status_counts(self) -> dict[str, int]:
        """Versions by status (an index count; every status present, zeros included)."""
        with self._read() as con:
            rows = con.execute("SELECT status, count(*) FROM versions GROUP BY status")
            found = {r[0]: int(r[1]) for r in rows}
        return {s: found.get(s, 0) for s in (PENDING, RUNNING, SUCCEEDED, FAILED)} | found

    def oldest_unprocessed(self) -> datetime | None:
        """When the oldest upload not yet finished (PENDING or RUNNING) was made: one index
        read per status. ``None`` when nothing waits."""
        with self._read() as con:
            row = con.execute(
                "SELECT min(t) FROM (SELECT min(coalesce(last_modified, registered_at)) AS t "
                "FROM versions WHERE status = ? UNION ALL "
                "SELECT min(coalesce(last_modified, registered_at)) FROM versions "
                "WHERE status = ?)",
                [PENDING, RUNNING],
            ).fetchone()
        return _dt(row[0]) if row and row[0] is not None else None

    def operational_counters(self) -> list[counters.CounterRow]:
        """The counters bumped by state changes (see ``operational_counters``)."""
        with self._read() as con:
            return counters.read_all(con)

    # -- upload jobs (the HTTP API) -------------------------------------------------------
    def create_upload_job(self, job: UploadJob) -> None:
        """Record a job handed out by the API; a job id or object key used twice raises
        ``sqlite3.IntegrityError`` (both are random, so that is a bug, not a race to win)."""
        values = [
            _us(getattr(job, c)) if c in upload_jobs.TIMES else getattr(job, c)
            for c in upload_jobs.COLUMNS
        ]
        with self._write() as con:
            upload_jobs.insert(con, values)

    def upload_job(self, job_id: str) -> UploadJob | None:
        """One API job by id (a primary-key read)."""
        with self._read() as con:
            row = con.execute("SELECT * FROM upload_jobs WHERE job_id = ?", [job_id]).fetchone()
        return _upload_job(row) if row else None

    def upload_jobs_of(self, owner: str, *, limit: int) -> list[UploadJob]:
        """An owner's newest API jobs, newest first (an index range read)."""
        with self._read() as con:
            rows = con.execute(
                "SELECT * FROM upload_jobs WHERE owner = ? "
                "ORDER BY created_at DESC, job_id DESC LIMIT ?",
                [owner, limit],
            ).fetchall()
        return [_upload_job(r) for r in rows]

    def newest_versions_of(self, source: str, object_keys: Sequence[str]) -> dict[str, JobState]:
        """The newest registered version of each of these objects, by object key (batched
        index reads on (source, object_key)); objects with no version are absent."""
        newest: dict[str, JobState] = {}
        with self._read() as con:
            for chunk in _chunks(list(dict.fromkeys(object_keys))):
                rows = con.execute(
                    f"SELECT * FROM versions WHERE source = ? "  # nosec B608
                    f"AND object_key IN ({_marks(len(chunk))})",
                    [source, *chunk],
                ).fetchall()
                for row in rows:
                    job = _job(row)
                    held = newest.get(job.object_key)
                    if held is None or _newer(job, held):
                        newest[job.object_key] = job
        return newest

    def recent_incidents(
        self, *, limit: int, owner: str | None = None, open_only: bool = False
    ) -> list[Incident]:
        """The newest incidents (by last seen), at most ``limit``; with ``owner``, only those
        of objects uploaded through that owner's API jobs."""
        clauses, params = [], []
        if open_only:
            clauses.append("i.status = ?")
            params.append(OPEN)
        if owner is not None:
            clauses.append(
                "EXISTS (SELECT 1 FROM upload_jobs u WHERE u.object_key = i.object_key "
                "AND 's3://' || u.bucket = i.source AND u.owner = ?)"
            )
            params.append(owner)
        where = f" WHERE {' AND '.join(clauses)}" if clauses else ""
        with self._read() as con:
            rows = con.execute(
                # bandit B608 waived: spliced clauses are constants, values are bound
                f"SELECT i.* FROM incidents i{where} "  # nosec B608
                "ORDER BY i.last_seen DESC, i.incident_id LIMIT ?",
                [*params, limit],
            ).fetchall()
        return [_incident(r) for r in rows]

    def get_incident(self, incident_id: str) -> Incident | None:
        """One incident by id."""
        with self._read() as con:
            row = con.execute(
                "SELECT * FROM incidents WHERE incident_id = ?", [incident_id]
            ).fetchone()
        return _incident(row) if row else None

    def latest_incident(self, partition_key: str) -> Incident | None:
        """The newest incident of one version (an index read)."""
        with self._read() as con:
            row = con.execute(
                "SELECT * FROM incidents WHERE partition_key = ? ORDER BY last_seen DESC LIMIT 1",
                [partition_key],
            ).fetchone()
        return _incident(row) if row else None

    def open_incidents(
        self,
        *,
        incident_id: str | None = None,
        failure_class: str | None = None,
        fingerprint: str | None = None,
    ) -> list[Incident]:
        """OPEN incidents by id, class or fingerprint (each an index read)."""
        if incident_id is not None:
            where, param = "incident_id = ?", incident_id
        elif fingerprint is not None:
            where, param = "fingerprint = ?", fingerprint
        elif failure_class is not None:
            where, param = "class = ?", failure_class
        else:
            raise ValueError("name an incident id, a class or a fingerprint")
        with self._read() as con:
            rows = con.execute(
                # bandit B608 waived: spliced names are catalog constants, values are bound
                f"SELECT * FROM incidents WHERE {where} AND status = ? ORDER BY partition_key",  # nosec B608
                [param, OPEN],
            ).fetchall()
        return [_incident(r) for r in rows]

    def due_redrives(self, now: datetime, *, limit: int = 100) -> list[Incident]:
        """Open retryable incidents whose backoff has elapsed, not redriven since they last
        failed, soonest first (an index range read, at most ``limit``)."""
        with self._read() as con:
            rows = con.execute(
                "SELECT * FROM incidents WHERE status = ? AND next_attempt_at IS NOT NULL "
                "AND next_attempt_at <= ? AND retryable "
                "AND (last_redrive_at IS NULL OR last_redrive_at < last_seen) "
                "ORDER BY next_attempt_at LIMIT ?",
                [OPEN, _us(now), limit],
            ).fetchall()
        return [_incident(r) for r in rows]

    def record_redrives(self, incident_ids: Sequence[str]) -> None:
        """Count one redrive of each incident (so the same failure is redriven once)."""
        now = _us(utcnow())
        with self._write() as con:
            con.executemany(
                "UPDATE incidents SET redrives = redrives + 1, last_redrive_at = ? "
                "WHERE incident_id = ?",
                [(now, iid) for iid in incident_ids],
            )

    def iter_incidents(self, batch: int = 10_000) -> Iterator[list[tuple]]:
        """Every incident as raw rows in ``INCIDENT_COLUMNS`` order (for the query layer)."""
        with self._read() as con:
            cur = con.cursor()
            cur.row_factory = None  # plain tuples: ~3x faster than sqlite3.Row for bulk reads
            # bandit B608 waived: spliced names are catalog constants, values are bound
            cur.execute(f"SELECT {', '.join(_INCIDENT_COLUMNS)} FROM incidents")  # nosec B608
            while rows := cur.fetchmany(batch):
                yield rows

    # -- migration ------------------------------------------------------------------------
    def import_rows(
        self, versions: Sequence[Mapping[str, Any]], incidents: Sequence[Mapping[str, Any]],
        incident_runs: Sequence[tuple[str, str, str]],
    ) -> None:  # fmt: skip
        """Bulk-insert rows of an older catalog (absent keys only), in one transaction."""

        def values(row: Mapping[str, Any], names: Sequence[str], times: frozenset[str]) -> list:
            return [_us(row.get(n)) if n in times else row.get(n) for n in names]

        job_cols = [c for c in _JOB_COLUMNS]
        with self._write() as con:
            con.executemany(
                f"INSERT OR IGNORE INTO versions ({', '.join(job_cols)}) "
                f"VALUES ({_marks(len(job_cols))})",
                [values(r, job_cols, _JOB_TIMES) for r in versions],
            )
            con.executemany(
                f"INSERT OR IGNORE INTO incidents ({', '.join(_INCIDENT_COLUMNS)}) "
                f"VALUES ({_marks(len(_INCIDENT_COLUMNS))})",
                [values(r, _INCIDENT_COLUMNS, _INCIDENT_TIMES) for r in incidents],
            )
            con.executemany(
                "INSERT OR IGNORE INTO incident_runs (run_id, incident_id, partition_key) "
                "VALUES (?, ?, ?)",
                incident_runs,
            )


JOB_COLUMNS = _JOB_COLUMNS
# The stored form of times, for other backends of the same contract.
datetime_to_us = _us
us_to_datetime = _dt
JOB_TIME_COLUMNS = _JOB_TIMES
INCIDENT_COLUMNS = _INCIDENT_COLUMNS
INCIDENT_TIME_COLUMNS = _INCIDENT_TIMES
