"""S3 fault tests (issue 4): nothing lost, nothing doubled, every failure one incident.

Against the real SeaweedFS: the session's server, and a private one for the test that stops
the server in the middle of a batch and starts it again. Each test ends with an assertion on
the catalog: every good object has exactly one ``videos`` row per version, every bad one
exactly one incident of the right class.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import dagster as dg
import duckdb
import pytest
from botocore.client import BaseClient

from edvmp_pipeline.adapters.dagster_instance import get_instance
from edvmp_pipeline.adapters.object_store import ObjectStoreResource, ProbeTarget
from edvmp_pipeline.adapters.prober import FfprobeProber
from edvmp_pipeline.catalog.store import Catalog
from edvmp_pipeline.defs.batch_runs import run_batches
from edvmp_pipeline.defs.catalog_resource import CatalogResource
from edvmp_pipeline.defs.in_process_runs import ingest_in_process as ingest
from edvmp_pipeline.defs.in_process_runs import redrive_in_process as redrive
from edvmp_pipeline.defs.sensors.failure_sensors import redrive_sensor
from edvmp_pipeline.devtools.stack import (
    StackPorts,
    StackSettings,
    make_s3_client,
    stack_down,
    stack_up,
)
from edvmp_pipeline.domain.records import ObjectVersion
from edvmp_pipeline.services.incidents import due_redrives
from edvmp_pipeline.services.processing import RetrySettings
from edvmp_pipeline_tests.s3_server import configure_s3_env
from edvmp_pipeline_tests.test_object_sensor import (
    SensorDriver,
    pk,
    put,
    run_key,
    run_keys,
    run_request_in_process,
    use_credentials,
)

IN_STEP_ATTEMPTS = 2
# Retries as configured, with millisecond backoff instead of the default 0.5 s.
FAST_RETRIES = RetrySettings(attempts=IN_STEP_ATTEMPTS, base_delay_s=0.01, max_delay_s=0.02)


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    """A small real MP4; variants with a few bytes appended are distinct versions that probe
    the same."""
    path = tmp_path_factory.mktemp("clip") / "clip.mp4"
    subprocess.run(
        [
            "ffmpeg", "-v", "error", "-y",
            "-f", "lavfi", "-i", "testsrc2=size=160x120:rate=10:duration=1",
            "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", str(path),
        ],
        check=True,
    )  # fmt: skip
    return path.read_bytes()


def variant(clip: bytes, n: int) -> bytes:
    return clip + n.to_bytes(4, "big")


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh EDVMP_HOME: catalog and Dagster instance inside it, as `edvmp` uses them."""
    monkeypatch.setenv("EDVMP_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("DAGSTER_HOME", raising=False)
    monkeypatch.delenv("EDVMP_CATALOG", raising=False)
    return tmp_path / "home"


@pytest.fixture
def probe_attempts(monkeypatch: pytest.MonkeyPatch) -> dict[str, int]:
    """object key → calls of ``probe_target`` (one per in-step attempt)."""
    calls: dict[str, int] = {}
    real = ObjectStoreResource.probe_target

    def counting(self: ObjectStoreResource, version: ObjectVersion) -> ProbeTarget:
        calls[version.object_key] = calls.get(version.object_key, 0) + 1
        return real(self, version)

    monkeypatch.setattr(ObjectStoreResource, "probe_target", counting)
    return calls


@dataclass(frozen=True)
class PrivateStack:
    """A SeaweedFS of one test's own, so that it can be stopped and started again."""

    home: Path
    ports: StackPorts
    settings: StackSettings

    def stop(self) -> bool:
        # SIGKILL after half a second: the clean stop takes ~15 s and loses nothing more.
        return stack_down(self.home, grace_s=0.5)

    def start(self) -> StackSettings:
        """Start again on the same ports and data, so every client's settings stay valid."""
        with _no_aws_keys_in_environment():
            return stack_up(self.home, bucket=self.settings.bucket, ports=self.ports)


@contextlib.contextmanager
def _no_aws_keys_in_environment() -> Iterator[None]:
    """Hide AWS keys from the weed server stack_up starts.

    Work-around for a stack.py bug: weed adds an *admin* identity for the AWS_ACCESS_KEY_ID
    / AWS_SECRET_ACCESS_KEY it inherits. With the stack's own key exported (this test, or a
    shell after `eval "$(edvmp stack up)"`), a restart then authenticates requests as that
    other identity and refuses to create the existing bucket (BucketAlreadyExists).
    """
    names = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN")
    saved = {n: os.environ.pop(n) for n in names if n in os.environ}
    try:
        yield
    finally:
        os.environ.update(saved)


@pytest.fixture
def private_stack(tmp_path: Path) -> Iterator[PrivateStack]:
    home = tmp_path / "stack"
    ports = StackPorts.free()
    with _no_aws_keys_in_environment():
        settings = stack_up(home, bucket="faults", ports=ports)
    stack = PrivateStack(home, ports, settings)
    try:
        yield stack
    finally:
        stack.stop()


def videos_per_version(catalog: Catalog) -> dict[str, int]:
    """Rows landed per version in the ``videos`` files themselves (the view would hide a
    version written twice)."""
    pattern = str(catalog.root / "videos" / "*.parquet")
    rows = duckdb.execute(
        "SELECT partition_key, count(*) FROM read_parquet(?) GROUP BY ALL", [pattern]
    ).fetchall()
    return dict(rows)


def succeeded_attempts(catalog: Catalog) -> dict[str, int]:
    """Attempts (claims) of each SUCCEEDED version."""
    _, rows = catalog.query("SELECT partition_key, attempts FROM jobs WHERE status = 'SUCCEEDED'")
    return dict(rows)


def incidents(catalog: Catalog) -> list[tuple]:
    _, rows = catalog.query(
        'SELECT object_key, "class", retryable, status, attempts FROM incidents ORDER BY 1'
    )
    return rows


def test_server_stopped_mid_batch_then_redriven(
    private_stack: PrivateStack,
    home: Path,
    clip: bytes,
    monkeypatch: pytest.MonkeyPatch,
    probe_attempts: dict[str, int],
) -> None:
    """The server dies after the batch's first video: the rest fail as store_unreachable
    after the in-step retries; once it is back, a redrive completes exactly those."""
    stack = private_stack.settings
    configure_s3_env(monkeypatch, stack, stack.bucket)
    client = make_s3_client(stack)
    for i in range(4):
        put(client, stack.bucket, f"batch/{i:02d}.mp4", variant(clip, i))
    report = ingest(f"s3://{stack.bucket}", register_only=True)
    assert len(report.new) == 4

    real_probe = FfprobeProber.probe
    stopped: list[bool] = []

    def probe_then_stop(self: FfprobeProber, target: str, **kwargs: object):
        record = real_probe(self, target, **kwargs)
        if not stopped:
            stopped.append(private_stack.stop())
        return record

    monkeypatch.setattr(FfprobeProber, "probe", probe_then_stop)
    instance = get_instance()
    # One worker: the versions go one by one, so exactly the first one gets through.
    run_batches(
        instance,
        report.new,
        source=report.source,
        batch_size=50,
        workers=1,
        retry=FAST_RETRIES,
    )
    assert stopped == [True]
    catalog = Catalog(home / "catalog")
    states = catalog.job_states(report.new)
    [first] = [k for k in report.new if states[k].status == "SUCCEEDED"]
    failed = [k for k in report.new if k != first]
    assert {states[k].error_class for k in failed} == {"store_unreachable"}
    assert {probe_attempts[report.versions[k].object_key] for k in failed} == {IN_STEP_ATTEMPTS}
    assert [r[1:] for r in incidents(catalog)] == [("store_unreachable", True, "OPEN", 1)] * 3
    assert videos_per_version(catalog) == {first: 1}

    monkeypatch.setattr(FfprobeProber, "probe", real_probe)
    assert private_stack.start().endpoint_url == stack.endpoint_url
    outcome = redrive(failure_class="store_unreachable")
    assert sorted(outcome.succeeded) == sorted(failed) and outcome.failed == []
    assert videos_per_version(catalog) == dict.fromkeys(report.new, 1)
    # The first version succeeded in the ingest, the others once more in the redrive.
    assert succeeded_attempts(catalog) == {first: 1, **dict.fromkeys(failed, 2)}
    assert [r[1:] for r in incidents(catalog)] == [("store_unreachable", True, "RESOLVED", 1)] * 3
    assert due_redrives(catalog) == []
    # Nothing is left for the automatic redrive either.
    result = redrive_sensor(
        dg.build_sensor_context(
            instance=instance, resources={"catalog": CatalogResource(root=str(catalog.root))}
        )
    )
    assert not result.run_requests


# --- event-driven faults, through the object sensor on the session's server ----------------


@pytest.fixture
def sensor(
    s3_stack: StackSettings,
    s3_bucket: str,
    home: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[SensorDriver]:
    """The object sensor on a fresh bucket, with the catalog and instance `edvmp` uses."""
    configure_s3_env(monkeypatch, s3_stack, s3_bucket)
    instance = get_instance()
    try:
        yield SensorDriver(instance, Catalog(home / "catalog").ensure(), s3_stack.endpoint_url)
    finally:
        instance.dispose()


def test_the_same_event_three_times_across_restarts_is_one_run(
    sensor: SensorDriver, s3_client: BaseClient, s3_bucket: str, clip: bytes
) -> None:
    """The same upload seen three times (re-uploaded with identical bytes, so the same
    ETag), with the daemon restarted between ticks, and once more after a restart that
    lost the cursor: one run request, one version, one result."""
    etag = put(s3_client, s3_bucket, "dup.mp4", clip)
    first = sensor.tick()
    assert run_keys(first) == [run_key(s3_bucket, "dup.mp4", etag)]
    for _ in range(2):
        sensor.instance.dispose()
        sensor = sensor.restart()
        assert put(s3_client, s3_bucket, "dup.mp4", clip) == etag
        again = sensor.tick()
        assert run_keys(again) == [] and not again.dynamic_partitions_requests
    sensor.cursor = None
    assert run_keys(sensor.tick()) == []
    assert dict(sensor.requested) == {run_key(s3_bucket, "dup.mp4", etag): 1}

    run = run_request_in_process(sensor.instance, first.run_requests[0], sensor.catalog)
    assert run.status == dg.DagsterRunStatus.SUCCESS
    assert run_keys(sensor.tick()) == []
    assert videos_per_version(sensor.catalog) == {pk(s3_bucket, "dup.mp4", etag): 1}
    _, rows = sensor.catalog.query("SELECT count(*) FROM objects")
    assert rows == [(1,)]
    assert incidents(sensor.catalog) == []
    sensor.instance.dispose()


def test_an_object_deleted_before_its_run_is_object_missing_and_not_retried(
    sensor: SensorDriver, s3_client: BaseClient, s3_bucket: str, clip: bytes
) -> None:
    keep = put(s3_client, s3_bucket, "keep.mp4", variant(clip, 1))
    put(s3_client, s3_bucket, "gone.mp4", variant(clip, 2))
    data = sensor.tick()
    assert len(data.run_requests) == 2
    s3_client.delete_object(Bucket=s3_bucket, Key="gone.mp4")
    runs = {
        rr.tags["edvmp/object_key"]: run_request_in_process(sensor.instance, rr, sensor.catalog)
        for rr in data.run_requests
    }
    assert runs["keep.mp4"].status == dg.DagsterRunStatus.SUCCESS
    assert runs["gone.mp4"].status == dg.DagsterRunStatus.FAILURE
    assert videos_per_version(sensor.catalog) == {pk(s3_bucket, "keep.mp4", keep): 1}
    assert incidents(sensor.catalog) == [("gone.mp4", "object_missing", False, "OPEN", 1)]
    _, rows = sensor.catalog.query("SELECT message FROM incidents")
    assert rows[0][0].startswith(f"object missing: s3://{s3_bucket}/gone.mp4")
    assert due_redrives(sensor.catalog) == []
    assert run_keys(sensor.tick()) == []  # and the sensor does not bring it back


def test_wrong_credentials_for_the_run_are_access_denied_and_permanent(
    sensor: SensorDriver,
    s3_stack: StackSettings,
    s3_client: BaseClient,
    s3_bucket: str,
    clip: bytes,
    monkeypatch: pytest.MonkeyPatch,
    probe_attempts: dict[str, int],
) -> None:
    etag = put(s3_client, s3_bucket, "locked.mp4", clip)
    [request] = sensor.tick().run_requests
    use_credentials(monkeypatch, secret_key="wrong-secret")
    run = run_request_in_process(sensor.instance, request, sensor.catalog)
    assert run.status == dg.DagsterRunStatus.FAILURE
    assert probe_attempts == {"locked.mp4": 1}  # permanent: no in-step retry
    assert incidents(sensor.catalog) == [("locked.mp4", "access_denied", False, "OPEN", 1)]
    assert due_redrives(sensor.catalog) == []
    assert videos_per_version(sensor.catalog) == {}

    # Fixed configuration: an on-demand redrive completes it, once.
    use_credentials(monkeypatch, secret_key=s3_stack.secret_key)
    outcome = redrive(failure_class="access_denied")
    assert outcome.succeeded == [pk(s3_bucket, "locked.mp4", etag)]
    assert videos_per_version(sensor.catalog) == {pk(s3_bucket, "locked.mp4", etag): 1}
    assert incidents(sensor.catalog) == [("locked.mp4", "access_denied", False, "RESOLVED", 1)]
