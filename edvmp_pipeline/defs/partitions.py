"""The ``videos`` dynamic partitions: one partition per object version."""

from __future__ import annotations

import dagster as dg

videos_partitions = dg.DynamicPartitionsDefinition(name="videos")
