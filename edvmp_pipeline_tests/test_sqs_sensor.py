"""The SQS event sensor against an SQS queue, a real Dagster instance and a real catalog.

SQS is moto's (``moto.mock_aws``), because no local SQS server exists here; the messages are
the event documents S3 and EventBridge deliver (built in ``test_s3_events.py``). Each test
evaluates the sensor through Dagster's ``build_sensor_context`` on a temporary persistent
instance, with the returned cursor fed into the next tick as the daemon does.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import boto3
import dagster as dg
import pytest
from dagster._core.test_utils import create_run_for_test
from moto import mock_aws

from edvmp_pipeline.catalog.store import PENDING, Catalog
from edvmp_pipeline.defs.catalog_resource import CatalogResource
from edvmp_pipeline.defs.jobs import INGEST_JOB
from edvmp_pipeline.defs.sensors.sqs_sensor import (
    REASON_ATTRIBUTE,
    SENSOR_NAME,
    QueueCursor,
    SqsSettings,
    sqs_event_sensor,
)
from edvmp_pipeline.defs.tags import RUN_KEY_TAG, TAG_ETAG, TAG_OBJECT_KEY, TAG_SOURCE, TAG_TRIGGER
from edvmp_pipeline.domain.partition_keys import partition_key_for
from edvmp_pipeline_tests.test_s3_events import (
    DECODED_UNICODE_KEY,
    ENCODED_UNICODE_KEY,
    eventbridge_created,
    eventbridge_deleted,
    s3_notification,
    s3_record,
    s3_test_event,
)

BUCKET = "amzn-s3-demo-bucket1"


@dataclass
class Queues:
    """The moto SQS client and the two queues the sensor is configured with."""

    sqs: Any
    url: str
    dlq: str

    def send(self, *bodies: str) -> None:
        for body in bodies:
            self.sqs.send_message(QueueUrl=self.url, MessageBody=body)

    def counts(self, url: str | None = None) -> tuple[int, int]:
        """(visible, in flight) messages of a queue."""
        attrs = self.sqs.get_queue_attributes(
            QueueUrl=url or self.url,
            AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
        )["Attributes"]
        return (
            int(attrs["ApproximateNumberOfMessages"]),
            int(attrs["ApproximateNumberOfMessagesNotVisible"]),
        )

    def make_visible(self, cursor: str) -> None:
        """Simulate the visibility timeout running out for the cursor's messages."""
        for handle in QueueCursor.parse(cursor).delete_next:
            self.sqs.change_message_visibility(
                QueueUrl=self.url, ReceiptHandle=handle, VisibilityTimeout=0
            )


@pytest.fixture
def queues(monkeypatch: pytest.MonkeyPatch) -> Iterator[Queues]:
    for name, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "EDVMP_SQS_WAIT_S": "0",
    }.items():
        monkeypatch.setenv(name, value)
    # EDVMP_BUCKET/EDVMP_PREFIX scope the queue; CI's `edvmp stack up` exports a bucket.
    for name in (
        "EDVMP_SQS_ENDPOINT_URL",
        "EDVMP_SQS_REGION",
        "EDVMP_VIDEO_EXTENSIONS",
        "EDVMP_BUCKET",
        "EDVMP_PREFIX",
    ):
        monkeypatch.delenv(name, raising=False)
    with mock_aws():
        sqs = boto3.client("sqs", region_name="us-east-1")
        url = sqs.create_queue(QueueName="edvmp-s3-events")["QueueUrl"]
        dlq = sqs.create_queue(QueueName="edvmp-s3-events-dlq")["QueueUrl"]
        monkeypatch.setenv("EDVMP_SQS_QUEUE_URL", url)
        monkeypatch.setenv("EDVMP_SQS_DLQ_URL", dlq)
        yield Queues(sqs, url, dlq)


@pytest.fixture
def instance() -> Iterator[dg.DagsterInstance]:
    with dg.instance_for_test() as inst:
        yield inst


@pytest.fixture
def catalog(tmp_path: Path) -> Catalog:
    return Catalog(tmp_path / "catalog").ensure()


@dataclass
class Ticker:
    """Evaluates ticks like the daemon: each tick gets the cursor the previous one returned."""

    instance: dg.DagsterInstance
    catalog: Catalog
    cursor: str | None = None

    def tick(self) -> dg.SensorResult:
        context = dg.build_sensor_context(
            instance=self.instance,
            cursor=self.cursor,
            resources={"catalog": CatalogResource(root=str(self.catalog.root))},
        )
        result = sqs_event_sensor(context)
        assert isinstance(result, dg.SensorResult)
        # What the daemon does with a stored tick: add the partitions, keep the cursor.
        for request in result.dynamic_partitions_requests or []:
            self.instance.add_dynamic_partitions(
                request.partitions_def_name, request.partition_keys
            )
        self.cursor = result.cursor
        return result

    def restart(self) -> Ticker:
        """A new daemon process: new context objects, same instance and stored cursor."""
        return Ticker(self.instance, self.catalog, self.cursor)


@pytest.fixture
def ticker(queues: Queues, instance: dg.DagsterInstance, catalog: Catalog) -> Ticker:
    return Ticker(instance, catalog)


def _added(result: dg.SensorResult) -> list[str]:
    return [k for r in result.dynamic_partitions_requests or [] for k in r.partition_keys]


def _jobs(catalog: Catalog) -> list[tuple[str, str, str]]:
    _, rows = catalog.query("SELECT object_key, etag, status FROM jobs ORDER BY object_key, etag")
    return rows


def test_without_a_queue_url_the_sensor_skips(
    monkeypatch: pytest.MonkeyPatch, instance: dg.DagsterInstance, catalog: Catalog
) -> None:
    monkeypatch.delenv("EDVMP_SQS_QUEUE_URL", raising=False)
    context = dg.build_sensor_context(
        instance=instance, resources={"catalog": CatalogResource(root=str(catalog.root))}
    )
    result = sqs_event_sensor(context)
    assert isinstance(result, dg.SkipReason)
    assert "EDVMP_SQS_QUEUE_URL is not set" in (result.skip_message or "")


def test_each_new_version_gets_a_partition_and_a_run(queues: Queues, ticker: Ticker) -> None:
    queues.send(
        eventbridge_created(ENCODED_UNICODE_KEY, etag="etag-unicode", size=2048),
        s3_notification(s3_record("clips/a+b.mov", bucket=BUCKET, etag='"etag-classic"')),
    )
    result = ticker.tick()

    by_key = {rr.tags[TAG_OBJECT_KEY]: rr for rr in result.run_requests or []}
    assert set(by_key) == {DECODED_UNICODE_KEY, "clips/a b.mov"}
    rr = by_key[DECODED_UNICODE_KEY]
    assert rr.run_key == f"{BUCKET}/{DECODED_UNICODE_KEY}@etag-unicode"
    assert rr.partition_key == partition_key_for(
        f"s3://{BUCKET}", DECODED_UNICODE_KEY, "etag-unicode"
    )
    assert rr.tags[TAG_SOURCE] == f"s3://{BUCKET}"
    assert rr.tags[TAG_ETAG] == "etag-unicode"
    assert rr.tags[TAG_TRIGGER] == "sqs-sensor"
    assert by_key["clips/a b.mov"].run_key == f"{BUCKET}/clips/a b.mov@etag-classic"
    assert len(result.dynamic_partitions_requests or []) == 1
    assert sorted(_added(result)) == sorted(r.partition_key for r in by_key.values())
    assert _jobs(ticker.catalog) == [
        ("clips/a b.mov", "etag-classic", PENDING),
        (DECODED_UNICODE_KEY, "etag-unicode", PENDING),
    ]
    _, rows = ticker.catalog.query("SELECT size_bytes, registered_by FROM objects ORDER BY 1")
    assert rows == [(1024, SENSOR_NAME), (2048, SENSOR_NAME)]


def test_messages_are_deleted_only_on_the_next_tick(queues: Queues, ticker: Ticker) -> None:
    queues.send(eventbridge_created("a.mp4"), eventbridge_created("b.mp4"))
    first = ticker.tick()
    assert len(first.run_requests or []) == 2
    # Received but not deleted: the runs do not exist until Dagster stores this tick.
    assert queues.counts() == (0, 2)
    assert len(QueueCursor.parse(first.cursor).delete_next) == 2

    second = ticker.restart().tick()
    assert queues.counts() == (0, 0)
    assert second.run_requests == []
    assert QueueCursor.parse(second.cursor).delete_next == ()


def test_the_same_event_three_times_and_after_a_restart_is_one_run(
    queues: Queues, ticker: Ticker, instance: dg.DagsterInstance
) -> None:
    body = eventbridge_created("dup.mp4", etag="same-etag")
    queues.send(body, body, body)
    first = ticker.tick()
    assert [rr.run_key for rr in first.run_requests or []] == [f"{BUCKET}/dup.mp4@same-etag"]
    assert len(_added(first)) == 1
    # All three copies wait for the next tick's delete.
    assert len(QueueCursor.parse(first.cursor).delete_next) == 3

    # What the daemon does with the tick: create the run, with Dagster's run-key tag.
    create_run_for_test(
        instance,
        job_name=INGEST_JOB,
        tags={RUN_KEY_TAG: first.run_requests[0].run_key, "dagster/sensor_name": SENSOR_NAME},
    )
    restarted = ticker.restart()
    assert restarted.tick().run_requests == []
    assert queues.counts() == (0, 0)

    # SQS delivers once more, at least once being its only promise.
    queues.send(body)
    again = restarted.tick()
    assert again.run_requests == [] and _added(again) == []
    assert queues.counts() == (0, 0)  # nothing to run: deleted at once
    assert _jobs(ticker.catalog) == [("dup.mp4", "same-etag", PENDING)]
    _, rows = ticker.catalog.query("SELECT count(*) FROM objects")
    assert rows == [(1,)]


def test_redelivery_before_the_run_exists_requests_the_same_run_key(
    queues: Queues, ticker: Ticker
) -> None:
    queues.send(eventbridge_created("crash.mp4", etag="e1"))
    context = dg.build_sensor_context(
        instance=ticker.instance,
        resources={"catalog": CatalogResource(root=str(ticker.catalog.root))},
    )
    first = sqs_event_sensor(context)
    assert isinstance(first, dg.SensorResult)
    # The daemon dies before storing the tick: no partition, no run, cursor lost, the
    # message comes back.
    queues.make_visible(first.cursor or "")
    after_crash = Ticker(ticker.instance, ticker.catalog, cursor=None)
    second = after_crash.tick()
    assert [rr.run_key for rr in second.run_requests or []] == [f"{BUCKET}/crash.mp4@e1"]
    # The version is PENDING in the catalog already; its partition is asked for again.
    assert (
        _added(second) == _added(first) == [partition_key_for(f"s3://{BUCKET}", "crash.mp4", "e1")]
    )
    assert _jobs(ticker.catalog) == [("crash.mp4", "e1", PENDING)]


def test_malformed_messages_go_to_the_dlq_with_their_reason(queues: Queues, ticker: Ticker) -> None:
    queues.send("this is not json", '{"Records": []}', eventbridge_created("ok.mp4"))
    result = ticker.tick()
    assert [rr.tags[TAG_OBJECT_KEY] for rr in result.run_requests or []] == ["ok.mp4"]
    assert queues.counts() == (0, 1)  # only the good one waits for the next tick

    moved = queues.sqs.receive_message(
        QueueUrl=queues.dlq, MaxNumberOfMessages=10, MessageAttributeNames=["All"]
    )["Messages"]
    reasons = {m["Body"]: m["MessageAttributes"][REASON_ATTRIBUTE]["StringValue"] for m in moved}
    assert set(reasons) == {"this is not json", '{"Records": []}'}
    assert reasons["this is not json"].startswith("message body is not JSON")
    assert reasons['{"Records": []}'] == "'Records' is not a non-empty list"
    assert moved[0]["MessageAttributes"]["edvmp_source_queue"]["StringValue"] == queues.url


def test_without_a_dlq_malformed_messages_are_left_for_the_redrive_policy(
    queues: Queues, ticker: Ticker, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("EDVMP_SQS_DLQ_URL")
    queues.send("{broken", json.dumps({"detail-type": "Object Created", "source": "aws.s3"}))
    result = ticker.tick()
    assert result.run_requests == []
    assert queues.counts() == (0, 2)  # not deleted; they come back after the timeout
    assert queues.counts(queues.dlq) == (0, 0)
    assert QueueCursor.parse(result.cursor).delete_next == ()


def test_removals_test_events_and_non_videos_are_deleted_at_once(
    queues: Queues, ticker: Ticker
) -> None:
    queues.send(
        s3_test_event(),
        eventbridge_deleted("old.mp4"),
        s3_notification(s3_record(event_name="ObjectRemoved:Delete", etag=None, size=None)),
        eventbridge_created("notes/readme.txt"),
        eventbridge_created("folder/"),
    )
    result = ticker.tick()
    assert result.run_requests == []
    assert _added(result) == []
    assert queues.counts() == (0, 0)
    assert QueueCursor.parse(result.cursor).delete_next == ()
    assert _jobs(ticker.catalog) == []


def test_video_extensions_are_configurable(
    queues: Queues, ticker: Ticker, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("EDVMP_VIDEO_EXTENSIONS", "mov")
    queues.send(eventbridge_created("a.mp4"), eventbridge_created("b.MOV"))
    result = ticker.tick()
    assert [rr.tags[TAG_OBJECT_KEY] for rr in result.run_requests or []] == ["b.MOV"]


def test_out_of_order_versions_of_one_key_are_two_versions(queues: Queues, ticker: Ticker) -> None:
    newer = eventbridge_created("clip.mp4", etag="v2", sequencer="00617F0829932D0000")
    older = eventbridge_created("clip.mp4", etag="v1", sequencer="00617F0829932C0000")
    queues.send(newer)
    first = ticker.tick()
    queues.send(older, newer)  # the old event arrives late, the new one a second time
    second = ticker.tick()
    run_keys = [rr.run_key for rr in (first.run_requests or []) + (second.run_requests or [])]
    assert f"{BUCKET}/clip.mp4@v1" in run_keys
    assert sorted(set(run_keys)) == [f"{BUCKET}/clip.mp4@v1", f"{BUCKET}/clip.mp4@v2"]
    assert set(_added(first) + _added(second)) == {
        partition_key_for(f"s3://{BUCKET}", "clip.mp4", "v2"),
        partition_key_for(f"s3://{BUCKET}", "clip.mp4", "v1"),
    }
    # Every run request's partition is asked for in the same tick (a re-requested PENDING
    # version's partition too: the daemon may have died before adding it).
    for tick in (first, second):
        assert {rr.partition_key for rr in tick.run_requests or []} <= set(_added(tick))
    assert _jobs(ticker.catalog) == [("clip.mp4", "v1", PENDING), ("clip.mp4", "v2", PENDING)]


def test_a_tick_reads_at_most_max_messages(
    queues: Queues, ticker: Ticker, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("EDVMP_SQS_MAX_MESSAGES", "15")
    queues.send(*(eventbridge_created(f"v{i:02}.mp4", etag=f"e{i}") for i in range(25)))
    first, second, third = ticker.tick(), ticker.tick(), ticker.tick()
    assert [len(r.run_requests or []) for r in (first, second, third)] == [15, 10, 0]
    assert queues.counts() == (0, 0)
    assert len(_jobs(ticker.catalog)) == 25


def test_expired_receipt_handles_and_a_bad_cursor_do_not_break_a_tick(
    queues: Queues, ticker: Ticker
) -> None:
    ticker.cursor = QueueCursor(("expired-handle-1", "expired-handle-2")).dump()
    queues.send(eventbridge_created("x.mp4"))
    assert len(ticker.tick().run_requests or []) == 1
    ticker.cursor = "{not a cursor"
    assert ticker.tick().run_requests == []


def test_daemon_style_evaluation_resolves_the_resources(
    queues: Queues, instance: dg.DagsterInstance, catalog: Catalog
) -> None:
    from edvmp_pipeline.definitions import defs

    queues.send(eventbridge_created("daemon.mp4", etag="d1"))
    context = dg.build_sensor_context(
        # An instance ref, as the code server gets: it lets Dagster validate the partitioned
        # run requests against the instance plus this tick's own add-request.
        instance_ref=instance.get_ref(),
        definitions=defs,
        resources={"catalog": CatalogResource(root=str(catalog.root))},
    )
    data = sqs_event_sensor.evaluate_tick(context)
    assert [rr.run_key for rr in data.run_requests or []] == [f"{BUCKET}/daemon.mp4@d1"]
    assert data.run_requests[0].tags["dagster/partition"] == data.run_requests[0].partition_key
    assert [r.partition_keys for r in data.dynamic_partitions_requests or []] == [
        [data.run_requests[0].partition_key]
    ]
    assert len(QueueCursor.parse(data.cursor).delete_next) == 1

    # The next tick deletes the message and, with nothing new, reports a skip with its cursor.
    context = dg.build_sensor_context(
        instance_ref=instance.get_ref(),
        definitions=defs,
        cursor=data.cursor,
        resources={"catalog": CatalogResource(root=str(catalog.root))},
    )
    data = sqs_event_sensor.evaluate_tick(context)
    assert data.run_requests == [] and data.skip_message == "no messages"
    assert QueueCursor.parse(data.cursor).delete_next == ()
    assert queues.counts() == (0, 0)


def test_region_comes_from_the_queue_url(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AWS_DEFAULT_REGION", raising=False)
    url = "https://sqs.eu-west-3.amazonaws.com/111122223333/edvmp-s3-events"
    assert SqsSettings(queue_url=url).resolved_region() == "eu-west-3"
    assert SqsSettings(queue_url=url, region="us-west-2").resolved_region() == "us-west-2"
    assert SqsSettings(queue_url="http://127.0.0.1:9324/q").resolved_region() == "us-east-1"


def test_the_code_location_runs_the_sensor_by_default() -> None:
    from edvmp_pipeline.definitions import defs

    sensor = defs.get_repository_def().get_sensor_def(SENSOR_NAME)
    assert sensor.default_status == dg.DefaultSensorStatus.RUNNING
    assert sensor.job_name == INGEST_JOB


def test_hostile_messages_go_to_the_dlq_without_failing_the_tick(
    queues: Queues, ticker: Ticker
) -> None:
    """A size no state store column holds, lone surrogates (legal JSON escapes), JSON nested
    200,000 deep, a key over S3's 1024 bytes and a bucket name with a '/': the first three
    failed the whole tick (OverflowError, UnicodeEncodeError, RecursionError) on every
    redelivery, holding up the good event received with them; the others reached the
    catalog."""
    lone_key = s3_notification(s3_record("x.mp4")).replace('"x.mp4"', '"\\ud800.mp4"')
    lone_etag = s3_notification(s3_record("y.mp4", etag="E")).replace('"E"', '"\\udc80"')
    hostile = {
        s3_notification(s3_record("huge.mp4", size=10**30)): "larger than any object can be",
        lone_key: "not valid Unicode (lone surrogate \\ud800)",
        lone_etag: "not valid Unicode (lone surrogate \\udc80)",
        "[" * 100_000 + "]" * 100_000: "JSON nested too deeply to be an S3 event",
        eventbridge_created("k" * 1025 + ".mp4"): "over S3's 1024-byte key limit",
        eventbridge_created("z.mp4", bucket="a/b"): "is not an S3 bucket name",
    }
    queues.send(*hostile, eventbridge_created("good.mp4"))
    result = ticker.tick()
    assert [rr.tags[TAG_OBJECT_KEY] for rr in result.run_requests or []] == ["good.mp4"]
    assert _jobs(ticker.catalog) == [("good.mp4", "b1946ac92492d2347c6235b4d2611184", PENDING)]
    moved = queues.sqs.receive_message(
        QueueUrl=queues.dlq, MaxNumberOfMessages=10, MessageAttributeNames=["All"]
    )["Messages"]
    reasons = {m["Body"]: m["MessageAttributes"][REASON_ATTRIBUTE]["StringValue"] for m in moved}
    assert set(reasons) == set(hostile)
    for body, reason in hostile.items():
        assert reason in reasons[body], (reasons[body], reason)


def test_events_outside_the_watched_bucket_and_prefix_are_ignored(
    queues: Queues, ticker: Ticker, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The object sensor watches EDVMP_BUCKET/EDVMP_PREFIX only; a queue that also carries
    another bucket's notifications must not catalogue (and fail, unreadable) its objects."""
    monkeypatch.setenv("EDVMP_BUCKET", BUCKET)
    monkeypatch.setenv("EDVMP_PREFIX", "incoming/")
    queues.send(
        eventbridge_created("incoming/a.mp4"),
        eventbridge_created("incoming/b.mp4", bucket="someone-elses-bucket"),
        s3_notification(s3_record("incoming/c.mp4", bucket="amzn-s3-demo-bucket")),
        eventbridge_created("elsewhere/d.mp4"),
    )
    result = ticker.tick()
    assert [rr.run_key for rr in result.run_requests or []] == [
        f"{BUCKET}/incoming/a.mp4@b1946ac92492d2347c6235b4d2611184"
    ]
    assert [k for k, _, _ in _jobs(ticker.catalog)] == ["incoming/a.mp4"]
    # Nothing to run for the other three: deleted at once, none to the DLQ.
    assert queues.counts() == (0, 1)
    assert queues.counts(queues.dlq) == (0, 0)

    # Without an explicit EDVMP_BUCKET any bucket's events are taken (the default bucket
    # name is the local stack's and must not silence a queue fed by another bucket).
    monkeypatch.delenv("EDVMP_BUCKET")
    monkeypatch.delenv("EDVMP_PREFIX")
    queues.send(eventbridge_created("e.mp4", bucket="someone-elses-bucket"))
    second = ticker.tick()
    assert [rr.tags[TAG_SOURCE] for rr in second.run_requests or []] == [
        "s3://someone-elses-bucket"
    ]


def test_an_upload_again_of_a_version_that_failed_as_missing_is_requested_again(
    queues: Queues, ticker: Ticker, instance: dg.DagsterInstance
) -> None:
    """The object was deleted before its run (FAILED object_missing), then uploaded again
    with the same bytes: a new "Object Created" event for the same version. It used to be
    dropped as known, so the object was never catalogued."""
    body = eventbridge_created("back.mp4", etag="e1")
    queues.send(body)
    first = ticker.tick()
    (rr,) = first.run_requests or []
    create_run_for_test(instance, job_name=INGEST_JOB, tags={RUN_KEY_TAG: rr.run_key})
    # The run, as it goes when HEAD answers 404: claimed, then failed.
    pk = rr.partition_key
    assert pk is not None and ticker.catalog.state.claim([pk], "run-1")
    ticker.catalog.state.mark_failed({pk: ("object_missing", "object missing: …")}, "run-1")

    queues.send(body)
    second = ticker.tick()
    assert [r.run_key for r in second.run_requests or []] == [f"{BUCKET}/back.mp4@e1#2"]
    # Its message waits for the next tick's delete, like any message behind a run request.
    assert len(QueueCursor.parse(second.cursor).delete_next) == 1
    assert _jobs(ticker.catalog) == [("back.mp4", "e1", "FAILED")]


def test_an_event_time_outside_the_calendar_in_utc_does_not_poison_its_version(
    queues: Queues, ticker: Ticker
) -> None:
    """An event time of 0001-01-01T00:00:00+14:00 is year 0 in UTC: it was stored as such,
    and every read of the version's state (its run's claim, `edvmp status`, an ingest of the
    bucket) then raised "year 0 is out of range". The time is informative: it is dropped."""
    queues.send(
        eventbridge_created("early.mp4", time="0001-01-01T00:00:00+14:00"),
        eventbridge_created("late.mp4", time="9999-12-31T23:59:59-14:00"),
        eventbridge_created("local.mp4", time="2021-11-12T01:00:00+01:00"),
    )
    result = ticker.tick()
    states = ticker.catalog.job_states([rr.partition_key or "" for rr in result.run_requests])
    assert {s.object_key: s.last_modified for s in states.values()} == {
        "early.mp4": None,
        "late.mp4": None,
        "local.mp4": datetime(2021, 11, 12, tzinfo=UTC),
    }
