"""The object-store sensor: every new object version in a bucket/prefix becomes a run.

S3 lists keys lexicographically, so a "start after the last key seen" cursor misses any new
key that sorts earlier, and a "newer than" cursor misses objects sharing a LastModified. This
sensor instead *sweeps* the whole listing over and over, page by page, and looks each page's
(key, ETag) pairs up in the state store in one batched keyed read (the store is the system of
record of what is known; a tick costs what it lists, not what the catalog holds). The cursor holds
only where the current sweep is (``start_after``, a plain string, so a deleted cursor object
is harmless); a finished sweep starts again from the beginning. Work per tick is bounded by
``max_pages`` listing pages and ``max_runs`` run requests; the cursor is stored by Dagster, so
a daemon restart resumes the sweep where it was.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass

import dagster as dg

from edvmp_pipeline.adapters.object_store import ObjectStoreResource
from edvmp_pipeline.adapters.s3_errors import translate_s3_error
from edvmp_pipeline.defs.catalog_resource import CatalogResource
from edvmp_pipeline.defs.jobs import ingest_job
from edvmp_pipeline.defs.partitions import videos_partitions
from edvmp_pipeline.defs.sensors.run_requests import (
    known_states,
    launched_run_keys,
    missing_but_listed,
    plan_requests,
    register,
)
from edvmp_pipeline.domain.partition_keys import normalise_etag
from edvmp_pipeline.domain.records import ObjectVersion
from edvmp_pipeline.domain.video_filter import parse_extensions, skip_reason
from edvmp_pipeline.settings import env_int, uploads_bucket, uploads_prefix

SENSOR_NAME = "s3_object_sensor"
# Keys per listing page: S3's maximum, so a tick's listing costs as few requests as possible.
PAGE_SIZE = 1000


@dataclass(frozen=True)
class SweepCursor:
    """Where the current sweep of the listing stands."""

    start_after: str = ""
    sweeps: int = 0

    @classmethod
    def parse(cls, text: str | None) -> SweepCursor:
        """Parse a stored cursor; an unreadable one restarts the sweep (never skips)."""
        if not text:
            return cls()
        try:
            data = json.loads(text)
            return cls(str(data.get("start_after", "")), int(data.get("sweeps", 0)))
        except (ValueError, TypeError, AttributeError):
            return cls()

    def dump(self) -> str:
        return json.dumps({"start_after": self.start_after, "sweeps": self.sweeps})


@dataclass(frozen=True)
class SensorSettings:
    """What the sensor watches and how much it does per tick (``EDVMP_*`` variables)."""

    bucket: str
    prefix: str = ""
    max_pages: int = 20
    max_runs: int = 200
    extensions: frozenset[str] = frozenset()
    page_size: int = PAGE_SIZE

    @classmethod
    def from_env(cls) -> SensorSettings:
        return cls(
            bucket=uploads_bucket(),
            prefix=uploads_prefix(),
            max_pages=env_int("EDVMP_SENSOR_MAX_PAGES", 20),
            max_runs=env_int("EDVMP_SENSOR_MAX_RUNS", 200),
            extensions=parse_extensions(os.environ.get("EDVMP_VIDEO_EXTENSIONS")),
            # Smaller pages only make sense for tests and tiny ticks; S3 caps pages at 1000.
            page_size=min(PAGE_SIZE, env_int("EDVMP_SENSOR_PAGE_SIZE", PAGE_SIZE)),
        )


def evaluate_sweep(
    context: dg.SensorEvaluationContext,
    settings: SensorSettings,
    catalog_resource: CatalogResource,
    object_store: ObjectStoreResource,
) -> dg.SensorResult:
    """One tick: list up to ``max_pages`` pages from the cursor and request new versions."""
    started = time.monotonic()
    cursor = SweepCursor.parse(context.cursor)
    catalog = catalog_resource.catalog()
    source = f"s3://{settings.bucket}"
    client = object_store.s3_client()
    start_after = cursor.start_after
    sweeps = cursor.sweeps
    run_requests: list[dg.RunRequest] = []
    new_partitions: list[str] = []
    skipped = listed = 0
    instance = context.instance

    def launched(run_keys: Sequence[str]) -> set[str]:
        return launched_run_keys(instance, run_keys)

    for _ in range(settings.max_pages):
        kwargs = {
            "Bucket": settings.bucket,
            "Prefix": settings.prefix,
            "MaxKeys": settings.page_size,
        }
        if start_after:
            kwargs["StartAfter"] = start_after
        try:
            page = client.list_objects_v2(**kwargs)
        except Exception as exc:
            err = translate_s3_error(exc, what=f"{source}/{settings.prefix}")
            if not run_requests and not new_partitions:
                # Keep the cursor: the next tick retries from the same place.
                return dg.SensorResult(skip_reason=f"listing failed: {err.reason}")
            # Earlier pages' versions are registered already: hand their requests over and
            # resume after the last page that was read.
            context.log.warning(f"listing failed after {listed} objects: {err.reason}")
            break
        contents = page.get("Contents", [])
        listed += len(contents)
        candidates: list[tuple[int, ObjectVersion]] = []
        for i, obj in enumerate(contents):
            reason = skip_reason(obj["Key"], settings.extensions)
            if reason is not None:
                skipped += 1
                context.log.debug(f"skipping {obj['Key']!r}: {reason}")
                continue
            candidates.append(
                (
                    i,
                    ObjectVersion(
                        source=source,
                        object_key=obj["Key"],
                        etag=normalise_etag(obj["ETag"]),
                        size_bytes=int(obj["Size"]),
                        last_modified=obj.get("LastModified"),
                    ),
                )
            )
        states = known_states(catalog, [v for _, v in candidates])
        room = settings.max_runs - len(run_requests)
        # Versions whose run exists are consumed without a request: they neither use the
        # cap nor get a second run (Dagster dedupes run keys per sensor only).
        requests, consumed = plan_requests(
            [v for _, v in candidates],
            states,
            trigger="s3-sensor",
            limit=room,
            launched=launched,
            retry=missing_but_listed(catalog, states),
        )
        register(catalog, requests, registered_by=SENSOR_NAME)
        run_requests += requests.run_requests
        new_partitions += requests.new_partitions
        if consumed < len(candidates):
            # Out of run requests mid-page: resume right after the last version consumed.
            first_left = candidates[consumed][0]
            start_after = contents[first_left - 1]["Key"] if first_left else start_after
            break
        if not page.get("IsTruncated"):
            start_after, sweeps = "", sweeps + 1
            break
        start_after = contents[-1]["Key"] if contents else start_after
    summary = (
        f"listed {listed} objects ({skipped} not videos), requested {len(run_requests)} runs "
        f"in {time.monotonic() - started:.2f}s; sweep #{sweeps}, next after {start_after!r}"
    )
    context.log.info(summary)
    return dg.SensorResult(
        run_requests=run_requests,
        # A tick without runs says why in the UI's tick list, not Dagster's generic text.
        skip_reason=None if run_requests else f"nothing new: {summary}",
        # One request per tick, however many pages it read.
        dynamic_partitions_requests=(
            [videos_partitions.build_add_request(new_partitions)] if new_partitions else []
        ),
        cursor=SweepCursor(start_after, sweeps).dump(),
    )


@dg.sensor(
    name=SENSOR_NAME,
    job=ingest_job,
    minimum_interval_seconds=3,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Watches EDVMP_BUCKET/EDVMP_PREFIX and requests one run per new object "
    "version (run key bucket/key@etag).",
)
def s3_object_sensor(
    context: dg.SensorEvaluationContext,
    catalog: CatalogResource,
    object_store: ObjectStoreResource,
) -> dg.SensorResult:
    """Evaluate one sweep step with settings from the environment."""
    if os.environ.get("EDVMP_OBJECT_SENSOR", "on").strip().lower() in ("off", "0", "false"):
        # On AWS the SQS sensor sees every upload; listing a huge bucket would only cost.
        return dg.SensorResult(skip_reason="EDVMP_OBJECT_SENSOR=off (the SQS sensor is in use)")
    return evaluate_sweep(context, SensorSettings.from_env(), catalog, object_store)
