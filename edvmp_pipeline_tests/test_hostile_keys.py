"""Object keys no one planned for, against the real local SeaweedFS.

Real MP4s (made by ffmpeg) under keys that differ only in Unicode normalisation or case,
that carry URL syntax (``+``, ``%20``, ``%``, ``#``, ``?``), control characters, emoji, the
partition-key separators, 1024 bytes, a folder marker beside them; the same content under two
keys, overwrites with new and with identical content. What is checked: each version is
catalogued exactly once under the key byte-for-byte as the store lists it, by ``edvmp
ingest`` and by the object sensor (whose runs are executed), and an upload's job id is the
one the sensor gives the object the server actually stored.
"""

from __future__ import annotations

import os
import subprocess
import unicodedata
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import pytest
from botocore.client import BaseClient

from edvmp_pipeline.catalog.state_store import JobState
from edvmp_pipeline.catalog.store import FAILED, SUCCEEDED, Catalog
from edvmp_pipeline.defs.in_process_runs import ingest_in_process as ingest
from edvmp_pipeline.devtools.stack import StackSettings, make_s3_client
from edvmp_pipeline.domain.object_keys import InvalidObjectKey, validate_object_key
from edvmp_pipeline.domain.partition_keys import is_valid_partition_key, partition_key_for
from edvmp_pipeline.domain.video_filter import DEFAULT_VIDEO_EXTENSIONS, skip_reason
from edvmp_pipeline.services.ingest import MISSING_RETRY_ATTEMPTS, missing_but_back
from edvmp_pipeline.services.uploads import job_id_for, presign_upload, put_file
from edvmp_pipeline_tests.s3_server import configure_s3_env
from edvmp_pipeline_tests.test_object_sensor import (
    SensorDriver,
    run_request_in_process,
)

CAFE = "café.mp4"
# A 1024-byte key (S3's limit) whose '/'-separated parts stay within SeaweedFS's 255 bytes.
LONGEST = "/".join(["s" * 200] * 5) + "/" + "t" * 15 + ".mp4"
assert len(LONGEST.encode()) == 1024

# Keys every S3 server stores as they are (SeaweedFS: checked character by character).
STORED_AS_IS = [
    "u/" + unicodedata.normalize("NFC", CAFE),
    "u/" + unicodedata.normalize("NFD", CAFE),  # a distinct key: no normalisation anywhere
    "sp/a b.mp4",
    "plus/a+b.mp4",
    "pct/a%20b.mp4",
    "pct/a%b.mp4",
    "pct/100%.mp4",
    "url/a#b?c=d&e;f.mp4",
    "emoji/🎬🙂.mp4",
    "case/Clip.mp4",
    "case/clip.mp4",
    "ext/UPPER.MP4",
    "sep/a~b~c.mp4",
    "sep/x~3190b944~b56eff1a68d72af1.mp4",  # spells a partition key
    "sep/a,b[1]...mp4",
    "quote/a\"b'*.mp4",
    "ctl/tab\there.mp4",
    "ctl/new\nline.mp4",
    "ctl/esc\x1b[2J.mp4",
    "bidi/a\u202eb.mp4",
    "trailing space.mp4 ",
    "same/one.mp4",
    "same/two.mp4",
    LONGEST,
]


def _mp4(path: Path, colour: str) -> Path:
    subprocess.run(
        [
            "ffmpeg", "-v", "error", "-y", "-f", "lavfi",
            "-i", f"color=c={colour}:size=64x48:rate=10:duration=0.3",
            "-c:v", "libx264", "-pix_fmt", "yuv420p", str(path),
        ],
        check=True,
    )  # fmt: skip
    return path


@pytest.fixture(scope="module")
def clips(tmp_path_factory: pytest.TempPathFactory) -> tuple[bytes, bytes]:
    """Two small real MP4s with different content (so different ETags)."""
    folder = tmp_path_factory.mktemp("clips")
    return (
        _mp4(folder / "red.mp4", "red").read_bytes(),
        _mp4(folder / "blue.mp4", "blue").read_bytes(),
    )


@pytest.fixture
def home(s3_home: Path) -> Path:
    """This module's home: pointed at the test's S3 bucket."""
    return s3_home


def listing(client: BaseClient, bucket: str) -> dict[str, str]:
    """key → ETag (unquoted) of every object, as the store lists them."""
    found: dict[str, str] = {}
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket):
        for obj in page.get("Contents", []):
            assert obj["Key"] not in found
            found[obj["Key"]] = obj["ETag"].strip('"')
    return found


def upload_all(client: BaseClient, bucket: str, clips: tuple[bytes, bytes]) -> dict[str, str]:
    """The hostile keys with real MP4s, a folder marker and an empty video; key → ETag of
    the videos."""
    red, blue = clips
    for key in STORED_AS_IS:
        # Keys differing only in normalisation or case get different content, so a mix-up
        # shows in the ETag; the two same/ keys share theirs.
        body = blue if key in ("u/" + unicodedata.normalize("NFD", CAFE), "case/clip.mp4") else red
        client.put_object(Bucket=bucket, Key=key, Body=body)
    client.put_object(Bucket=bucket, Key="folder/", Body=b"")
    listed = listing(client, bucket)
    assert set(listed) == {*STORED_AS_IS, "folder/"}, "the store rewrote a key"
    del listed["folder/"]
    return listed


def catalogued(catalog: Catalog) -> Counter[tuple[str, str]]:
    _, rows = catalog.query("SELECT object_key, etag FROM videos")
    return Counter((key, etag) for key, etag in rows)


def test_ingest_catalogues_each_version_once_under_its_exact_key(
    home: Path, s3_client: BaseClient, s3_bucket: str, clips: tuple[bytes, bytes]
) -> None:
    videos = upload_all(s3_client, s3_bucket, clips)
    report = ingest(f"s3://{s3_bucket}")
    assert report.listed == len(videos)  # the folder marker is not a version
    assert len(report.succeeded) == len(videos) and report.failed == []

    catalog = Catalog(home / "catalog")
    assert catalogued(catalog) == Counter(videos.items())
    _, rows = catalog.query("SELECT partition_key, object_key, etag FROM videos")
    assert len({pk for pk, _, _ in rows}) == len(rows)
    for pk, key, etag in rows:
        assert pk == partition_key_for(f"s3://{s3_bucket}", key, etag)
        assert is_valid_partition_key(pk)

    # Identical content again (same ETag): nothing new. New content: one new version.
    red, blue = clips
    s3_client.put_object(Bucket=s3_bucket, Key="plus/a+b.mp4", Body=red)
    s3_client.put_object(Bucket=s3_bucket, Key="u/" + CAFE, Body=blue)
    again = ingest(f"s3://{s3_bucket}")
    assert [again.versions[pk].object_key for pk in again.new] == ["u/" + CAFE]
    assert again.failed == []
    expected = Counter(videos.items())
    expected[("u/" + CAFE, listing(s3_client, s3_bucket)["u/" + CAFE])] += 1
    assert catalogued(catalog) == expected


@pytest.fixture
def sensor_home(
    s3_stack: StackSettings,
    s3_bucket: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[SensorDriver]:
    """A sensor driver on a private Dagster home, EDVMP_HOME and catalog."""
    configure_s3_env(monkeypatch, s3_stack, s3_bucket)
    monkeypatch.setenv("EDVMP_HOME", str(tmp_path / "edvmp"))
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "dagster"))
    (tmp_path / "dagster").mkdir()
    (tmp_path / "dagster" / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    monkeypatch.setenv("EDVMP_CATALOG", str(tmp_path / "edvmp" / "catalog"))
    instance = dg.DagsterInstance.get()
    try:
        yield SensorDriver(
            instance, Catalog(tmp_path / "edvmp" / "catalog").ensure(), s3_stack.endpoint_url
        )
    finally:
        instance.dispose()
        os.environ.pop("DAGSTER_HOME", None)


# Runs executed in the sensor test: one per kind of trouble, each run costs ~1 s.
RUN = ("u/" + unicodedata.normalize("NFD", CAFE), "ctl/new\nline.mp4", "pct/a%20b.mp4", LONGEST)


def test_the_sensor_requests_each_version_once_and_its_run_finds_the_exact_key(
    sensor_home: SensorDriver, s3_client: BaseClient, s3_bucket: str, clips: tuple[bytes, bytes]
) -> None:
    driver = sensor_home
    videos = upload_all(s3_client, s3_bucket, clips)
    data = driver.tick()
    assert driver.tick().run_requests == []
    # The run key carries the exact key (the object_key tag is cut at 1000 characters).
    requested = {rr.run_key: rr for rr in data.run_requests}
    assert len(requested) == len(data.run_requests)
    wanted = {k: e for k, e in videos.items() if skip_reason(k, DEFAULT_VIDEO_EXTENSIONS) is None}
    assert set(wanted) == set(videos) - {"trailing space.mp4 "}  # extension ".mp4 "
    assert set(requested) == {f"{s3_bucket}/{k}@{e}" for k, e in wanted.items()}
    for key in RUN:
        rr = requested[f"{s3_bucket}/{key}@{videos[key]}"]
        run = run_request_in_process(driver.instance, rr, driver.catalog)
        assert run.status == dg.DagsterRunStatus.SUCCESS, key
    _, rows = driver.catalog.query("SELECT object_key, etag FROM videos")
    assert sorted(rows) == sorted((k, videos[k]) for k in RUN)
    _, rows = driver.catalog.query("SELECT status, count(*) FROM jobs GROUP BY status")
    assert dict(rows)[SUCCEEDED] == len(RUN)


# Keys the store would keep under another name: `edvmp upload` / presign_upload must refuse
# them, else the job id it prints never exists.
REWRITTEN = ["bs/a\\b.mp4", "C:\\Users\\me\\clip.mp4", "a//b.mp4", "/lead.mp4", "dir/"]


def test_an_upload_is_refused_or_stored_under_the_key_its_job_id_names(
    s3_stack: StackSettings,
    s3_client: BaseClient,
    s3_bucket: str,
    tmp_path: Path,
    clips: tuple[bytes, bytes],
) -> None:
    clip = tmp_path / "clip.mp4"
    clip.write_bytes(clips[0])
    # SigV4, as `edvmp upload` and the API sign (SeaweedFS refuses SigV2 URLs of non-ASCII keys).
    signer = make_s3_client(s3_stack, signature_version="s3v4")
    asked = {}
    for key in [*STORED_AS_IS, *REWRITTEN]:
        try:
            upload = presign_upload(signer, s3_bucket, key, 600)
        except InvalidObjectKey:
            continue
        asked[key] = put_file(upload, clip, what=key)
    listed = listing(s3_client, s3_bucket)
    # Control characters are refused at the door (invisible in listings), the rest kept.
    refused = {k for k in STORED_AS_IS if k.startswith("ctl/")}
    assert set(asked) == set(STORED_AS_IS) - refused
    assert set(listed) == set(asked)
    for key, etag in asked.items():
        assert job_id_for(s3_bucket, key, etag) == partition_key_for(
            f"s3://{s3_bucket}", key, listed[key]
        )


def test_backslash_keys_are_refused_with_the_key_the_store_would_keep() -> None:
    with pytest.raises(InvalidObjectKey) as caught:
        validate_object_key("bs/a\\b.mp4")
    assert caught.value.reason == (
        "invalid object key 'bs/a\\\\b.mp4': backslash; the store would keep another key "
        "('\\' as '/'); use 'bs/a/b.mp4'"
    )


def _fail_as_missing(
    driver: SensorDriver, client: BaseClient, bucket: str, key: str, body: bytes
) -> str:
    """Upload, let the sensor request it, delete it before its run: FAILED object_missing."""
    etag = client.put_object(Bucket=bucket, Key=key, Body=body)["ETag"].strip('"')
    (rr,) = driver.tick().run_requests
    client.delete_object(Bucket=bucket, Key=key)
    run = run_request_in_process(driver.instance, rr, driver.catalog)
    assert run.status == dg.DagsterRunStatus.FAILURE
    _, rows = driver.catalog.query("SELECT object_key, status, error_class FROM jobs")
    assert rows == [(key, FAILED, "object_missing")]
    assert driver.tick().run_requests == []  # not listed: nothing to do
    return etag


def test_a_version_that_failed_as_missing_is_taken_again_when_it_is_back(
    sensor_home: SensorDriver, s3_client: BaseClient, s3_bucket: str, clips: tuple[bytes, bytes]
) -> None:
    """Deleted between its listing and its run, then uploaded again with the same bytes
    (same ETag, so the same version): it used to stay FAILED for good, never catalogued,
    while the object sat in the bucket; the sensor now requests it again, once."""
    driver, key = sensor_home, "gone/and back.mp4"
    etag = _fail_as_missing(driver, s3_client, s3_bucket, key, clips[0])
    s3_client.put_object(Bucket=s3_bucket, Key=key, Body=clips[0])

    data = driver.tick()
    assert [rr.run_key for rr in data.run_requests] == [f"{s3_bucket}/{key}@{etag}#2"]
    assert driver.tick().run_requests == []  # its run exists: not requested twice
    run = run_request_in_process(driver.instance, data.run_requests[0], driver.catalog)
    assert run.status == dg.DagsterRunStatus.SUCCESS
    _, rows = driver.catalog.query("SELECT object_key, status, attempts FROM jobs")
    assert rows == [(key, SUCCEEDED, 2)]
    assert catalogued(driver.catalog) == Counter({(key, etag): 1})
    assert driver.tick().run_requests == []
    _, rows = driver.catalog.query('SELECT "class", status FROM incidents')
    assert rows == [("object_missing", "RESOLVED")]


def test_ingest_takes_a_version_again_that_failed_as_missing_and_is_back(
    sensor_home: SensorDriver, s3_client: BaseClient, s3_bucket: str, clips: tuple[bytes, bytes]
) -> None:
    driver, key = sensor_home, "gone/again.mp4"
    etag = _fail_as_missing(driver, s3_client, s3_bucket, key, clips[1])
    s3_client.put_object(Bucket=s3_bucket, Key=key, Body=clips[1])
    report = ingest(f"s3://{s3_bucket}")
    assert report.known_failures == [] and len(report.retried) == 1
    assert report.succeeded == report.retried
    assert catalogued(driver.catalog) == Counter({(key, etag): 1})
    _, rows = driver.catalog.query("SELECT status, attempts FROM jobs")
    assert rows == [(SUCCEEDED, 2)]


def test_a_version_always_missing_when_read_is_not_taken_again_for_ever() -> None:
    def state(attempts: int, error_class: str = "object_missing") -> JobState:
        return JobState("k~e~0123456789abcdef", FAILED, attempts, error_class, "object missing")

    assert missing_but_back(state(1)) and missing_but_back(state(MISSING_RETRY_ATTEMPTS - 1))
    assert not missing_but_back(state(MISSING_RETRY_ATTEMPTS))
    assert not missing_but_back(state(1, "corrupt_media"))
