"""``edvmp ingest s3://bucket[/prefix]`` end to end against the real local SeaweedFS.

Real ffprobe reading presigned URLs, a real persistent Dagster instance and catalog under a
temporary ``EDVMP_HOME``; the sample library is uploaded with boto3 under hostile keys.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest
from boto3.s3.transfer import TransferConfig
from botocore.client import BaseClient

from edvmp_pipeline.adapters.prober import FfprobeProber
from edvmp_pipeline.catalog.store import Catalog
from edvmp_pipeline.defs.in_process_runs import ingest_in_process as ingest
from edvmp_pipeline.devtools.sample_media import generate_samples
from edvmp_pipeline.devtools.stack import StackSettings
from edvmp_pipeline.domain.partition_keys import is_valid_partition_key, partition_key_for

# sample file → S3 key: unicode, spaces, commas, brackets, nested prefixes.
UPLOADS = {
    "marketing/launch_teaser.mp4": "campaigns/launch teaser, final [v2].mp4",
    "training/ntsc_lecture.mov": "ugc/ünïcödé/日本語 ビデオ.mov",
    "ugc/clip vp9, opus.webm": "ugc/clip vp9, opus.webm",
    "training/silent_screencast.mkv": "training/silent screencast.mkv",
    "ugc/phone_portrait.mp4": "ugc/phone portrait (1).mp4",
    "broken/upload_cut_short.mp4": "broken/cut short.mp4",
    "broken/empty_upload.mp4": "broken/empty.mp4",
}
BAD = {"broken/cut short.mp4": "corrupt_media", "broken/empty.mp4": "empty_object"}
GOOD = set(UPLOADS.values()) - set(BAD)
MiB = 1024 * 1024


@pytest.fixture(scope="module")
def sample_library(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("library")
    generate_samples(folder)
    return folder


@pytest.fixture(scope="module")
def big_video(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A ~11 MB MP4 (noise defeats compression), index at the end: three 5 MB upload parts."""
    path = tmp_path_factory.mktemp("big") / "big.mp4"
    subprocess.run(
        [
            "ffmpeg", "-v", "error", "-y",
            "-f", "lavfi", "-i", "testsrc2=size=640x360:rate=25:duration=1",
            "-vf", "noise=alls=60:allf=t",
            "-c:v", "libx264", "-preset", "ultrafast", "-qp", "0", "-pix_fmt", "yuv420p",
            str(path),
        ],
        check=True,
    )  # fmt: skip
    assert path.stat().st_size > 10 * MiB
    return path


@pytest.fixture
def home(s3_home: Path) -> Path:
    """This module's home: pointed at the test's S3 bucket."""
    return s3_home


@pytest.fixture
def probed(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every target ffprobe is run on in this process (an empty object is judged by its
    size alone, without ffprobe)."""
    targets: list[str] = []
    real = FfprobeProber.probe

    def recording(self: FfprobeProber, target: str, *, size_bytes: int, **kwargs: object):
        if size_bytes:
            targets.append(target)
        return real(self, target, size_bytes=size_bytes, **kwargs)

    monkeypatch.setattr(FfprobeProber, "probe", recording)
    return targets


def upload_library(client: BaseClient, bucket: str, library: Path) -> dict[str, str]:
    """Upload the samples under their hostile keys; returns key → ETag without quotes."""
    etags = {}
    for name, key in UPLOADS.items():
        client.upload_file(str(library / name), bucket, key)
        etags[key] = client.head_object(Bucket=bucket, Key=key)["ETag"].strip('"')
    return etags


def edvmp(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    exe = Path(sys.executable).with_name("edvmp")
    return subprocess.run(
        [str(exe), *args], capture_output=True, text=True, env=env, timeout=300, check=False
    )


def test_ingest_a_bucket_prefix_then_the_whole_bucket(
    home: Path,
    sample_library: Path,
    s3_client: BaseClient,
    s3_bucket: str,
    s3_stack: StackSettings,
    probed: list[str],
) -> None:
    etags = upload_library(s3_client, s3_bucket, sample_library)

    # The CLI on a prefix: only the three ugc/ objects.
    done = edvmp("ingest", f"s3://{s3_bucket}/ugc/", env=dict(os.environ))
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"source: s3://{s3_bucket} (prefix 'ugc/')\n" in done.stdout
    assert "processed 3: succeeded 3, failed 0" in done.stdout

    # In-process on the whole bucket: the rest, ugc/ already catalogued.
    report = ingest(f"s3://{s3_bucket}")
    assert report.listed == 7 and len(report.new) == 4 and len(report.skipped) == 3
    assert {
        report.versions[pk].object_key: report.states[pk].error_class for pk in report.failed
    } == BAD

    catalog = Catalog(home / "catalog")
    _, rows = catalog.query("SELECT object_key, etag, source, partition_key, width FROM videos")
    assert {r[0]: r[1] for r in rows} == {k: etags[k] for k in GOOD}
    assert {r[2] for r in rows} == {f"s3://{s3_bucket}"}
    for key, etag, source, pk, width in rows:
        assert pk == partition_key_for(source, key, etag) and is_valid_partition_key(pk)
        assert width and width > 0
    _, rows = catalog.query(
        "SELECT object_key, status, error_class FROM jobs WHERE status != 'SUCCEEDED'"
    )
    assert {r[0]: (r[1], r[2]) for r in rows} == {k: ("FAILED", c) for k, c in BAD.items()}

    # ffprobe read presigned GET URLs on the store, never a local copy. (The empty object
    # is rejected from its size without a probe.)
    assert len(probed) == 3 and all(
        t.startswith(f"{s3_stack.endpoint_url}/{s3_bucket}/") and "X-Amz-Signature=" in t
        for t in probed
    )
    assert {unquote(urlsplit(t).path) for t in probed} == {
        f"/{s3_bucket}/campaigns/launch teaser, final [v2].mp4",
        f"/{s3_bucket}/training/silent screencast.mkv",
        f"/{s3_bucket}/broken/cut short.mp4",
    }

    again = ingest(f"s3://{s3_bucket}")
    assert again.new == [] and again.processed == [] and again.run_ids == []
    assert len(again.skipped) == 5 and len(again.known_failures) == 2


def test_an_overwrite_with_a_multipart_upload_is_a_new_version(
    home: Path,
    sample_library: Path,
    big_video: Path,
    s3_client: BaseClient,
    s3_bucket: str,
    probed: list[str],
) -> None:
    key = "library/feature film.mp4"
    s3_client.upload_file(str(sample_library / "ugc/phone_portrait.mp4"), s3_bucket, key)
    first = ingest(f"s3://{s3_bucket}")
    assert len(first.succeeded) == 1

    s3_client.upload_file(
        str(big_video),
        s3_bucket,
        key,
        Config=TransferConfig(multipart_threshold=5 * MiB, multipart_chunksize=5 * MiB),
    )
    multipart_etag = s3_client.head_object(Bucket=s3_bucket, Key=key)["ETag"].strip('"')
    assert multipart_etag.endswith("-3"), multipart_etag  # opaque: not an MD5 of the bytes
    second = ingest(f"s3://{s3_bucket}")
    assert len(second.new) == 1 and len(second.succeeded) == 1
    assert second.versions[second.new[0]].etag == multipart_etag

    catalog = Catalog(home / "catalog")
    _, rows = catalog.query(
        "SELECT etag, width, height, size_bytes FROM videos WHERE object_key = ? ORDER BY width",
        [key],
    )
    small = sample_library / "ugc/phone_portrait.mp4"
    assert rows == [
        (first.versions[first.new[0]].etag, 320, 240, small.stat().st_size),
        (multipart_etag, 640, 360, big_video.stat().st_size),
    ]
    _, rows = catalog.query("SELECT etag FROM videos_latest WHERE object_key = ?", [key])
    assert rows == [(multipart_etag,)]
    assert len(probed) == 2 and all("X-Amz-Signature=" in t for t in probed)


def test_cli_exit_status_for_a_missing_bucket_and_wrong_credentials(
    home: Path, s3_bucket: str
) -> None:
    env = dict(os.environ)
    missing = edvmp("ingest", "s3://no-such-bucket", env=env)
    assert missing.returncode == 2, missing.stdout + missing.stderr
    assert missing.stderr.strip() == "edvmp: error: no such bucket: s3://no-such-bucket"

    wrong = edvmp("ingest", f"s3://{s3_bucket}", env={**env, "AWS_SECRET_ACCESS_KEY": "wrong"})
    assert wrong.returncode == 2, wrong.stdout + wrong.stderr
    assert wrong.stderr.strip() == f"edvmp: error: access denied (403) to s3://{s3_bucket}"
    unknown = edvmp("ingest", f"s3://{s3_bucket}", env={**env, "AWS_ACCESS_KEY_ID": "NOBODY"})
    assert unknown.returncode == 2 and "access denied" in unknown.stderr
    for done in (missing, wrong, unknown):
        assert "Traceback" not in done.stderr and done.stdout == ""


def test_a_registered_object_deleted_or_replaced_before_its_run_fails_once(
    home: Path, sample_library: Path, s3_client: BaseClient, s3_bucket: str
) -> None:
    upload_library(s3_client, s3_bucket, sample_library)
    registered = ingest(f"s3://{s3_bucket}/ugc/", register_only=True)
    by_key = {v.object_key: pk for pk, v in registered.versions.items()}
    deleted, replaced = "ugc/clip vp9, opus.webm", "ugc/phone portrait (1).mp4"
    s3_client.delete_object(Bucket=s3_bucket, Key=deleted)
    s3_client.upload_file(str(sample_library / "marketing/launch_teaser.mp4"), s3_bucket, replaced)

    # Only the part of the bucket listed: a PENDING version elsewhere is not this ingest's.
    report = ingest(f"s3://{s3_bucket}/ugc/")
    assert sorted(report.unlisted) == sorted([by_key[deleted], by_key[replaced]])
    for key, words in ((deleted, "object missing"), (replaced, "object replaced")):
        state = report.states[by_key[key]]
        assert (state.status, state.error_class) == ("FAILED", "object_missing"), key
        assert words in (state.error or "").lower(), state.error
    (new,) = report.new
    assert report.versions[new].object_key == replaced
    assert report.states[new].status == "SUCCEEDED"
    assert Catalog(home / "catalog").state.pending_versions() == []
    again = ingest(f"s3://{s3_bucket}/ugc/")
    assert again.unlisted == [] and again.processed == []
