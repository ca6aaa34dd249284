"""The S3 object sensor against the real local SeaweedFS, a real Dagster instance and catalog.

Each tick is evaluated the way the daemon's code server does it: ``build_sensor_context`` with
the code location's definitions and ``evaluate_tick``, so Dagster itself resolves the run
requests against the instance's dynamic partitions plus the tick's own add-request (a run
request for a partition that exists in neither fails the whole tick). :class:`SensorDriver`
then does what the daemon does with the result: it adds the partitions, launches one run per
run key it has not launched before, and stores the cursor for the next tick.
"""

from __future__ import annotations

import json
import os
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import boto3
import dagster as dg
import pytest
from botocore.client import BaseClient
from botocore.exceptions import EndpointConnectionError
from dagster._core.definitions.sensor_definition import SensorExecutionData
from dagster._core.test_utils import create_run_for_test

from edvmp_pipeline.adapters.object_store import ObjectStoreResource
from edvmp_pipeline.catalog.store import FAILED, PENDING, Catalog
from edvmp_pipeline.definitions import build_resources, defs
from edvmp_pipeline.defs.catalog_resource import CatalogResource
from edvmp_pipeline.defs.jobs import INGEST_JOB
from edvmp_pipeline.defs.partitions import videos_partitions
from edvmp_pipeline.defs.run_failures import record_run_failure
from edvmp_pipeline.defs.sensors.object_sensor import SENSOR_NAME, SweepCursor, s3_object_sensor
from edvmp_pipeline.defs.sensors.run_requests import launched_run_keys
from edvmp_pipeline.defs.tags import RUN_KEY_TAG, TAG_ETAG, TAG_OBJECT_KEY, TAG_SOURCE, TAG_TRIGGER
from edvmp_pipeline.devtools.stack import StackSettings
from edvmp_pipeline.domain.partition_keys import partition_key_for
from edvmp_pipeline_tests.s3_server import configure_s3_env

# --- the daemon, as far as the sensor can tell ---------------------------------------------


@dataclass
class SensorDriver:
    """Evaluates ticks and applies their results like the sensor daemon.

    ``launched`` counts the runs created per run key (the daemon refuses a run key it has
    seen, so a count above one would be a duplicate run); ``requested`` counts every run
    request the sensor returned.
    """

    instance: dg.DagsterInstance
    catalog: Catalog
    endpoint_url: str
    cursor: str | None = None
    launched: Counter[str] = field(default_factory=Counter)
    requested: Counter[str] = field(default_factory=Counter)
    ticks: int = 0

    def evaluate(self, cursor: str | None = None) -> SensorExecutionData:
        """One evaluation from the stored cursor (or ``cursor``), nothing applied."""
        context = dg.build_sensor_context(
            # A ref, as the code server gets: Dagster then checks each partitioned run request
            # against the instance's partitions plus this tick's add-request.
            instance_ref=self.instance.get_ref(),
            cursor=cursor if cursor is not None else self.cursor,
            definitions=defs,
            resources={
                "catalog": CatalogResource(root=str(self.catalog.root)),
                "object_store": ObjectStoreResource(endpoint_url=self.endpoint_url),
            },
        )
        return s3_object_sensor.evaluate_tick(context)

    def apply(
        self, data: SensorExecutionData, *, launch: bool = True, store_cursor: bool = True
    ) -> None:
        """Add the partitions, launch the runs not launched yet, store the cursor (the last
        two can be left out, as by a daemon that dies half-way)."""
        for request in data.dynamic_partitions_requests or []:
            assert isinstance(request, dg.AddDynamicPartitionsRequest)
            missing = [
                k
                for k in request.partition_keys
                if not self.instance.has_dynamic_partition(request.partitions_def_name, k)
            ]
            self.instance.add_dynamic_partitions(request.partitions_def_name, missing)
        for rr in (data.run_requests or []) if launch else []:
            assert rr.run_key is not None
            self.requested[rr.run_key] += 1
            if launched_run_keys(self.instance, [rr.run_key]):
                continue
            create_run_for_test(
                self.instance, job_name=INGEST_JOB, tags={**rr.tags, RUN_KEY_TAG: rr.run_key}
            )
            self.launched[rr.run_key] += 1
        if store_cursor and data.cursor is not None:
            self.cursor = data.cursor

    def tick(self) -> SensorExecutionData:
        data = self.evaluate()
        self.apply(data)
        self.ticks += 1
        return data

    def restart(self) -> SensorDriver:
        """A new daemon process: a new instance handle on the same DAGSTER_HOME, the cursor
        Dagster stored, and no memory of anything else."""
        return SensorDriver(
            dg.DagsterInstance.get(),
            Catalog(self.catalog.root),
            self.endpoint_url,
            cursor=self.cursor,
            launched=self.launched,
            requested=self.requested,
            ticks=self.ticks,
        )

    @property
    def sweeps(self) -> int:
        return SweepCursor.parse(self.cursor).sweeps


@pytest.fixture(scope="module")
def shared_dagster_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One instance directory per module: creating its SQLite storages costs ~0.6 s, and the
    tests cannot see each other's runs and partitions (each uses its own bucket, which is in
    every partition key and run key)."""
    home = tmp_path_factory.mktemp("dagster")
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    return home


@pytest.fixture
def dagster_home(
    shared_dagster_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Path:
    monkeypatch.setenv("DAGSTER_HOME", str(shared_dagster_home))
    monkeypatch.setenv("EDVMP_HOME", str(tmp_path / "edvmp"))
    return shared_dagster_home


@pytest.fixture
def instance(dagster_home: Path) -> Iterator[dg.DagsterInstance]:
    inst = dg.DagsterInstance.get()
    try:
        yield inst
    finally:
        inst.dispose()


@pytest.fixture
def catalog(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Catalog:
    root = tmp_path / "catalog"
    monkeypatch.setenv("EDVMP_CATALOG", str(root))
    return Catalog(root).ensure()


@pytest.fixture
def driver(
    s3_stack: StackSettings,
    s3_bucket: str,
    instance: dg.DagsterInstance,
    catalog: Catalog,
    monkeypatch: pytest.MonkeyPatch,
) -> SensorDriver:
    configure_s3_env(monkeypatch, s3_stack, s3_bucket)
    return SensorDriver(instance, catalog, s3_stack.endpoint_url)


def use_credentials(monkeypatch: pytest.MonkeyPatch, *, secret_key: str) -> None:
    """Switch this process to another AWS secret key.

    boto3's default session resolves credentials once per process and keeps them, so a new
    value in the environment only counts for a new session (a run's process always is one).
    """
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", secret_key)
    monkeypatch.setattr(boto3, "DEFAULT_SESSION", None)


def limits(monkeypatch: pytest.MonkeyPatch, *, page_size: int, max_pages: int, max_runs: int):
    monkeypatch.setenv("EDVMP_SENSOR_PAGE_SIZE", str(page_size))
    monkeypatch.setenv("EDVMP_SENSOR_MAX_PAGES", str(max_pages))
    monkeypatch.setenv("EDVMP_SENSOR_MAX_RUNS", str(max_runs))


# --- helpers --------------------------------------------------------------------------------


def put(client: BaseClient, bucket: str, key: str, body: bytes | None = None) -> str:
    """Upload ``body`` (default: bytes unique to the key) and return the unquoted ETag."""
    data = body if body is not None else f"not really a video: {key}".encode()
    return client.put_object(Bucket=bucket, Key=key, Body=data)["ETag"].strip('"')


def run_key(bucket: str, key: str, etag: str) -> str:
    return f"{bucket}/{key}@{etag}"


def pk(bucket: str, key: str, etag: str) -> str:
    return partition_key_for(f"s3://{bucket}", key, etag)


def added(data: SensorExecutionData) -> list[str]:
    """Partition keys of the tick's add-request; a tick never returns more than one."""
    requests = data.dynamic_partitions_requests or []
    assert len(requests) <= 1, requests
    return [k for r in requests for k in r.partition_keys]


def run_keys(data: SensorExecutionData) -> list[str]:
    return [rr.run_key for rr in data.run_requests or [] if rr.run_key]


def assert_requests(data: SensorExecutionData, bucket: str, versions: dict[str, str]) -> None:
    """The tick requested exactly ``versions`` (key → ETag), each with its partition and tags,
    and added exactly their partitions in one request."""
    by_key = {rr.tags[TAG_OBJECT_KEY]: rr for rr in data.run_requests or []}
    assert len(by_key) == len(data.run_requests or []), "a key was requested twice in a tick"
    assert set(by_key) == set(versions)
    for key, etag in versions.items():
        rr = by_key[key]
        assert rr.run_key == run_key(bucket, key, etag)
        assert rr.partition_key == pk(bucket, key, etag)
        assert rr.tags[TAG_SOURCE] == f"s3://{bucket}"
        assert rr.tags[TAG_ETAG] == etag
        assert rr.tags[TAG_TRIGGER] == "s3-sensor"
        assert rr.tags["dagster/partition"] == rr.partition_key
        assert rr.tags["dagster/sensor_name"] == SENSOR_NAME
    assert sorted(added(data)) == sorted(pk(bucket, k, e) for k, e in versions.items())
    if versions:
        assert data.dynamic_partitions_requests[0].partitions_def_name == videos_partitions.name


def jobs(catalog: Catalog) -> list[tuple[str, str, str]]:
    _, rows = catalog.query("SELECT object_key, etag, status FROM jobs ORDER BY object_key, etag")
    return rows


def pending(versions: dict[str, str]) -> list[tuple[str, str, str]]:
    return sorted((k, e, PENDING) for k, e in versions.items())


def run_request_in_process(
    instance: dg.DagsterInstance, rr: dg.RunRequest, catalog: Catalog
) -> dg.DagsterRun:
    """Execute the run a sensor run request describes, as a launched run would, and record
    its incidents as the daemon's failure sensor would."""
    job = defs.resolve_job_def(INGEST_JOB)
    result = job.execute_in_process(
        instance=instance,
        partition_key=rr.partition_key,
        tags={k: v for k, v in rr.tags.items() if not k.startswith("dagster/")},
        resources=build_resources(),
        run_config={"loggers": {"console": {"config": {"log_level": "CRITICAL"}}}},
        raise_on_error=False,
    )
    run = instance.get_run_by_id(result.run_id)
    assert run is not None
    if not result.success:
        record_run_failure(instance, run, catalog)
    return run


# --- the cases ------------------------------------------------------------------------------


def test_first_tick_requests_every_video_under_the_prefix(
    driver: SensorDriver,
    s3_client: BaseClient,
    s3_bucket: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("EDVMP_PREFIX", "incoming/")
    keys = ["incoming/a.mp4", "incoming/sub dir/b, take 2.MOV", "incoming/ünï/c.mkv"]
    versions = {k: put(s3_client, s3_bucket, k) for k in keys}
    put(s3_client, s3_bucket, "elsewhere/outside.mp4")

    first = driver.tick()
    assert_requests(first, s3_bucket, versions)
    assert jobs(driver.catalog) == pending(versions)
    _, rows = driver.catalog.query("SELECT DISTINCT source, registered_by FROM objects")
    assert rows == [(f"s3://{s3_bucket}", SENSOR_NAME)]
    assert SweepCursor.parse(first.cursor) == SweepCursor("", 1)

    # The runs exist now: re-listing the same versions asks for nothing.
    second = driver.tick()
    assert run_keys(second) == [] and added(second) == []
    assert jobs(driver.catalog) == pending(versions)
    assert set(driver.launched) == {run_key(s3_bucket, k, e) for k, e in versions.items()}


def test_a_new_key_that_sorts_first_is_found_later(
    driver: SensorDriver, s3_client: BaseClient, s3_bucket: str
) -> None:
    """A StartAfter cursor would be at "m2.mp4" and never list "000-first.mp4"."""
    seen = {k: put(s3_client, s3_bucket, k) for k in ("m1.mp4", "m2.mp4")}
    assert_requests(driver.tick(), s3_bucket, seen)
    first = {"000-first.mp4": put(s3_client, s3_bucket, "000-first.mp4")}
    assert_requests(driver.tick(), s3_bucket, first)
    assert jobs(driver.catalog) == pending({**seen, **first})


def test_the_cursor_object_deleted_between_ticks(
    driver: SensorDriver,
    s3_client: BaseClient,
    s3_bucket: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    limits(monkeypatch, page_size=2, max_pages=1, max_runs=100)
    versions = {k: put(s3_client, s3_bucket, k) for k in ("a.mp4", "b.mp4", "c.mp4", "d.mp4")}
    first = driver.tick()
    assert_requests(first, s3_bucket, {k: versions[k] for k in ("a.mp4", "b.mp4")})
    assert SweepCursor.parse(first.cursor).start_after == "b.mp4"

    s3_client.delete_object(Bucket=s3_bucket, Key="b.mp4")
    second = driver.tick()
    assert_requests(second, s3_bucket, {k: versions[k] for k in ("c.mp4", "d.mp4")})
    assert SweepCursor.parse(second.cursor) == SweepCursor("", 1)
    # The next sweep starts over and finds nothing new.
    assert run_keys(driver.tick()) == [] and run_keys(driver.tick()) == []
    assert driver.sweeps == 2
    assert jobs(driver.catalog) == pending(versions)  # the deleted one stays known
    assert all(n == 1 for n in driver.requested.values())


def test_an_overwritten_object_is_a_new_version(
    driver: SensorDriver, s3_client: BaseClient, s3_bucket: str
) -> None:
    old = put(s3_client, s3_bucket, "clip.mp4", b"first content")
    assert_requests(driver.tick(), s3_bucket, {"clip.mp4": old})
    new = put(s3_client, s3_bucket, "clip.mp4", b"second content")
    assert new != old
    assert_requests(driver.tick(), s3_bucket, {"clip.mp4": new})
    assert jobs(driver.catalog) == sorted(pending({"clip.mp4": old}) + pending({"clip.mp4": new}))
    _, rows = driver.catalog.query("SELECT count(*) FROM objects WHERE object_key = 'clip.mp4'")
    assert rows == [(2,)]
    assert run_keys(driver.tick()) == []


def test_objects_sharing_a_last_modified_second(
    driver: SensorDriver, s3_client: BaseClient, s3_bucket: str
) -> None:
    """S3 LastModified has one-second resolution: a "newer than the last one seen" cursor
    would skip an object uploaded in the same second after the tick."""
    for attempt in range(5):
        early, late = f"same-second-{attempt}-a.mp4", f"same-second-{attempt}-b.mp4"
        etag = put(s3_client, s3_bucket, early)
        assert_requests(driver.tick(), s3_bucket, {early: etag})
        late_etag = put(s3_client, s3_bucket, late)
        stamps = {
            s3_client.head_object(Bucket=s3_bucket, Key=k)["LastModified"] for k in (early, late)
        }
        assert_requests(driver.tick(), s3_bucket, {late: late_etag})
        if len(stamps) == 1:
            break
        time.sleep(0.05)  # crossed a second boundary: try again, early in a second
    else:
        pytest.fail("could not upload two objects within the same second")


@pytest.mark.parametrize(
    ("page_size", "max_pages", "max_runs"),
    [(10, 1, 4), (4, 3, 4), (6, 2, 5)],
    ids=["cap-mid-page", "cap-at-page-end", "cap-across-pages"],
)
def test_paging_across_ticks_with_a_run_cap(
    driver: SensorDriver,
    s3_client: BaseClient,
    s3_bucket: str,
    monkeypatch: pytest.MonkeyPatch,
    page_size: int,
    max_pages: int,
    max_runs: int,
) -> None:
    """25 objects, a few pages per tick and fewer runs per tick than new objects; objects
    added, and one overwritten, while the sweep is half-way. Every version is requested
    exactly once, no tick exceeds its caps, and a sweep with nothing new costs one tick per
    ``max_pages`` pages (versions already launched do not use up the run cap)."""
    limits(monkeypatch, page_size=page_size, max_pages=max_pages, max_runs=max_runs)
    expected = {run_key(s3_bucket, k, put(s3_client, s3_bucket, k)) for k in _keys(25)}
    for _ in range(2):
        data = driver.tick()
        assert len(run_keys(data)) == max_runs
    # Behind the cursor, at the cursor's end of the alphabet, and a requested key changed.
    for key, body in (("a-early.mp4", None), ("zz-late.mp4", None), ("k000.mp4", b"v2")):
        expected.add(run_key(s3_bucket, key, put(s3_client, s3_bucket, key, body)))

    idle_sweep_ticks = _tick_until_an_idle_sweep(driver, max_runs)
    assert sorted(driver.requested) == sorted(expected)
    assert all(n == 1 for n in driver.requested.values()), driver.requested.most_common(3)
    assert all(n == 1 for n in driver.launched.values())
    pages = -(-27 // page_size)  # 25 keys + 2 new ones (the overwritten key is listed once)
    assert idle_sweep_ticks == -(-pages // max_pages)
    _, rows = driver.catalog.query(
        "SELECT count(*), count(DISTINCT partition_key), count(*) FILTER (status = 'PENDING') "
        "FROM jobs"
    )
    assert rows == [(28, 28, 28)]


def _keys(n: int) -> list[str]:
    return [f"k{i:03d}.mp4" for i in range(n)]


def _tick_until_an_idle_sweep(driver: SensorDriver, max_runs: int, limit: int = 60) -> int:
    """Tick until a whole sweep requested nothing; returns that sweep's tick count."""
    sweep_ticks = sweep_requests = 0
    sweeps = driver.sweeps
    for _ in range(limit):
        data = driver.tick()
        assert len(run_keys(data)) <= max_runs
        sweep_ticks += 1
        sweep_requests += len(run_keys(data))
        if driver.sweeps != sweeps:
            if sweep_requests == 0:
                return sweep_ticks
            sweeps, sweep_ticks, sweep_requests = driver.sweeps, 0, 0
    raise AssertionError(f"no idle sweep within {limit} ticks")


def test_a_restart_resumes_from_the_stored_cursor(
    driver: SensorDriver,
    s3_client: BaseClient,
    s3_bucket: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    limits(monkeypatch, page_size=3, max_pages=1, max_runs=2)
    expected = {run_key(s3_bucket, k, put(s3_client, s3_bucket, k)) for k in _keys(8)}
    first = driver.tick()
    assert len(run_keys(first)) == 2
    # The daemon dies; a new one starts from the cursor string Dagster stored.
    stored = driver.cursor
    driver.instance.dispose()
    driver = driver.restart()
    assert driver.cursor == stored
    second = driver.tick()
    assert set(run_keys(second)).isdisjoint(run_keys(first))
    _tick_until_an_idle_sweep(driver, max_runs=2)
    driver.instance.dispose()
    assert sorted(driver.requested) == sorted(expected)
    assert all(n == 1 for n in driver.requested.values())


def test_a_tick_evaluated_again_before_its_cursor_was_stored(
    driver: SensorDriver, s3_client: BaseClient, s3_bucket: str
) -> None:
    """The daemon dies after the evaluation (catalog written) but before it stored the tick:
    the next evaluation from the old cursor asks for the same run keys (harmless: Dagster
    launches a run key once) and again for the partitions, which may never have been added."""
    versions = {k: put(s3_client, s3_bucket, k) for k in ("x.mp4", "y.mp4", "z.mp4")}
    lost = driver.evaluate()
    assert_requests(lost, s3_bucket, versions)
    again = driver.evaluate()  # would raise here if the partitions were not requested again
    assert sorted(run_keys(again)) == sorted(run_keys(lost))
    assert sorted(added(again)) == sorted(added(lost))
    assert jobs(driver.catalog) == pending(versions)
    _, rows = driver.catalog.query("SELECT count(*) FROM objects")
    assert rows == [(3,)]

    # Died after adding the partitions, before launching: same run keys, and the same
    # partitions again (the store does not know whether Dagster added them; the daemon skips
    # existing ones and its tick says so).
    driver.apply(lost, launch=False, store_cursor=False)
    third = driver.evaluate()
    assert sorted(run_keys(third)) == sorted(run_keys(lost))
    assert sorted(added(third)) == sorted(added(lost))

    # Launched and stored: from the old cursor again, nothing is asked twice.
    driver.apply(third)
    assert run_keys(driver.evaluate(cursor="")) == []
    assert jobs(driver.catalog) == pending(versions)


def test_zero_byte_video_is_requested_and_fails_as_empty_object(
    driver: SensorDriver, s3_client: BaseClient, s3_bucket: str
) -> None:
    """Documented choice (domain/video_filter.py): non-videos are skipped by extension; an
    empty ``.mp4`` is a broken upload someone must hear about, so it runs and fails."""
    etag = put(s3_client, s3_bucket, "empty.mp4", b"")
    for key in ("notes.txt", "img.png", "folder/", "README"):
        put(s3_client, s3_bucket, key)
    data = driver.tick()
    assert_requests(data, s3_bucket, {"empty.mp4": etag})
    assert jobs(driver.catalog) == pending({"empty.mp4": etag})

    run = run_request_in_process(driver.instance, data.run_requests[0], driver.catalog)
    assert run.status == dg.DagsterRunStatus.FAILURE
    _, rows = driver.catalog.query("SELECT object_key, status, error_class FROM jobs")
    assert rows == [("empty.mp4", FAILED, "empty_object")]
    _, rows = driver.catalog.query('SELECT object_key, "class", retryable FROM incidents')
    assert rows == [("empty.mp4", "empty_object", False)]
    idle = driver.tick()
    assert run_keys(idle) == []
    # The tick list of the UI says why nothing ran, not "returned an empty result".
    assert (idle.skip_message or "").startswith(
        "nothing new: listed 5 objects (4 not videos), requested 0 runs"
    )


def test_listing_errors_skip_the_tick_and_keep_the_cursor(
    driver: SensorDriver,
    s3_stack: StackSettings,
    s3_client: BaseClient,
    s3_bucket: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    put(s3_client, s3_bucket, "a.mp4")
    driver.cursor = SweepCursor("a.mp4", 3).dump()
    monkeypatch.setenv("EDVMP_BUCKET", "no-such-bucket-here")
    missing = driver.evaluate()
    assert missing.run_requests == [] and missing.cursor in (None, driver.cursor)
    assert missing.skip_message == "listing failed: no such bucket: s3://no-such-bucket-here/"

    monkeypatch.setenv("EDVMP_BUCKET", s3_bucket)
    use_credentials(monkeypatch, secret_key="not-the-secret")
    denied = driver.evaluate()
    assert denied.run_requests == [] and denied.cursor in (None, driver.cursor)
    assert (denied.skip_message or "").startswith("listing failed: access denied")
    assert jobs(driver.catalog) == []


class _FailingSecondList:
    """A boto3 S3 client whose second ``list_objects_v2`` call fails like a dropped server."""

    def __init__(self, client: BaseClient) -> None:
        self._client = client
        self.calls = 0

    def list_objects_v2(self, **kwargs: object) -> dict:
        self.calls += 1
        if self.calls == 2:
            raise EndpointConnectionError(endpoint_url="http://127.0.0.1:1")
        return self._client.list_objects_v2(**kwargs)


def test_a_listing_error_after_the_first_page_keeps_that_page(
    driver: SensorDriver,
    s3_client: BaseClient,
    s3_bucket: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Page one's versions are registered when page two fails: their requests go out and the
    cursor moves past page one only."""
    limits(monkeypatch, page_size=2, max_pages=5, max_runs=100)
    versions = {k: put(s3_client, s3_bucket, k) for k in ("a.mp4", "b.mp4", "c.mp4")}
    real = ObjectStoreResource.s3_client
    monkeypatch.setattr(
        ObjectStoreResource, "s3_client", lambda self: _FailingSecondList(real(self))
    )
    partial = driver.tick()
    assert_requests(partial, s3_bucket, {k: versions[k] for k in ("a.mp4", "b.mp4")})
    assert SweepCursor.parse(partial.cursor) == SweepCursor("b.mp4", 0)
    monkeypatch.setattr(ObjectStoreResource, "s3_client", real)
    assert_requests(driver.tick(), s3_bucket, {"c.mp4": versions["c.mp4"]})
    assert jobs(driver.catalog) == pending(versions)


def test_the_listing_sensor_can_be_switched_off(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On AWS the SQS sensor sees every upload; EDVMP_OBJECT_SENSOR=off stops the listing."""
    from edvmp_pipeline.defs.sensors.object_sensor import s3_object_sensor

    monkeypatch.setenv("EDVMP_OBJECT_SENSOR", "off")
    context = dg.build_sensor_context(
        resources={
            "catalog": CatalogResource(root=str(tmp_path / "catalog")),
            "object_store": ObjectStoreResource(endpoint_url="http://127.0.0.1:9"),
        }
    )
    result = s3_object_sensor(context)
    assert not result.run_requests
    assert "EDVMP_OBJECT_SENSOR=off" in str(result.skip_reason)


def test_a_home_of_thousands_of_versions_keeps_ticks_and_status_keyed(
    driver: SensorDriver, s3_client: BaseClient, s3_bucket: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """3,000 catalogued versions (the state store holds them all, SUCCEEDED): a sweep over
    the bucket requests exactly the two new uploads, wherever they sort, and ``edvmp status``
    answers for an old version and a new one. Cost targets live in
    benchmarks/catalog_scale.py; this checks the keyed paths give the right answers."""
    from concurrent.futures import ThreadPoolExecutor

    from edvmp_pipeline.domain.records import ObjectVersion
    from edvmp_pipeline_tests.cli_support import run_edvmp

    n = 3000

    def upload(i: int) -> tuple[str, str]:
        key = f"lib/{i % 10}/{i:05d}.mp4"
        return key, put(s3_client, s3_bucket, key)

    with ThreadPoolExecutor(16) as pool:
        old = dict(pool.map(upload, range(n)))
    source = f"s3://{s3_bucket}"
    pairs = [
        (partition_key_for(source, k, e), ObjectVersion(source, k, e, 10, None))
        for k, e in old.items()
    ]
    driver.catalog.register(pairs, registered_by="history")
    keys = [pk for pk, _ in pairs]
    driver.catalog.state.claim(keys, "history-run")
    driver.catalog.state.mark_succeeded(keys, "history-run")
    new = {k: put(s3_client, s3_bucket, k) for k in ("!first.mp4", "zz-last.mp4")}
    limits(monkeypatch, page_size=500, max_pages=4, max_runs=200)
    requested: list[str] = []
    while driver.sweeps < 1:
        requested += run_keys(driver.tick())
    assert sorted(requested) == sorted(run_key(s3_bucket, k, e) for k, e in new.items())

    env = {**os.environ, "EDVMP_CATALOG": str(driver.catalog.root)}
    done = run_edvmp("status", keys[1234], "--json", env=env)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["state"] == "SUCCEEDED"
    fresh = partition_key_for(source, "zz-last.mp4", new["zz-last.mp4"])
    done = run_edvmp("status", fresh, "--json", env=env)
    assert json.loads(done.stdout)["state"] == "PENDING"


def test_launched_run_keys_answers_a_page_in_one_query(instance: dg.DagsterInstance) -> None:
    """Of a page of PENDING run keys, exactly those with a run come back, from one
    ``get_runs`` call with a list-valued tag filter, however many runs the instance holds."""
    existing = [f"uploads/lib/{i:04d}.mp4@etag{i}" for i in range(0, 60, 3)]
    for key in existing:
        create_run_for_test(instance, job_name=INGEST_JOB, tags={RUN_KEY_TAG: key})
    create_run_for_test(instance, job_name=INGEST_JOB, tags={"other": "x"})
    asked = [f"uploads/lib/{i:04d}.mp4@etag{i}" for i in range(60)]
    calls: list[object] = []
    real_get_runs = instance.get_runs

    def counting_get_runs(*args: object, **kwargs: object) -> object:
        calls.append(kwargs.get("filters"))
        return real_get_runs(*args, **kwargs)  # type: ignore[arg-type]

    instance.get_runs = counting_get_runs  # type: ignore[method-assign]
    try:
        assert launched_run_keys(instance, asked) == set(existing)
        assert len(calls) == 1
        assert launched_run_keys(instance, []) == set()
        assert launched_run_keys(instance, ["uploads/none@x"]) == set()
    finally:
        instance.get_runs = real_get_runs  # type: ignore[method-assign]
