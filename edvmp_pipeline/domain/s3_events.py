"""S3 "object created" events as they arrive in an SQS message body (pure, no AWS calls).

Shapes understood, all as documented by AWS:

- **EventBridge** (S3 → EventBridge → SQS, the production path): one event per message,
  ``{"detail-type": "Object Created", "source": "aws.s3", "time": ..., "detail": {"bucket":
  {"name": ...}, "object": {"key", "size", "etag", "sequencer", ...}}}``.
- **S3 event notifications** (S3 → SQS directly): ``{"Records": [{"eventName":
  "ObjectCreated:Put", "eventTime": ..., "s3": {"bucket": {"name"}, "object": {"key", "size",
  "eTag", "sequencer"}}}]}``. MinIO-style ``s3:ObjectCreated:Put`` names are accepted too.
- ``s3:TestEvent``, which S3 sends once when a notification is configured: ignored.
- Either of the above wrapped by SNS (``{"Type": "Notification", "Message": "<json>"}``).

Object keys are URL-encoded in these events (a space arrives as ``+``, ``+`` as ``%2B``,
non-ASCII as UTF-8 percent escapes), so every key is decoded with ``unquote_plus``. AWS
Lambda Powertools decodes the EventBridge ``detail.object.key`` the same way.

Events that are not "object created" (deletions, restores, tagging) are *ignored* with a
reason; documents that fit none of the shapes, or lack what identifies a version (bucket,
key, ETag, size), raise :class:`MalformedEvent`. One malformed record makes the whole message
malformed: the message is then moved aside intact rather than half-processed.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import unquote_plus

from edvmp_pipeline.domain.object_keys import MAX_KEY_BYTES
from edvmp_pipeline.domain.records import ObjectVersion

EVENTBRIDGE_CREATED = "Object Created"
# Sizes and keys no S3 object can have. The size goes into a 64-bit integer column of the
# state store: a bigger one raised OverflowError there and failed the whole tick, on every
# redelivery, holding up the other messages received with it.
MAX_SIZE = 2**63 - 1
# S3 bucket names as they exist: today's rules (lower case, digits, '.', '-', 3-63) and the
# legacy us-east-1 names (upper case and '_' allowed, up to 255), which still send events.
_BUCKET_NAME = re.compile(r"^[A-Za-z0-9._-]{3,255}$")
CLASSIC_CREATED_PREFIX = "ObjectCreated:"
TEST_EVENT = "s3:TestEvent"


class MalformedEvent(ValueError):
    """A message body that is not a usable S3 event; ``reason`` says what is wrong."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class ObjectCreatedEvent:
    """One new object version announced by S3 (key decoded, ETag without quotes)."""

    bucket: str
    key: str
    etag: str
    size: int
    event_time: datetime | None
    sequencer: str | None
    event_name: str

    @property
    def source(self) -> str:
        """The catalog source of the object, ``s3://bucket``."""
        return f"s3://{self.bucket}"

    def to_version(self) -> ObjectVersion:
        """The object version this event announces."""
        return ObjectVersion(
            source=self.source,
            object_key=self.key,
            etag=self.etag,
            size_bytes=self.size,
            last_modified=self.event_time,
        )


def outside_watch(event: ObjectCreatedEvent, bucket: str | None, prefix: str) -> str | None:
    """Why ``event`` is not for the watched bucket/prefix (``None`` bucket: any), or None.

    The object sensor lists only ``EDVMP_BUCKET``/``EDVMP_PREFIX``; a queue can also carry
    another bucket's notifications (a second bucket pointed at it, a rule without a filter),
    and those objects are not this deployment's to catalogue.
    """
    if bucket is not None and event.bucket != bucket:
        return f"bucket {event.bucket!r} is not the watched bucket {bucket!r}"
    if prefix and not event.key.startswith(prefix):
        return f"key is outside the watched prefix {prefix!r}"
    return None


@dataclass(frozen=True)
class ParsedMessage:
    """What one message holds: created events, and a reason per thing ignored."""

    events: tuple[ObjectCreatedEvent, ...] = ()
    ignored: tuple[str, ...] = ()


def parse_message(body: str | bytes) -> ParsedMessage:
    """Parse one SQS message body; raises :class:`MalformedEvent` with a specific reason."""
    doc = _load_json(body, "message body")
    if doc.get("Type") in ("Notification", "SubscriptionConfirmation", "UnsubscribeConfirmation"):
        return _parse_sns(doc)
    return _parse_document(doc)


def _load_json(text: str | bytes, what: str) -> dict[str, Any]:
    try:
        doc = json.loads(text)
    except (ValueError, TypeError) as exc:
        raise MalformedEvent(f"{what} is not JSON ({exc})") from None
    except RecursionError:
        # "[[[[…" fits in one SQS message: json.loads raised out of the tick, every time.
        raise MalformedEvent(f"{what} is JSON nested too deeply to be an S3 event") from None
    if not isinstance(doc, dict):
        raise MalformedEvent(f"{what} is JSON but not an object (got {type(doc).__name__})")
    try:
        # JSON may spell a lone surrogate ("\\ud800"), which json.loads keeps: such a key,
        # ETag or bucket cannot be encoded for the state store, the logs or S3, and used to
        # fail the whole tick on every redelivery. No S3 event carries one.
        json.dumps(doc, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError as exc:
        bad = exc.object[exc.start : exc.end].encode("unicode_escape").decode("ascii")
        raise MalformedEvent(f"{what} is not valid Unicode (lone surrogate {bad})") from None
    except RecursionError:
        raise MalformedEvent(f"{what} is JSON nested too deeply to be an S3 event") from None
    return doc


def _parse_sns(doc: dict[str, Any]) -> ParsedMessage:
    kind = doc["Type"]
    if kind != "Notification":
        # Subscription handshakes are legitimate SNS traffic, not events.
        return ParsedMessage(ignored=(f"SNS {kind} message",))
    message = doc.get("Message")
    if not isinstance(message, str):
        raise MalformedEvent("SNS notification without a string 'Message'")
    inner = _load_json(message, "SNS 'Message'")
    if "Type" in inner and "Message" in inner:
        # One level of wrapping is what S3 → SNS → SQS produces; more is a misconfiguration.
        raise MalformedEvent("SNS notification wrapping another SNS notification")
    return _parse_document(inner)


def _parse_document(doc: dict[str, Any]) -> ParsedMessage:
    if doc.get("Event") == TEST_EVENT:
        return ParsedMessage(ignored=(f"{TEST_EVENT} (sent once when notifications are set up)",))
    if "detail-type" in doc:
        return _parse_eventbridge(doc)
    if "Records" in doc:
        return _parse_records(doc["Records"])
    keys = ", ".join(sorted(doc)[:8]) or "none"
    raise MalformedEvent(
        f"neither an EventBridge event nor an S3 notification (top-level keys: {keys})"
    )


def _parse_eventbridge(doc: dict[str, Any]) -> ParsedMessage:
    if doc.get("source") != "aws.s3":
        raise MalformedEvent(f"EventBridge event from source {doc.get('source')!r}, not 'aws.s3'")
    detail_type = doc["detail-type"]
    if not isinstance(detail_type, str):
        raise MalformedEvent("EventBridge 'detail-type' is not a string")
    if detail_type != EVENTBRIDGE_CREATED:
        return ParsedMessage(ignored=(f"{detail_type!r} is not an object-created event",))
    detail = _obj(doc.get("detail"), "detail")
    obj = _obj(detail.get("object"), "detail.object")
    bucket = _obj(detail.get("bucket"), "detail.bucket").get("name")
    event = ObjectCreatedEvent(
        bucket=_bucket(bucket, "detail.bucket.name"),
        key=_key(obj.get("key"), "detail.object.key"),
        etag=_etag(obj.get("etag"), "detail.object.etag"),
        size=_size(obj.get("size"), "detail.object.size"),
        event_time=_time(doc.get("time")),
        sequencer=_optional_text(obj.get("sequencer")),
        event_name=f"{EVENTBRIDGE_CREATED}:{detail.get('reason') or 'unknown'}",
    )
    return ParsedMessage(events=(event,))


def _parse_records(records: Any) -> ParsedMessage:
    if not isinstance(records, list) or not records:
        raise MalformedEvent("'Records' is not a non-empty list")
    events: list[ObjectCreatedEvent] = []
    ignored: list[str] = []
    for i, record in enumerate(records):
        where = f"Records[{i}]"
        record = _obj(record, where)
        name = record.get("eventName")
        if not isinstance(name, str) or not name:
            raise MalformedEvent(f"{where}.eventName is missing")
        # MinIO and some S3-compatible servers prefix the name with "s3:".
        bare = name.removeprefix("s3:")
        if not bare.startswith(CLASSIC_CREATED_PREFIX):
            ignored.append(f"{name} is not an object-created event")
            continue
        s3 = _obj(record.get("s3"), f"{where}.s3")
        obj = _obj(s3.get("object"), f"{where}.s3.object")
        events.append(
            ObjectCreatedEvent(
                bucket=_bucket(
                    _obj(s3.get("bucket"), f"{where}.s3.bucket").get("name"),
                    f"{where}.s3.bucket.name",
                ),
                key=_key(obj.get("key"), f"{where}.s3.object.key"),
                etag=_etag(obj.get("eTag"), f"{where}.s3.object.eTag"),
                size=_size(obj.get("size"), f"{where}.s3.object.size"),
                event_time=_time(record.get("eventTime")),
                sequencer=_optional_text(obj.get("sequencer")),
                event_name=bare,
            )
        )
    return ParsedMessage(events=tuple(events), ignored=tuple(ignored))


def _obj(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise MalformedEvent(f"{where} is missing or not an object")
    return value


def _text(value: Any, where: str) -> str:
    if not isinstance(value, str) or not value:
        raise MalformedEvent(f"{where} is missing or empty")
    return value


def _bucket(value: Any, where: str) -> str:
    name = _text(value, where)
    if not _BUCKET_NAME.match(name):
        # The name becomes the catalog source s3://<name>: a '/' or a space there would name
        # another bucket and key, or none.
        raise MalformedEvent(f"{where} {name[:80]!r} is not an S3 bucket name")
    return name


def _optional_text(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _key(value: Any, where: str) -> str:
    raw = _text(value, where)
    try:
        # strict: a bad percent escape must not silently become U+FFFD in a key.
        key = unquote_plus(raw, errors="strict")
    except UnicodeDecodeError:
        raise MalformedEvent(f"{where} {raw!r} does not URL-decode to UTF-8") from None
    if not key:
        raise MalformedEvent(f"{where} decodes to an empty key")
    size = len(key.encode("utf-8"))
    if size > MAX_KEY_BYTES:
        # S3 refuses such keys, so no object has one: a forged or corrupted event.
        raise MalformedEvent(
            f"{where} decodes to {size} bytes of UTF-8, over S3's {MAX_KEY_BYTES}-byte key limit"
        )
    return key


def _etag(value: Any, where: str) -> str:
    etag = _text(value, where).strip().strip('"')
    if not etag:
        raise MalformedEvent(f"{where} is empty")
    return etag


def _size(value: Any, where: str) -> int:
    # bool is an int in Python; a JSON true is not a size.
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise MalformedEvent(f"{where} is missing or not a non-negative integer ({value!r})")
    if value > MAX_SIZE:
        # Not the number itself: a JSON integer may have thousands of digits.
        raise MalformedEvent(f"{where} is over {MAX_SIZE} bytes, larger than any object can be")
    return value


def _time(value: Any) -> datetime | None:
    # The event time is informative (last_modified); a missing or odd one is not fatal.
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    if parsed.tzinfo is None:
        # S3 writes UTC; a time without an offset is taken as such, not as local time.
        parsed = parsed.replace(tzinfo=UTC)
    try:
        # In UTC, as the state store keeps it: "0001-01-01T00:00:00+14:00" is in year 0 there,
        # and was stored, after which every read of the version (its run, `edvmp status`, an
        # ingest of the bucket) raised "year 0 is out of range".
        return parsed.astimezone(UTC)
    except OverflowError:
        return None
