"""Parsing S3 event messages, with documents in the shapes AWS documents and delivers.

The fixtures below follow the examples in the Amazon S3 user guide ("Event message
structure" for S3 event notifications, "EventBridge event message structure" for EventBridge)
field for field; keys are URL-encoded the way S3 encodes them (space → ``+``, ``+`` → ``%2B``,
UTF-8 percent escapes). ``test_sqs_sensor.py`` reuses the builders.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from edvmp_pipeline.domain.s3_events import (
    MalformedEvent,
    ObjectCreatedEvent,
    outside_watch,
    parse_message,
)

# "incoming/My Holiday 動画 (final).mp4" as S3 puts it in an event.
ENCODED_UNICODE_KEY = "incoming/My+Holiday+%E5%8B%95%E7%94%BB+%28final%29.mp4"
DECODED_UNICODE_KEY = "incoming/My Holiday 動画 (final).mp4"


def eventbridge_created(
    key: str = "example-key.mp4",
    *,
    bucket: str = "amzn-s3-demo-bucket1",
    etag: str = "b1946ac92492d2347c6235b4d2611184",
    size: int = 5,
    sequencer: str = "00617F08299329D189",
    time: str = "2021-11-12T00:00:00Z",
) -> str:
    """An EventBridge "Object Created" event as delivered to an SQS target."""
    return json.dumps(
        {
            "version": "0",
            "id": "17793124-05d4-b198-2fde-7ededc63b103",
            "detail-type": "Object Created",
            "source": "aws.s3",
            "account": "111122223333",
            "time": time,
            "region": "ca-central-1",
            "resources": [f"arn:aws:s3:::{bucket}"],
            "detail": {
                "version": "0",
                "bucket": {"name": bucket},
                "object": {
                    "key": key,
                    "size": size,
                    "etag": etag,
                    "version-id": "IYV3p45BT0ac8hjHg1houSdS1a.Mro8e",
                    "sequencer": sequencer,
                },
                "request-id": "N4N7GDK58NMKJ12R",
                "requester": "123456789012",
                "source-ip-address": "1.2.3.4",
                "reason": "PutObject",
            },
        }
    )


def eventbridge_deleted(key: str = "example-key.mp4", bucket: str = "amzn-s3-demo-bucket1") -> str:
    """An EventBridge "Object Deleted" event (no size, no ETag)."""
    return json.dumps(
        {
            "version": "0",
            "id": "2ee9cc15-d022-99ea-1fb8-1b1bac4850f9",
            "detail-type": "Object Deleted",
            "source": "aws.s3",
            "account": "111122223333",
            "time": "2021-11-12T00:00:00Z",
            "region": "ca-central-1",
            "resources": [f"arn:aws:s3:::{bucket}"],
            "detail": {
                "version": "0",
                "bucket": {"name": bucket},
                "object": {
                    "key": key,
                    "version-id": "1QW9g1Z99LUNbvaaYVpW9xDlOLU.qxgF",
                    "sequencer": "00617F0D8DD7B4E9A8",
                },
                "request-id": "0BH729840619AG5K",
                "requester": "123456789012",
                "source-ip-address": "1.2.3.4",
                "reason": "DeleteObject",
                "deletion-type": "Delete Marker Created",
            },
        }
    )


def s3_record(
    key: str = "HappyFace.mp4",
    *,
    event_name: str = "ObjectCreated:Put",
    bucket: str = "amzn-s3-demo-bucket",
    etag: str | None = "d41d8cd98f00b204e9800998ecf8427e",
    size: int | None = 1024,
    sequencer: str = "0055AED6DCD90281E5",
) -> dict:
    """One record of an S3 event notification (event structure version 2.1)."""
    obj: dict = {"key": key}
    if size is not None:
        obj["size"] = size
    if etag is not None:
        obj["eTag"] = etag
    obj["versionId"] = "096fKKXTRTtl3on89fVO.nfljtsv6qko"
    obj["sequencer"] = sequencer
    return {
        "eventVersion": "2.1",
        "eventSource": "aws:s3",
        "awsRegion": "us-west-2",
        "eventTime": "1970-01-01T00:00:00.000Z",
        "eventName": event_name,
        "userIdentity": {"principalId": "AIDAJDPLRKLG7UEXAMPLE"},
        "requestParameters": {"sourceIPAddress": "127.0.0.1"},
        "responseElements": {
            "x-amz-request-id": "C3D13FE58DE4C810",
            "x-amz-id-2": "FMyUVURIY8/IgAtTv8xRjskZQpcIZ9KG4V5Wp6S7S/JRWeUWerMUE5JgHvANOjpD",
        },
        "s3": {
            "s3SchemaVersion": "1.0",
            "configurationId": "testConfigRule",
            "bucket": {
                "name": bucket,
                "ownerIdentity": {"principalId": "A3NL1KOZZKExample"},
                "arn": f"arn:aws:s3:::{bucket}",
            },
            "object": obj,
        },
    }


def s3_notification(*records: dict) -> str:
    """An S3 event notification message body."""
    return json.dumps({"Records": list(records) or [s3_record()]})


def s3_test_event(bucket: str = "amzn-s3-demo-bucket") -> str:
    """The message S3 sends once when a notification configuration is saved."""
    return json.dumps(
        {
            "Service": "Amazon S3",
            "Event": "s3:TestEvent",
            "Time": "2014-10-13T15:57:02.089Z",
            "Bucket": bucket,
            "RequestId": "5582815E1AEA5ADF",
            "HostId": "8cLeGAmw098X5cv4Zkwcmo8vvZa3eH3eKxsPzbB9wrR+YstdA6Knx4Ip8EXAMPLE",
        }
    )


def sns_wrapped(message: str) -> str:
    """An SNS notification (raw message delivery off) carrying ``message``."""
    return json.dumps(
        {
            "Type": "Notification",
            "MessageId": "22b80b92-fdea-4c2c-8f9d-bdfb0c7bf324",
            "TopicArn": "arn:aws:sns:us-west-2:123456789012:MyTopic",
            "Subject": "Amazon S3 Notification",
            "Message": message,
            "Timestamp": "2012-05-02T00:54:06.655Z",
            "SignatureVersion": "1",
            "Signature": "EXAMPLEw6JRN...",
            "SigningCertURL": "https://sns.us-west-2.amazonaws.com/SimpleNotificationService.pem",
            "UnsubscribeURL": "https://sns.us-west-2.amazonaws.com/?Action=Unsubscribe",
        }
    )


# -- the shapes ---------------------------------------------------------------------------


def test_eventbridge_object_created() -> None:
    parsed = parse_message(eventbridge_created(ENCODED_UNICODE_KEY, size=31_337))
    assert parsed.ignored == ()
    assert parsed.events == (
        ObjectCreatedEvent(
            bucket="amzn-s3-demo-bucket1",
            key=DECODED_UNICODE_KEY,
            etag="b1946ac92492d2347c6235b4d2611184",
            size=31_337,
            event_time=datetime(2021, 11, 12, tzinfo=UTC),
            sequencer="00617F08299329D189",
            event_name="Object Created:PutObject",
        ),
    )
    version = parsed.events[0].to_version()
    assert (version.source, version.object_key, version.size_bytes) == (
        "s3://amzn-s3-demo-bucket1",
        DECODED_UNICODE_KEY,
        31_337,
    )


def test_classic_notification_decodes_plus_and_percent_escapes() -> None:
    parsed = parse_message(
        s3_notification(
            s3_record("c%2B%2B+talk.mp4"),
            s3_record(ENCODED_UNICODE_KEY, event_name="ObjectCreated:CompleteMultipartUpload"),
        )
    )
    assert [e.key for e in parsed.events] == ["c++ talk.mp4", DECODED_UNICODE_KEY]
    first = parsed.events[0]
    assert first.bucket == "amzn-s3-demo-bucket"
    assert first.etag == "d41d8cd98f00b204e9800998ecf8427e"
    assert first.size == 1024
    assert first.sequencer == "0055AED6DCD90281E5"
    assert first.event_time == datetime(1970, 1, 1, tzinfo=UTC)
    assert parsed.events[1].event_name == "ObjectCreated:CompleteMultipartUpload"


def test_multipart_etag_and_quotes_are_kept_opaque() -> None:
    parsed = parse_message(eventbridge_created(etag='"9b2cf535f27731c974343645a3985328-12"'))
    assert parsed.events[0].etag == "9b2cf535f27731c974343645a3985328-12"


def test_minio_style_event_names_are_accepted() -> None:
    parsed = parse_message(s3_notification(s3_record(event_name="s3:ObjectCreated:Put")))
    assert parsed.events[0].event_name == "ObjectCreated:Put"


def test_sns_wrapped_notifications() -> None:
    assert parse_message(sns_wrapped(s3_notification())).events[0].key == "HappyFace.mp4"
    assert parse_message(sns_wrapped(eventbridge_created())).events[0].key == "example-key.mp4"
    confirm = json.dumps({"Type": "SubscriptionConfirmation", "Message": "You have chosen..."})
    assert parse_message(confirm).ignored == ("SNS SubscriptionConfirmation message",)


# -- ignored, not malformed ---------------------------------------------------------------


def test_test_event_is_ignored() -> None:
    parsed = parse_message(s3_test_event())
    assert parsed.events == ()
    assert "s3:TestEvent" in parsed.ignored[0]


def test_removals_are_ignored_with_a_reason() -> None:
    parsed = parse_message(eventbridge_deleted())
    assert parsed.events == ()
    assert parsed.ignored == ("'Object Deleted' is not an object-created event",)
    removed = s3_record(event_name="ObjectRemoved:Delete", etag=None, size=None)
    parsed = parse_message(s3_notification(removed, s3_record("kept.mp4")))
    assert [e.key for e in parsed.events] == ["kept.mp4"]
    assert parsed.ignored == ("ObjectRemoved:Delete is not an object-created event",)


def test_missing_event_time_is_not_fatal() -> None:
    doc = json.loads(eventbridge_created())
    doc["time"] = "yesterday"
    assert parse_message(json.dumps(doc)).events[0].event_time is None


@pytest.mark.parametrize(
    ("time", "expected"),
    [
        ("2021-11-12T01:00:00+01:00", datetime(2021, 11, 12, tzinfo=UTC)),
        ("2021-11-12T00:00:00", datetime(2021, 11, 12, tzinfo=UTC)),  # no offset: UTC
        # Outside years 1-9999 once in UTC: the state store could not read it back.
        ("0001-01-01T00:00:00+14:00", None),
        ("9999-12-31T23:59:59-14:00", None),
    ],
)
def test_event_times_are_kept_in_utc_or_dropped(time: str, expected: datetime | None) -> None:
    event_time = parse_message(eventbridge_created(time=time)).events[0].event_time
    assert event_time == expected
    assert event_time is None or event_time.utcoffset() == timedelta(0)


# -- malformed ----------------------------------------------------------------------------


def _without(body: str, *path: str) -> str:
    doc = json.loads(body)
    node = doc
    for step in path[:-1]:
        node = node[int(step)] if isinstance(node, list) else node[step]
    del node[path[-1]]
    return json.dumps(doc)


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ("not json at all", "message body is not JSON"),
        ("", "message body is not JSON"),
        ("[1, 2]", "JSON but not an object (got list)"),
        ('{"hello": "world"}', "neither an EventBridge event nor an S3 notification"),
        ('{"Records": []}', "'Records' is not a non-empty list"),
        ('{"Records": ["x"]}', "Records[0] is missing or not an object"),
        (_without(eventbridge_created(), "detail", "object", "key"), "detail.object.key"),
        (_without(eventbridge_created(), "detail", "object", "etag"), "detail.object.etag"),
        (_without(eventbridge_created(), "detail", "object", "size"), "detail.object.size"),
        (_without(eventbridge_created(), "detail", "bucket"), "detail.bucket is missing"),
        (_without(eventbridge_created(), "detail"), "detail is missing"),
        (
            _without(s3_notification(), "Records", "0", "s3", "object", "eTag"),
            "Records[0].s3.object.eTag is missing",
        ),
        (
            _without(s3_notification(), "Records", "0", "s3", "object", "key"),
            "Records[0].s3.object.key is missing",
        ),
        (_without(s3_notification(), "Records", "0", "eventName"), "eventName is missing"),
        (s3_notification(s3_record("bad%FFescape.mp4")), "does not URL-decode to UTF-8"),
        (eventbridge_created(size=-1), "not a non-negative integer"),
        (eventbridge_created(etag='""'), "detail.object.etag is empty"),
        (
            json.dumps({"detail-type": "Object Created", "source": "aws.ec2", "detail": {}}),
            "source 'aws.ec2', not 'aws.s3'",
        ),
        (json.dumps({"Type": "Notification", "Message": "{oops"}), "SNS 'Message' is not JSON"),
        (sns_wrapped(sns_wrapped(s3_notification())), "wrapping another SNS notification"),
        # Legal JSON, impossible S3 events: each once reached the state store.
        (eventbridge_created(size=2**63), "larger than any object can be"),
        (eventbridge_created("a" * 1021 + ".mp4"), "1025 bytes of UTF-8, over S3's 1024-byte"),
        (eventbridge_created("%C3%A9" * 513), "1026 bytes of UTF-8"),
        (eventbridge_created().replace("example-key", "\\udc80"), "lone surrogate \\udc80"),
        (
            sns_wrapped(s3_notification()).replace("HappyFace", "\\\\ud83c"),
            "SNS 'Message' is not valid Unicode (lone surrogate \\ud83c)",
        ),
        (eventbridge_created(bucket="a/b"), "detail.bucket.name 'a/b' is not an S3 bucket name"),
        (s3_notification(s3_record(bucket="a b")), "Records[0].s3.bucket.name 'a b' is not"),
        ("[" * 100_000 + "]" * 100_000, "message body is JSON nested too deeply"),
        (sns_wrapped("[" * 100_000 + "]" * 100_000), "SNS 'Message' is JSON nested too deeply"),
    ],
)
def test_malformed_messages_raise_with_a_specific_reason(body: str, reason: str) -> None:
    with pytest.raises(MalformedEvent) as caught:
        parse_message(body)
    assert reason in caught.value.reason


def test_the_largest_possible_key_and_size_and_legacy_bucket_names_are_accepted() -> None:
    key = "é" * 512  # 1024 bytes of UTF-8
    body = eventbridge_created("%C3%A9" * 512, size=2**63 - 1, bucket="Legacy_Bucket.2009")
    event = parse_message(body).events[0]
    assert (event.key, event.size, event.bucket) == (key, 2**63 - 1, "Legacy_Bucket.2009")
    # A surrogate *pair* is how JSON spells an emoji: valid, kept.
    body = eventbridge_created().replace("example-key", "\\ud83c\\udfac")
    assert parse_message(body).events[0].key == "\U0001f3ac.mp4"


def test_outside_watch_names_the_bucket_or_prefix() -> None:
    event = parse_message(eventbridge_created("in/a.mp4", bucket="mine")).events[0]
    assert outside_watch(event, None, "") is None
    assert outside_watch(event, "mine", "in/") is None
    assert outside_watch(event, "theirs", "") == "bucket 'mine' is not the watched bucket 'theirs'"
    assert outside_watch(event, "mine", "out/") == "key is outside the watched prefix 'out/'"


def test_one_bad_record_makes_the_whole_message_malformed() -> None:
    body = s3_notification(s3_record("good.mp4"), s3_record("bad.mp4", etag=None))
    with pytest.raises(MalformedEvent, match=r"Records\[1\]\.s3\.object\.eTag"):
        parse_message(body)
