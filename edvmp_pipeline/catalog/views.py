"""DuckDB view definitions over the catalog's Parquet folders.

Writers only ever append files, so a version processed twice (a redrive, a UI backfill, a
run killed after writing) has several rows in the files; the views keep the newest one per
version, which makes every write idempotent from a reader's point of view.
"""

from __future__ import annotations

from pathlib import Path


def _src(root: Path, table: str) -> str:
    pattern = str(root / table / "*.parquet").replace("'", "''")
    return f"read_parquet('{pattern}', union_by_name = true)"


def view_sql(root: Path) -> dict[str, str]:
    """``{view name: SELECT ...}`` for every catalog view, in dependency order."""
    return {
        "objects": f"""
            SELECT * FROM {_src(root, "objects")}
            QUALIFY row_number() OVER (PARTITION BY partition_key ORDER BY registered_at) = 1""",
        "videos": f"""
            SELECT * EXCLUDE (run_id) FROM {_src(root, "videos")}
            QUALIFY row_number() OVER (
                PARTITION BY partition_key ORDER BY processed_at DESC) = 1""",
        "videos_latest": """
            SELECT * FROM videos
            QUALIFY row_number() OVER (
                PARTITION BY source, object_key
                ORDER BY last_modified DESC NULLS LAST, processed_at DESC) = 1""",
        "streams": f"""
            SELECT * FROM {_src(root, "streams")}
            QUALIFY row_number() OVER (
                PARTITION BY partition_key, stream_index ORDER BY processed_at DESC) = 1""",
        "job_events": f"SELECT * FROM {_src(root, 'job_events')}",
        # One row per version: the last event decides the status; attempts counts run starts.
        "jobs": """
            WITH ordered AS (
                SELECT *, row_number() OVER (
                    PARTITION BY partition_key ORDER BY event_at DESC,
                    CASE status WHEN 'SUCCEEDED' THEN 3 WHEN 'FAILED' THEN 3
                                WHEN 'RUNNING' THEN 2 ELSE 1 END DESC) AS rn
                FROM job_events
            ),
            agg AS (
                SELECT partition_key,
                       count(*) FILTER (WHERE status = 'RUNNING') AS attempts,
                       min(event_at) AS registered_at,
                       max(event_at) FILTER (WHERE status = 'RUNNING') AS started_at
                FROM job_events GROUP BY partition_key
            )
            SELECT o.partition_key, o.source, o.object_key, o.etag, o.status,
                   a.attempts::INTEGER AS attempts, o.error_class, o.error,
                   a.registered_at, a.started_at,
                   CASE WHEN o.status IN ('SUCCEEDED', 'FAILED') THEN o.event_at END
                       AS finished_at,
                   o.run_id
            FROM ordered o JOIN agg a USING (partition_key)
            WHERE o.rn = 1""",
    }


VIEW_NAMES = tuple(view_sql(Path(".")).keys())
