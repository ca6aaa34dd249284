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
# Dagster's own tags of a run over a partition range, read and set on batch runs.
RANGE_START_TAG = "dagster/asset_partition_range_start"
RANGE_END_TAG = "dagster/asset_partition_range_end"

# Keys of the run failure's metadata: the per-version outcome the incident recorder reads.
FAILED_PARTITIONS = "failed_partitions"
ERROR_CLASSES = "error_classes"
ERRORS = "errors"
INCIDENT_IDS = "incident_ids"
# Counts of a finished run, as tags so the Runs list shows them.
TAG_SUCCEEDED = "edvmp/succeeded"
TAG_FAILED = "edvmp/failed"


def attempt_tags(attempt: int) -> dict[str, str]:
    """Run tags of a redrive."""
    return {TAG_ATTEMPT: str(attempt)}
