"""Arrow schemas of the catalog's result tables (one folder of Parquet files each).

Registry, job state and incidents live in the state store (``state_store.py``); the
``OBJECTS``, ``JOB_EVENTS`` and ``INCIDENT_EVENTS`` schemas describe the Parquet tables in
which the first release kept them, read once by the migration.
"""

from __future__ import annotations

import pyarrow as pa

TS = pa.timestamp("us", tz="UTC")

OBJECTS = pa.schema(
    [
        ("partition_key", pa.string()),
        ("source", pa.string()),
        ("object_key", pa.string()),
        ("etag", pa.string()),
        ("size_bytes", pa.int64()),
        ("last_modified", TS),
        ("registered_at", TS),
        ("registered_by", pa.string()),
    ]
)

VIDEOS = pa.schema(
    [
        ("partition_key", pa.string()),
        ("source", pa.string()),
        ("object_key", pa.string()),
        ("etag", pa.string()),
        ("size_bytes", pa.int64()),
        ("last_modified", TS),
        ("format_name", pa.string()),
        ("format_long_name", pa.string()),
        ("duration_s", pa.float64()),
        ("bit_rate", pa.int64()),
        ("video_codec", pa.string()),
        ("width", pa.int32()),
        ("height", pa.int32()),
        ("fps", pa.float64()),
        ("pix_fmt", pa.string()),
        ("rotation", pa.int32()),
        ("audio_codec", pa.string()),
        ("audio_channels", pa.int32()),
        ("sample_rate_hz", pa.int32()),
        ("n_video_streams", pa.int32()),
        ("n_audio_streams", pa.int32()),
        ("n_subtitle_streams", pa.int32()),
        ("probe_score", pa.int32()),
        ("tags_json", pa.string()),
        ("processed_at", TS),
        ("run_id", pa.string()),
        # ffprobe's own format and streams, as it printed them (JSON): what the API serves
        # as the raw probe. Not in the ``videos`` view (it is wide); the ``probes`` view has it.
        ("ffprobe_json", pa.string()),
    ]
)

STREAMS = pa.schema(
    [
        ("partition_key", pa.string()),
        ("object_key", pa.string()),
        ("etag", pa.string()),
        ("stream_index", pa.int32()),
        ("codec_type", pa.string()),
        ("codec_name", pa.string()),
        ("codec_long_name", pa.string()),
        ("profile", pa.string()),
        ("bit_rate", pa.int64()),
        ("duration_s", pa.float64()),
        ("language", pa.string()),
        ("width", pa.int32()),
        ("height", pa.int32()),
        ("pix_fmt", pa.string()),
        ("fps", pa.float64()),
        ("bits_per_raw_sample", pa.int32()),
        ("rotation", pa.int32()),
        ("channels", pa.int32()),
        ("channel_layout", pa.string()),
        ("sample_rate_hz", pa.int32()),
        ("processed_at", TS),
    ]
)

# First release only (migrated): append-only state transitions.
JOB_EVENTS = pa.schema(
    [
        ("partition_key", pa.string()),
        ("source", pa.string()),
        ("object_key", pa.string()),
        ("etag", pa.string()),
        ("status", pa.string()),
        ("error_class", pa.string()),
        ("error", pa.string()),
        ("run_id", pa.string()),
        ("event_at", TS),
    ]
)

# First release only (migrated): one OCCURRED row per (failed run, version), one
# REDRIVE_REQUESTED row per redrive.
INCIDENT_EVENTS = pa.schema(
    [
        ("incident_id", pa.string()),
        ("kind", pa.string()),
        ("partition_key", pa.string()),
        ("source", pa.string()),
        ("object_key", pa.string()),
        ("etag", pa.string()),
        ("class", pa.string()),
        ("retryable", pa.bool_()),
        ("fingerprint", pa.string()),
        ("message", pa.string()),
        ("error_type", pa.string()),
        ("action", pa.string()),
        ("runbook", pa.string()),
        ("max_redrives", pa.int32()),
        ("run_id", pa.string()),
        ("next_attempt_at", TS),
        ("event_at", TS),
    ]
)

# One row per summary written; the ``summaries`` view keeps the newest per version.
SUMMARIES = pa.schema(
    [
        ("partition_key", pa.string()),
        ("object_key", pa.string()),
        ("etag", pa.string()),
        ("summarizer", pa.string()),
        ("model_id", pa.string()),
        ("summary", pa.string()),
        ("input_tokens", pa.int64()),
        ("output_tokens", pa.int64()),
        ("latency_ms", pa.int64()),
        ("stop_reason", pa.string()),
        ("created_at", TS),
        ("run_id", pa.string()),
    ]
)

# One row per (version, compliance rule) evaluation; the ``checks`` view keeps the newest.
CHECKS = pa.schema(
    [
        ("partition_key", pa.string()),
        ("object_key", pa.string()),
        ("etag", pa.string()),
        ("rule_id", pa.string()),
        ("field", pa.string()),
        ("severity", pa.string()),
        ("passed", pa.bool_()),
        ("actual", pa.string()),
        ("expected", pa.string()),
        ("checked_at", TS),
        ("run_id", pa.string()),
    ]
)

_SEGMENT = pa.struct(
    [("start_s", pa.float64()), ("end_s", pa.float64()), ("duration_s", pa.float64())]
)
_LOUDNESS = pa.struct(
    [
        ("stream_index", pa.int32()),
        ("integrated_lufs", pa.float64()),
        ("loudness_range_lu", pa.float64()),
        ("true_peak_dbtp", pa.float64()),
    ]
)
_INTERLACE = pa.struct(
    [
        ("verdict", pa.string()),
        ("tff", pa.int64()),
        ("bff", pa.int64()),
        ("progressive", pa.int64()),
        ("undetermined", pa.int64()),
    ]
)

# One row per analysis of a version (``AnalysisRecord.as_row`` plus identity); the
# ``analysis`` view keeps the newest. Loudness columns are the first audio stream's; the
# ``loudness`` list has every stream's.
ANALYSIS = pa.schema(
    [
        ("partition_key", pa.string()),
        ("object_key", pa.string()),
        ("etag", pa.string()),
        ("duration_s", pa.float64()),
        ("video_stream_index", pa.int32()),
        ("integrated_lufs", pa.float64()),
        ("loudness_range_lu", pa.float64()),
        ("true_peak_dbtp", pa.float64()),
        ("loudness", pa.list_(_LOUDNESS)),
        ("black_segments", pa.list_(_SEGMENT)),
        ("black_total_s", pa.float64()),
        ("leading_black_s", pa.float64()),
        ("trailing_black_s", pa.float64()),
        ("freeze_segments", pa.list_(_SEGMENT)),
        ("freeze_total_s", pa.float64()),
        ("scene_cut_count", pa.int32()),
        ("scene_cuts", pa.list_(pa.float64())),
        ("interlace", pa.string()),
        ("interlace_counts", _INTERLACE),
        ("hdr_class", pa.string()),
        ("fingerprint_frames", pa.int32()),
        ("decode_errors", pa.int32()),
        ("elapsed_s", pa.float64()),
        ("poster", pa.string()),
        ("contact_sheet", pa.string()),
        ("analysed_at", TS),
        ("run_id", pa.string()),
    ]
)

# One row per near-duplicate pair found: ``partition_key`` is the version whose analysis
# found it, ``duplicate_of`` the version it matched (analysed earlier, or earlier in the
# same run). ``offset_s`` is how far ``partition_key``'s frames are shifted against the
# other's (a trim).
NEAR_DUPLICATES = pa.schema(
    [
        ("partition_key", pa.string()),
        ("object_key", pa.string()),
        ("etag", pa.string()),
        ("duplicate_of", pa.string()),
        ("duplicate_object_key", pa.string()),
        ("duplicate_etag", pa.string()),
        ("same_object", pa.bool_()),
        ("score", pa.float64()),
        ("offset_s", pa.float64()),
        ("found_at", TS),
        ("run_id", pa.string()),
    ]
)

TABLES: dict[str, pa.Schema] = {
    "videos": VIDEOS,
    "streams": STREAMS,
    "summaries": SUMMARIES,
    "checks": CHECKS,
    "analysis": ANALYSIS,
    "near_duplicates": NEAR_DUPLICATES,
}

# The key of each result table and the column that says which row is newest: a version
# processed twice (a redrive, a forced re-run) has several rows, and reads and compaction keep
# the newest per key, which makes every write idempotent for readers.
DEDUPE: dict[str, tuple[tuple[str, ...], str]] = {
    "videos": (("partition_key",), "processed_at"),
    "streams": (("partition_key", "stream_index"), "processed_at"),
    "summaries": (("partition_key",), "created_at"),
    "checks": (("partition_key", "rule_id"), "checked_at"),
    "analysis": (("partition_key",), "analysed_at"),
    "near_duplicates": (("partition_key", "duplicate_of"), "found_at"),
}

LEGACY_TABLES: dict[str, pa.Schema] = {
    "objects": OBJECTS,
    "job_events": JOB_EVENTS,
    "incident_events": INCIDENT_EVENTS,
}
