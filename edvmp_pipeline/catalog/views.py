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
        # A version summarised again (new model, forced re-run) keeps only its newest summary.
        "summaries": f"""
            SELECT * FROM {_src(root, "summaries")}
            QUALIFY row_number() OVER (
                PARTITION BY partition_key ORDER BY created_at DESC) = 1""",
        # The newest result of each rule on each version (a rule dropped from the policy keeps
        # its last rows; `edvmp check` evaluates the current policy instead).
        "checks": f"""
            SELECT * FROM {_src(root, "checks")}
            QUALIFY row_number() OVER (
                PARTITION BY partition_key, rule_id ORDER BY checked_at DESC) = 1""",
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
        "incident_events": f"SELECT * FROM {_src(root, 'incident_events')}",
        # One row per (version, fingerprint). attempts counts distinct failed runs, so the
        # failure sensor evaluating the same run twice never inflates it. An incident is
        # RESOLVED once its version succeeded, SUPERSEDED when the version later failed in
        # another way, OPEN otherwise.
        "incidents": """
            WITH occ AS (
                SELECT * FROM incident_events WHERE kind = 'OCCURRED'
                QUALIFY row_number() OVER (
                    PARTITION BY incident_id, run_id ORDER BY event_at) = 1
            ),
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
                       min(event_at) AS first_seen,
                       max(event_at) AS last_seen
                FROM occ GROUP BY incident_id
            ),
            redrives AS (
                SELECT incident_id, count(*)::INTEGER AS redrives,
                       max(event_at) AS last_redrive_at
                FROM incident_events WHERE kind = 'REDRIVE_REQUESTED' GROUP BY incident_id
            ),
            latest_per_version AS (
                SELECT partition_key, max(last_seen) AS newest FROM folded GROUP BY partition_key
            )
            SELECT f.*, coalesce(r.redrives, 0) AS redrives, r.last_redrive_at,
                   CASE WHEN j.status = 'SUCCEEDED' THEN 'RESOLVED'
                        WHEN f.last_seen < l.newest THEN 'SUPERSEDED'
                        ELSE 'OPEN' END AS status
            FROM folded f
            LEFT JOIN redrives r USING (incident_id)
            LEFT JOIN jobs j USING (partition_key)
            JOIN latest_per_version l USING (partition_key)""",
    }


VIEW_NAMES = tuple(view_sql(Path(".")).keys())
