"""The ``videos`` dynamic partitions: one partition per object version."""

from __future__ import annotations

import dagster as dg

videos_partitions = dg.DynamicPartitionsDefinition(name="videos")

# Run tags that carry the raw identity of a single-version run (the partition key is a digest).
TAG_SOURCE = "edvmp/source"
TAG_OBJECT_KEY = "edvmp/object_key"
TAG_ETAG = "edvmp/etag"
TAG_TRIGGER = "edvmp/trigger"
TAG_ATTEMPT = "edvmp/attempt"
