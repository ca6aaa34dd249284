"""Migrating a catalog of the first release: its Parquet state tables into the state store.

The first release kept the registry (``objects``), job state (``job_events``) and incidents
(``incident_events``) as append-only Parquet folders folded by views on every read. On first
use of such a catalog, their folded state is imported into the state store in one
transaction and the three folders are moved under ``.migrated-<time>/`` (kept, never read
again). Result tables keep their files. The import is idempotent (absent keys only) and runs
under a lock, so a kill mid-way or two processes starting at once leave one correct copy.
"""

from __future__ import annotations

import fcntl
import logging
from pathlib import Path

import duckdb

from edvmp_pipeline.catalog import schemas
from edvmp_pipeline.catalog.parquet_files import utc_stamp
from edvmp_pipeline.catalog.state_store import SUCCEEDED, SqliteStateStore

log = logging.getLogger(__name__)

LEGACY = tuple(schemas.LEGACY_TABLES)
MIGRATED_KEY = "migrated_first_release"


def _src(root: Path, table: str) -> str:
    pattern = str(root / table / "*.parquet").replace("'", "''")
    return f"read_parquet('{pattern}', union_by_name = true)"


def _legacy_views(root: Path) -> dict[str, str]:
    """The first release's folding views, verbatim in meaning."""
    done = (
        "CASE status WHEN 'SUCCEEDED' THEN 3 WHEN 'FAILED' THEN 3 WHEN 'RUNNING' THEN 2 ELSE 1 END"
    )
    return {
        # bandit B608 waived: spliced names are catalog constants, values are bound
        "objects": f"""SELECT * FROM {_src(root, "objects")} QUALIFY row_number() OVER (
                PARTITION BY partition_key ORDER BY registered_at) = 1""",  # nosec B608
        # bandit B608 waived: spliced names are catalog constants, values are bound
        "job_events": f"SELECT * FROM {_src(root, 'job_events')}",  # nosec B608
        # bandit B608 waived: spliced names are catalog constants, values are bound
        "jobs": f"""
            WITH ordered AS (
                SELECT *, row_number() OVER (
                    PARTITION BY partition_key ORDER BY event_at DESC, {done} DESC) AS rn
                FROM job_events),
            agg AS (
                SELECT partition_key,
                       count(*) FILTER (WHERE status = 'RUNNING') AS attempts,
                       min(event_at) AS registered_at,
                       max(event_at) FILTER (WHERE status = 'RUNNING') AS started_at
                FROM job_events GROUP BY partition_key)
            SELECT o.partition_key, o.status, a.attempts::INTEGER AS attempts, o.error_class,
                   o.error, a.started_at,
                   CASE WHEN o.status IN ('SUCCEEDED', 'FAILED') THEN o.event_at END
                       AS finished_at,
                   o.event_at AS updated_at, o.run_id
            FROM ordered o JOIN agg a USING (partition_key) WHERE o.rn = 1""",  # nosec B608
        # bandit B608 waived: spliced names are catalog constants, values are bound
        "incident_events": f"SELECT * FROM {_src(root, 'incident_events')}",  # nosec B608
        "incidents": """
            WITH occ AS (
                SELECT * FROM incident_events WHERE kind = 'OCCURRED'
                QUALIFY row_number() OVER (PARTITION BY incident_id, run_id ORDER BY event_at) = 1),
            folded AS (
                SELECT incident_id,
                       arg_max(partition_key, event_at) AS partition_key,
                       arg_max(source, event_at) AS source,
                       arg_max(object_key, event_at) AS object_key,
                       arg_max(etag, event_at) AS etag,
                       arg_max("class", event_at) AS "class",
                       arg_max(retryable, event_at) AS retryable,
                       arg_max(fingerprint, event_at) AS fingerprint,
                       arg_max(message, event_at) AS message,
                       arg_max_null(error_type, event_at) AS error_type,
                       arg_max(action, event_at) AS action,
                       arg_max(runbook, event_at) AS runbook,
                       arg_max(max_redrives, event_at) AS max_redrives,
                       arg_max(run_id, event_at) AS last_run_id,
                       arg_max_null(next_attempt_at, event_at) AS next_attempt_at,
                       count(*)::INTEGER AS attempts,
                       min(event_at) AS first_seen, max(event_at) AS last_seen
                FROM occ GROUP BY incident_id),
            redrives AS (
                SELECT incident_id, count(*)::INTEGER AS redrives,
                       max(event_at) AS last_redrive_at
                FROM incident_events WHERE kind = 'REDRIVE_REQUESTED' GROUP BY incident_id),
            latest_per_version AS (
                SELECT partition_key, max(last_seen) AS newest FROM folded GROUP BY partition_key)
            SELECT f.*, coalesce(r.redrives, 0) AS redrives, r.last_redrive_at,
                   CASE WHEN j.status = 'SUCCEEDED' THEN 'RESOLVED'
                        WHEN f.last_seen < l.newest THEN 'SUPERSEDED'
                        ELSE 'OPEN' END AS status
            FROM folded f LEFT JOIN redrives r USING (incident_id)
            LEFT JOIN jobs j USING (partition_key)
            JOIN latest_per_version l USING (partition_key)""",
    }


def needs_migration(root: Path) -> bool:
    """True when ``root`` still holds state tables of the first release."""
    return any((root / name).is_dir() for name in LEGACY)


def _fetch(con: duckdb.DuckDBPyConnection, sql: str) -> list[dict]:
    cur = con.execute(sql)
    cols = [d[0] for d in cur.description]
    return [dict(zip(cols, row, strict=True)) for row in cur.fetchall()]


def migrate(root: Path, store: SqliteStateStore) -> int:
    """Import the first release's state of ``root`` into ``store``; returns versions moved."""
    for name, schema in schemas.LEGACY_TABLES.items():
        folder = root / name
        folder.mkdir(exist_ok=True)
        if not (folder / "_schema.parquet").exists():
            import pyarrow.parquet as pq

            pq.write_table(schema.empty_table(), folder / "_schema.parquet")
    con = duckdb.connect(":memory:")
    try:
        for view, sql in _legacy_views(root).items():
            con.execute(f"CREATE VIEW {view} AS {sql}")
        for table in ("summaries", "checks"):
            con.execute(
                # bandit B608 waived: spliced names are catalog constants, values are bound
                f"CREATE VIEW {table}_done AS SELECT partition_key, max("  # nosec B608
                f"{schemas.DEDUPE[table][1]}) AS at FROM {_src(root, table)} GROUP BY ALL"
            )
        con.execute(
            # bandit B608 waived: spliced names are catalog constants, values are bound
            f"CREATE VIEW videos_done AS SELECT partition_key, max(processed_at) AS at "  # nosec B608
            f"FROM {_src(root, 'videos')} GROUP BY ALL"
        )
        versions = _fetch(
            con,
            # bandit B608 waived: spliced names are catalog constants, values are bound
            f"""
            SELECT o.partition_key, o.source, o.object_key, o.etag, o.size_bytes,
                   o.last_modified, o.registered_at, o.registered_by,
                   coalesce(j.status, 'PENDING') AS status, coalesce(j.attempts, 0) AS attempts,
                   j.error_class, j.error, j.run_id, NULL AS claimed_by, j.started_at,
                   j.finished_at, coalesce(j.updated_at, o.registered_at) AS updated_at,
                   CASE WHEN j.status = '{SUCCEEDED}' OR v.at IS NOT NULL THEN v.at END
                       AS metadata_at,
                   s.at AS summary_at, c.at AS checked_at
            FROM objects o LEFT JOIN jobs j USING (partition_key)
            LEFT JOIN videos_done v USING (partition_key)
            LEFT JOIN summaries_done s USING (partition_key)
            LEFT JOIN checks_done c USING (partition_key)
            """,  # nosec B608
        )
        incidents = _fetch(con, "SELECT * FROM incidents")
        runs = con.execute(
            "SELECT DISTINCT run_id, incident_id, partition_key FROM incident_events "
            "WHERE kind = 'OCCURRED' AND run_id IS NOT NULL"
        ).fetchall()
    finally:
        con.close()
    store.import_rows(versions, incidents, runs)
    backup = root / f".migrated-{utc_stamp()}"
    backup.mkdir()
    for name in LEGACY:
        if (root / name).is_dir():
            (root / name).rename(backup / name)
    store.set_meta(MIGRATED_KEY, backup.name)
    log.info(
        "migrated %d versions and %d incidents into the state store", len(versions), len(incidents)
    )
    return len(versions)


def migrate_if_needed(root: Path, store: SqliteStateStore) -> int:
    """Migrate once, under a lock (two first users: one migrates, the other finds it done)."""
    if not needs_migration(root):
        return 0
    with open(root / ".migration.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not needs_migration(root):
            return 0
        return migrate(root, store)
