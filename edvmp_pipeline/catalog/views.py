"""DuckDB views of the catalog: result tables over Parquet, state tables from the state store.

Result tables (``videos``, ``streams``, ``summaries``, ``checks``, and with the video
analysis ``analysis`` and ``near_duplicates``) are folders of Parquet
files; a version processed twice has several rows there, and the views keep the newest one
per key (``schemas.DEDUPE``). ``objects``, ``jobs`` and ``incidents`` are the state store's
rows, handed to DuckDB as Arrow tables (DuckDB cannot load its SQLite extension offline), with
the columns the first release's views had, so every documented query still works.
"""

from __future__ import annotations

from pathlib import Path

from edvmp_pipeline.catalog import schemas

# The names of the Arrow tables the state views read (registered on each connection).
STATE_JOBS = "_state_versions"
STATE_INCIDENTS = "_state_incidents"


def parquet_source(root: Path, table: str) -> str:
    """``read_parquet(...)`` over every file of one result table."""
    pattern = str(root / table / "*.parquet").replace("'", "''")
    return f"read_parquet('{pattern}', union_by_name = true)"


def newest(table: str, source: str, *, exclude: str = "") -> str:
    """SELECT the newest row per key of a result table from ``source``."""
    keys, order = schemas.DEDUPE[table]
    return (
        # bandit B608 waived: spliced names are catalog constants, values are bound
        f"SELECT *{exclude} FROM {source} QUALIFY row_number() OVER "  # nosec B608
        f"(PARTITION BY {', '.join(keys)} ORDER BY {order} DESC NULLS LAST) = 1"
    )


def result_view_sql(
    root: Path | None = None, *, sources: dict[str, str] | None = None
) -> dict[str, str]:
    """``{view name: SELECT ...}`` of the result views, in dependency order: over the
    Parquet files under ``root``, or over ``sources`` (table → a relation name, e.g. an Arrow
    dataset registered on the connection)."""
    if sources is not None:
        src = dict(sources)
    else:
        assert root is not None
        src = {t: parquet_source(root, t) for t in schemas.TABLES}
    return {
        "videos": newest("videos", src["videos"], exclude=" EXCLUDE (run_id, ffprobe_json)"),
        # ffprobe's own output for each version (JSON text: json_extract works on it).
        # bandit B608 waived: spliced names are catalog constants, values are bound
        "probes": "SELECT partition_key, source, object_key, etag, processed_at, "  # nosec B608
        f"ffprobe_json FROM ({newest('videos', src['videos'])})",
        # The newest version of each object (by the store's last-modified time).
        "videos_latest": """
            SELECT * FROM videos
            QUALIFY row_number() OVER (
                PARTITION BY source, object_key
                ORDER BY last_modified DESC NULLS LAST, processed_at DESC) = 1""",
        "streams": newest("streams", src["streams"]),
        # A version summarised again (new model, forced re-run) keeps only its newest summary.
        "summaries": newest("summaries", src["summaries"]),
        # The newest result of each rule on each version (a rule dropped from the policy keeps
        # its last rows; `edvmp check` evaluates the current policy instead).
        "checks": newest("checks", src["checks"]),
        # One row per analysed version (EDVMP_ANALYSIS=on): loudness, black, freezes, cuts,
        # interlacing, HDR class, poster and contact sheet locations.
        "analysis": newest("analysis", src["analysis"], exclude=" EXCLUDE (run_id)"),
        # Each near-duplicate pair once (whichever of its versions found it last), with the
        # version that found it as partition_key.
        # bandit B608 waived: spliced names are catalog constants, values are bound
        "near_duplicates": "SELECT * EXCLUDE (run_id) FROM ("  # nosec B608
        f"{newest('near_duplicates', src['near_duplicates'])}) QUALIFY row_number() OVER ("
        "PARTITION BY least(partition_key, duplicate_of), greatest(partition_key, "
        "duplicate_of) ORDER BY found_at DESC) = 1",
    }


STATE_VIEW_SQL: dict[str, str] = {
    # bandit B608 waived: spliced names are catalog constants, values are bound
    "objects": f"""
        SELECT partition_key, source, object_key, etag, size_bytes, last_modified,
               registered_at, registered_by
        FROM {STATE_JOBS}""",  # nosec B608
    # bandit B608 waived: spliced names are catalog constants, values are bound
    "jobs": f"""
        SELECT partition_key, source, object_key, etag, status, attempts, error_class, error,
               registered_at, started_at, finished_at, run_id
        FROM {STATE_JOBS}""",  # nosec B608
    # bandit B608 waived: spliced names are catalog constants, values are bound
    "incidents": f"""
        SELECT incident_id, partition_key, source, object_key, etag, "class", retryable,
               fingerprint, message, error_type, action, runbook, max_redrives, last_run_id,
               next_attempt_at, attempts, first_seen, last_seen, redrives, last_redrive_at,
               status
        FROM {STATE_INCIDENTS}""",  # nosec B608
}

# Which state view needs which Arrow table, and which of the versions columns.
STATE_SOURCES = {"objects": STATE_JOBS, "jobs": STATE_JOBS, "incidents": STATE_INCIDENTS}
STATE_JOB_COLUMNS = {
    "objects": ("partition_key", "source", "object_key", "etag", "size_bytes", "last_modified",
                "registered_at", "registered_by"),
    "jobs": ("partition_key", "source", "object_key", "etag", "status", "attempts",
             "error_class", "error", "registered_at", "started_at", "finished_at", "run_id"),
}  # fmt: skip

VIEW_NAMES = (*result_view_sql(Path(".")), *STATE_VIEW_SQL)
