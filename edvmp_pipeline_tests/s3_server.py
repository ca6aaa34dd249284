"""pytest plugin: a real S3 server (SeaweedFS) for the tests that need one.

Register it from ``conftest.py`` with ``pytest_plugins = ["edvmp_pipeline_tests.s3_server"]``.

Fixtures:

``s3_stack`` (session)
    :class:`~edvmp_pipeline.devtools.stack.StackSettings` of the server. If
    ``EDVMP_S3_ENDPOINT_URL``, ``AWS_ACCESS_KEY_ID`` and ``AWS_SECRET_ACCESS_KEY`` are set
    (CI starts one stack for the whole run with ``edvmp stack up``), that server is used and
    left running. Otherwise a
    private stack is started on free ports under a temporary ``EDVMP_HOME`` (~3-7 s) and
    killed at the end of the session.
``s3_client`` (session)
    A boto3 S3 client for that server.
``s3_bucket`` (function)
    The name of a fresh, empty, uniquely named bucket, deleted again afterwards.
``s3_home`` (function)
    A fresh ``EDVMP_HOME`` with every setting pointed at that server and bucket
    (:func:`configure_s3_env`).

Tests using any of them get the ``s3`` marker, so ``-m "not s3"`` skips them.
"""

from __future__ import annotations

import os
import re
import uuid
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest
from botocore.client import BaseClient
from botocore.exceptions import BotoCoreError, ClientError

from edvmp_pipeline.devtools.stack import (
    DEFAULT_BUCKET,
    DEFAULT_REGION,
    StackPorts,
    StackSettings,
    ensure_bucket,
    make_s3_client,
    stack_down,
    stack_up,
)

_S3_FIXTURES = frozenset({"s3_stack", "s3_client", "s3_bucket", "s3_home"})
# The private stack's data is thrown away, so a clean ~15 s SIGTERM stop buys nothing.
_TEARDOWN_GRACE_S = 0.5


def settings_from_env() -> StackSettings | None:
    """The server named by the environment (endpoint + both keys), or None if incomplete."""
    endpoint = os.environ.get("EDVMP_S3_ENDPOINT_URL")
    access_key = os.environ.get("AWS_ACCESS_KEY_ID")
    secret_key = os.environ.get("AWS_SECRET_ACCESS_KEY")
    if not (endpoint and access_key and secret_key):
        return None
    return StackSettings(
        endpoint_url=endpoint,
        access_key=access_key,
        secret_key=secret_key,
        region=os.environ.get("AWS_DEFAULT_REGION") or DEFAULT_REGION,
        bucket=os.environ.get("EDVMP_BUCKET") or DEFAULT_BUCKET,
        pid=None,
        data_dir=None,
    )


def unique_bucket_name(hint: str = "") -> str:
    """A valid S3 bucket name (lowercase, 3-63 chars) that includes ``hint`` when it can."""
    slug = re.sub(r"[^a-z0-9]+", "-", hint.lower()).strip("-")[:40].strip("-")
    prefix = f"t-{slug}-" if slug else "t-"
    return f"{prefix}{uuid.uuid4().hex[:10]}"


def create_test_bucket(client: BaseClient, hint: str = "") -> str:
    """Create a fresh uniquely named bucket and return its name.

    Cheap on the stacks started by ``edvmp_pipeline.devtools.stack``: an empty bucket holds no
    volume and its first write grows one (not SeaweedFS's default seven), so hundreds fit.
    """
    name = unique_bucket_name(hint)
    client.create_bucket(Bucket=name)
    return name


def delete_test_bucket(client: BaseClient, name: str) -> None:
    """Delete ``name`` and its objects, best effort (teardown must not hide a test's result)."""
    try:
        # SeaweedFS deletes a non-empty bucket in one call (-s3.allowDeleteBucketNotEmpty is
        # on by default) and frees its volume with it.
        client.delete_bucket(Bucket=name)
        return
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") != "BucketNotEmpty":
            return
    except BotoCoreError:
        return
    # Other servers (MinIO, AWS) want the bucket emptied first.
    try:
        paginator = client.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=name):
            keys = [{"Key": item["Key"]} for item in page.get("Contents", [])]
            if keys:
                client.delete_objects(Bucket=name, Delete={"Objects": keys, "Quiet": True})
        client.delete_bucket(Bucket=name)
    except (ClientError, BotoCoreError):
        pass


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark every test that uses the S3 fixtures with ``s3``."""
    for item in items:
        if _S3_FIXTURES.intersection(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.s3)


@pytest.fixture(scope="session")
def s3_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StackSettings]:
    """The session's S3 server: the one in the environment, else a private stack."""
    external = settings_from_env()
    if external is not None:
        ensure_bucket(make_s3_client(external), external.bucket)
        yield external
        return
    home = tmp_path_factory.mktemp("s3-stack")
    # Free ports, so that a developer's own `edvmp stack up` on 8333 is left alone.
    settings = stack_up(home, bucket=DEFAULT_BUCKET, ports=StackPorts.free())
    try:
        yield settings
    finally:
        stack_down(home, grace_s=_TEARDOWN_GRACE_S)


@pytest.fixture(scope="session")
def s3_client(s3_stack: StackSettings) -> BaseClient:
    """A boto3 S3 client for ``s3_stack``."""
    return make_s3_client(s3_stack)


@pytest.fixture
def s3_bucket(s3_client: BaseClient, request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh, empty bucket named after the test; deleted with its objects afterwards."""
    name = create_test_bucket(s3_client, request.node.name)
    try:
        yield name
    finally:
        delete_test_bucket(s3_client, name)


def configure_s3_env(monkeypatch: pytest.MonkeyPatch, stack: StackSettings, bucket: str) -> None:
    """Point every EDVMP_*/AWS_* setting at ``stack`` and ``bucket``, sensor limits at defaults.

    Also starts a new boto3 default session: it keeps the credentials it resolved first for
    the life of the process, and another test may have used another stack's keys.
    """
    for name, value in {**stack.env(), "EDVMP_BUCKET": bucket}.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setattr(boto3, "DEFAULT_SESSION", None)
    for name in (
        "AWS_PROFILE",
        "AWS_SESSION_TOKEN",
        "EDVMP_PREFIX",
        "EDVMP_VIDEO_EXTENSIONS",
        "EDVMP_SENSOR_MAX_PAGES",
        "EDVMP_SENSOR_MAX_RUNS",
        "EDVMP_SENSOR_PAGE_SIZE",
    ):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def s3_home(
    tmp_path: Path, s3_stack: StackSettings, s3_bucket: str, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Path]:
    """A fresh EDVMP_HOME whose settings point at ``s3_stack`` and the test's bucket (its
    own Dagster instance and catalog under it)."""
    configure_s3_env(monkeypatch, s3_stack, s3_bucket)
    monkeypatch.setenv("EDVMP_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("DAGSTER_HOME", raising=False)
    monkeypatch.delenv("EDVMP_CATALOG", raising=False)
    yield tmp_path / "home"
    # Code under test may set DAGSTER_HOME itself (get_instance), past monkeypatch's reach.
    os.environ.pop("DAGSTER_HOME", None)
