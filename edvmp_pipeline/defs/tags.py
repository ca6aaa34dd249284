"""Every run tag and failure-metadata key of the code location, in one place."""

from __future__ import annotations

# Raw identity of a single-version run (the partition key is a digest).
TAG_SOURCE = "edvmp/source"
TAG_OBJECT_KEY = "edvmp/object_key"
TAG_ETAG = "edvmp/etag"
TAG_TRIGGER = "edvmp/trigger"
TAG_ATTEMPT = "edvmp/attempt"
TAG_REDRIVE_OF = "edvmp/redrive_of"
# The process that executes an in-process run (see dead_runs).
TAG_HOST = "edvmp/host"
TAG_PID = "edvmp/pid"
# Dagster's own tag, read (never written) to find a run by its run key.
RUN_KEY_TAG = "dagster/run_key"
# Dagster system tag: asset events of the run's steps come only from the events they log.
DEFER_ASSET_EVENTS_TAG = "dagster/defer_asset_events"

# Keys of the run failure's metadata: the per-version outcome the incident recorder reads.
FAILED_PARTITIONS = "failed_partitions"
ERROR_CLASSES = "error_classes"
ERRORS = "errors"


def attempt_tags(attempt: int) -> dict[str, str]:
    """Run tags of a redrive."""
    return {TAG_ATTEMPT: str(attempt)}
