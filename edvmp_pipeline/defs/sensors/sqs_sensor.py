"""The SQS event sensor: S3 "Object Created" events (S3 → EventBridge → SQS) become runs.

The production path on AWS. Each tick receives at most ``max_messages`` messages, so its cost
grows with the number of new objects, never with the bucket (it never lists it). Every new
object version gets the same ``AddDynamicPartitionsRequest`` + ``RunRequest`` (run key
``bucket/key@etag``) as the object sensor, through ``sensors/run_requests.py``.

Exactly once per version, with at-least-once delivery:

- **Delete only after the run request is registered.** The Dagster daemon stores a tick's
  cursor only after it has created the tick's runs. So the receipt handles of the messages
  behind this tick's run requests go into the cursor and are deleted at the start of the
  *next* tick: by then the runs exist. Messages are received with a visibility timeout
  (default 300 s) far longer than the sensor interval, so they stay hidden, and their receipt
  handles valid, until that next tick. If the daemon dies in between, or is down longer than
  the timeout, the messages reappear and are processed again, harmlessly (next point).
- **Duplicates and reordering are harmless.** Versions are deduplicated within a tick; a
  version already in the catalog is requested again only while it is PENDING (its run may
  never have been created), and not even then when the Dagster instance already has a run
  with that run key (from any sensor, so the object sensor and this one never both launch
  one version). Two versions of one key arriving out of order are two versions.
- **Bad input never crashes the tick.** A malformed message is sent to the DLQ
  (``EDVMP_SQS_DLQ_URL``) with the reason in the ``edvmp_reason`` message attribute and
  deleted; with no DLQ configured it is logged and left to the queue's own redrive policy.
  Messages with nothing to run (deletions, ``s3:TestEvent``, non-video keys) are deleted at
  once.
"""

from __future__ import annotations

import json
import math
import os
import re
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import boto3
import dagster as dg
from botocore.config import Config

from edvmp_pipeline.defs.catalog_resource import CatalogResource
from edvmp_pipeline.defs.jobs import ingest_job
from edvmp_pipeline.defs.sensors.run_requests import (
    drop_already_launched,
    known_states,
    missing_but_listed,
    plan_requests,
    register,
)
from edvmp_pipeline.domain.partition_keys import partition_key_for
from edvmp_pipeline.domain.records import ObjectVersion
from edvmp_pipeline.domain.s3_events import MalformedEvent, outside_watch, parse_message
from edvmp_pipeline.domain.video_filter import parse_extensions, skip_reason
from edvmp_pipeline.settings import env_int, uploads_bucket, uploads_prefix

SENSOR_NAME = "sqs_event_sensor"
TRIGGER = "sqs-sensor"
REASON_ATTRIBUTE = "edvmp_reason"
# Dagster's own tag for a sensor run's run key (RUN_KEY_TAG in Dagster's storage tags).
# SQS hard limits: 10 messages per receive and per batch delete.
SQS_BATCH = 10
_REASON_MAX = 1000
_QUEUE_REGION = re.compile(r"^https://sqs[.-]([a-z0-9-]+)\.amazonaws\.com", re.IGNORECASE)


@dataclass(frozen=True)
class SqsSettings:
    """Which queue to read and how much per tick (``EDVMP_SQS_*`` variables)."""

    queue_url: str | None = None
    dlq_url: str | None = None
    region: str | None = None
    endpoint_url: str | None = None
    max_messages: int = 100
    visibility_timeout_s: int = 300
    wait_time_s: int = 1
    extensions: frozenset[str] = field(default_factory=lambda: parse_extensions(None))
    bucket: str | None = None
    """Events of other buckets are ignored; None: events of any bucket are taken."""
    prefix: str = ""
    """Events for keys outside it are ignored."""

    @classmethod
    def from_env(cls) -> SqsSettings:
        """Settings from ``EDVMP_SQS_*``, ``EDVMP_VIDEO_EXTENSIONS``, ``AWS_DEFAULT_REGION``,
        and ``EDVMP_BUCKET``/``EDVMP_PREFIX`` (what the object sensor watches)."""
        return cls(
            # Only an explicit EDVMP_BUCKET scopes the queue: its default ("uploads") is the
            # local stack's, and ignoring every event of a queue fed by another bucket would
            # be a silent outage.
            bucket=uploads_bucket() if os.environ.get("EDVMP_BUCKET") else None,
            prefix=uploads_prefix(),
            queue_url=os.environ.get("EDVMP_SQS_QUEUE_URL") or None,
            dlq_url=os.environ.get("EDVMP_SQS_DLQ_URL") or None,
            region=os.environ.get("EDVMP_SQS_REGION") or None,
            endpoint_url=os.environ.get("EDVMP_SQS_ENDPOINT_URL") or None,
            max_messages=env_int("EDVMP_SQS_MAX_MESSAGES", 100),
            visibility_timeout_s=env_int("EDVMP_SQS_VISIBILITY_TIMEOUT_S", 300, minimum=30),
            wait_time_s=env_int("EDVMP_SQS_WAIT_S", 1, minimum=0),
            extensions=parse_extensions(os.environ.get("EDVMP_VIDEO_EXTENSIONS")),
        )

    def resolved_region(self) -> str:
        """Explicit region, else the one in an AWS queue URL, else ``AWS_DEFAULT_REGION``."""
        if self.region:
            return self.region
        match = _QUEUE_REGION.match(self.queue_url or "")
        if match:
            return match.group(1)
        return os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"

    def client(self) -> Any:
        """A boto3 SQS client for the configured endpoint (AWS when none)."""
        config = Config(
            connect_timeout=5,
            # Long polls hold the connection for wait_time_s; leave room above it.
            read_timeout=self.wait_time_s + 20,
            retries={"mode": "standard", "max_attempts": 3},
        )
        return boto3.client(
            "sqs",
            region_name=self.resolved_region(),
            endpoint_url=self.endpoint_url,
            config=config,
        )


@dataclass(frozen=True)
class QueueCursor:
    """Receipt handles of messages whose run requests the last tick returned."""

    delete_next: tuple[str, ...] = ()

    @classmethod
    def parse(cls, text: str | None) -> QueueCursor:
        """Parse a stored cursor; an unreadable one forgets the handles.

        Forgetting is safe: those messages reappear after their visibility timeout and are
        deduplicated by run key.
        """
        if not text:
            return cls()
        try:
            handles = json.loads(text).get("delete_next", [])
            return cls(tuple(h for h in handles if isinstance(h, str) and h))
        except (ValueError, TypeError, AttributeError):
            return cls()

    def dump(self) -> str:
        """The cursor as stored by Dagster."""
        return json.dumps({"delete_next": list(self.delete_next)})


@dataclass
class _Message:
    """One received message and what this tick made of it."""

    raw: dict[str, Any]
    versions: list[ObjectVersion] = field(default_factory=list)
    malformed: str | None = None

    @property
    def handle(self) -> str:
        return self.raw["ReceiptHandle"]

    @property
    def message_id(self) -> str:
        return self.raw.get("MessageId", "?")


def evaluate_queue(
    context: dg.SensorEvaluationContext,
    settings: SqsSettings,
    catalog_resource: CatalogResource,
) -> dg.SensorResult | dg.SkipReason:
    """One tick: delete last tick's messages, receive new ones, request their versions."""
    if not settings.queue_url:
        return dg.SkipReason(
            "EDVMP_SQS_QUEUE_URL is not set: the SQS event sensor is idle (set it to the queue "
            "that EventBridge sends S3 'Object Created' events to)"
        )
    started = time.monotonic()
    log = context.log
    cursor = QueueCursor.parse(context.cursor)
    client = settings.client()
    queue = settings.queue_url
    # The cursor holding these handles was stored, so their runs exist: now they may go.
    deleted = _delete(client, queue, cursor.delete_next, log, why="run requested last tick")

    raws, receive_error = _receive(client, settings, log)
    if not raws:
        reason = f"receive failed: {receive_error}" if receive_error else "no messages"
        return dg.SensorResult(skip_reason=reason, cursor=QueueCursor().dump())

    messages = [_read(raw, settings, log) for raw in raws]
    versions = _unique(v for m in messages for v in m.versions)
    catalog = catalog_resource.catalog()
    states = known_states(catalog, versions)
    # A new event for a version that failed as missing: it was uploaded again (same bytes).
    retry = missing_but_listed(catalog, states)
    requests, _ = plan_requests(versions, states, trigger=TRIGGER, limit=len(versions), retry=retry)
    # A PENDING version is requested again in case its run was never created; skip that when
    # the instance shows the run exists (whichever sensor created it).
    instance = _instance(context)
    drop_already_launched(instance, requests)
    register(catalog, requests, registered_by=SENSOR_NAME)

    # By partition: a re-request of a version that failed as missing has run key "…#n".
    requested = {rr.partition_key for rr in requests.run_requests}
    defer = [
        m
        for m in messages
        if any(partition_key_for(v.source, v.object_key, v.etag) in requested for v in m.versions)
    ]
    deferred = {id(m) for m in defer}
    done_now = [m for m in messages if m.malformed is None and id(m) not in deferred]
    _delete(client, queue, [m.handle for m in done_now], log, why="nothing to run")
    malformed = [m for m in messages if m.malformed is not None]
    moved = _move_aside(client, settings, malformed, log)

    summary = (
        f"{len(raws)} messages: {len(requests.run_requests)} run requests "
        f"({len(requests.new_versions)} new versions), {len(done_now)} with nothing to run, "
        f"{len(malformed)} malformed ({moved} moved to the DLQ); deleted {deleted} from the "
        f"last tick; {time.monotonic() - started:.2f}s"
    )
    log.info(summary)
    return dg.SensorResult(
        run_requests=requests.run_requests,
        dynamic_partitions_requests=requests.add_request(),
        cursor=QueueCursor(tuple(m.handle for m in defer)).dump(),
        skip_reason=None if requests.run_requests else summary,
    )


def _receive(
    client: Any, settings: SqsSettings, log: Any
) -> tuple[list[dict[str, Any]], str | None]:
    """Up to ``max_messages`` messages in receives of 10; stops at the first empty one."""
    received: list[dict[str, Any]] = []
    for _ in range(math.ceil(settings.max_messages / SQS_BATCH)):
        want = min(SQS_BATCH, settings.max_messages - len(received))
        try:
            batch = client.receive_message(
                QueueUrl=settings.queue_url,
                MaxNumberOfMessages=want,
                VisibilityTimeout=settings.visibility_timeout_s,
                # A short long-poll asks every SQS server, not a sample, so an almost empty
                # queue still yields its messages.
                WaitTimeSeconds=settings.wait_time_s,
                MessageSystemAttributeNames=["ApproximateReceiveCount", "SentTimestamp"],
            ).get("Messages", [])
        except Exception as exc:
            # Keep what was received: those messages are hidden now and can be handled.
            log.warning(f"receive from {settings.queue_url} failed: {exc}")
            return received, str(exc)
        if not batch:
            break
        received += batch
    return received, None


def _read(raw: dict[str, Any], settings: SqsSettings, log: Any) -> _Message:
    """Parse one message into versions to consider, or mark it malformed."""
    message = _Message(raw)
    try:
        parsed = parse_message(raw.get("Body", ""))
    except MalformedEvent as exc:
        message.malformed = exc.reason
        return message
    for reason in parsed.ignored:
        log.info(f"message {message.message_id}: ignored: {reason}")
    for event in parsed.events:
        reason = outside_watch(event, settings.bucket, settings.prefix) or skip_reason(
            event.key, settings.extensions
        )
        if reason is not None:
            where = f"{event.source}/{event.key!r}"
            log.info(f"message {message.message_id}: skipping {where}: {reason}")
            continue
        message.versions.append(event.to_version())
    return message


def _unique(versions: Iterable[ObjectVersion]) -> list[ObjectVersion]:
    """One entry per (source, key, ETag), first seen kept (duplicate deliveries collapse)."""
    seen: dict[tuple[str, str, str], ObjectVersion] = {}
    for v in versions:
        seen.setdefault((v.source, v.object_key, v.etag), v)
    return list(seen.values())


def _instance(context: dg.SensorEvaluationContext) -> dg.DagsterInstance | None:
    try:
        return context.instance
    except Exception:
        # No instance to ask (e.g. a bare test context): Dagster's own run-key check remains.
        return None


def _delete(client: Any, queue_url: str, handles: Iterable[str], log: Any, *, why: str) -> int:
    """Batch-delete messages; failures are logged, never raised. Returns how many went."""
    handles = list(handles)
    deleted = 0
    for start in range(0, len(handles), SQS_BATCH):
        chunk = handles[start : start + SQS_BATCH]
        entries = [{"Id": str(i), "ReceiptHandle": h} for i, h in enumerate(chunk)]
        try:
            answer = client.delete_message_batch(QueueUrl=queue_url, Entries=entries)
        except Exception as exc:
            # The messages reappear after their visibility timeout; run keys dedupe them.
            log.warning(f"deleting {len(chunk)} messages ({why}) failed: {exc}")
            continue
        deleted += len(answer.get("Successful", []))
        for failure in answer.get("Failed", []):
            # Typically an expired receipt handle: the message was (or will be) redelivered.
            log.warning(
                f"could not delete a message ({why}): {failure.get('Code')}: "
                f"{failure.get('Message')}; it will be redelivered and deduplicated by run key"
            )
    return deleted


def _move_aside(client: Any, settings: SqsSettings, malformed: list[_Message], log: Any) -> int:
    """Send malformed messages to the DLQ with their reason, then delete them."""
    moved: list[str] = []
    for m in malformed:
        where = f"message {m.message_id}"
        if not settings.dlq_url:
            log.warning(
                f"{where} is malformed ({m.malformed}); no EDVMP_SQS_DLQ_URL, so it is left "
                "for the queue's redrive policy"
            )
            continue
        kwargs: dict[str, Any] = {
            "QueueUrl": settings.dlq_url,
            # SQS needs a non-empty body; an empty one is itself the problem reported.
            "MessageBody": m.raw.get("Body") or "(empty body)",
            "MessageAttributes": {
                REASON_ATTRIBUTE: {
                    "DataType": "String",
                    "StringValue": (m.malformed or "malformed")[:_REASON_MAX],
                },
                "edvmp_source_queue": {"DataType": "String", "StringValue": settings.queue_url},
                "edvmp_message_id": {"DataType": "String", "StringValue": m.message_id},
            },
        }
        if settings.dlq_url.endswith(".fifo"):
            kwargs["MessageGroupId"] = "edvmp-malformed"
            kwargs["MessageDeduplicationId"] = m.message_id[:128]
        try:
            client.send_message(**kwargs)
        except Exception as exc:
            # Not deleted: it comes back after the visibility timeout and is tried again.
            log.warning(f"{where} is malformed ({m.malformed}); moving it to the DLQ failed: {exc}")
            continue
        log.warning(f"{where} is malformed ({m.malformed}); moved to {settings.dlq_url}")
        moved.append(m.handle)
    return _delete(client, settings.queue_url or "", moved, log, why="moved to the DLQ")


@dg.sensor(
    name=SENSOR_NAME,
    job=ingest_job,
    minimum_interval_seconds=5,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Reads S3 'Object Created' events from EDVMP_SQS_QUEUE_URL (EventBridge or "
    "S3-notification shape) and requests one run per new object version (run key "
    "bucket/key@etag). Idle when the variable is unset.",
)
def sqs_event_sensor(
    context: dg.SensorEvaluationContext,
    catalog: CatalogResource,
) -> dg.SensorResult | dg.SkipReason:
    """Evaluate one queue tick with settings from the environment."""
    return evaluate_queue(context, SqsSettings.from_env(), catalog)
