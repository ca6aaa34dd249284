"""``edvmp upload`` and ``edvmp status`` through the console script, against the real S3
server; plus the pure parts (key validation, presigning, state resolution) directly."""

from __future__ import annotations

import json
import subprocess
import sys
import unicodedata
from pathlib import Path

import dagster as dg
import pytest
from botocore.client import BaseClient

from edvmp_pipeline.adapters.object_store import ObjectStoreResource
from edvmp_pipeline.defs.catalog_resource import CatalogResource
from edvmp_pipeline.defs.sensors.object_sensor import SensorSettings, evaluate_sweep
from edvmp_pipeline.devtools.sample_media import generate_samples
from edvmp_pipeline.devtools.stack import StackSettings, make_s3_client
from edvmp_pipeline.domain.partition_keys import normalise_etag, partition_key_for
from edvmp_pipeline.domain.video_filter import DEFAULT_VIDEO_EXTENSIONS
from edvmp_pipeline.services.uploads import (
    InvalidObjectKey,
    job_id_for,
    presign_upload,
    validate_object_key,
)
from edvmp_pipeline_tests.dagster_dev import free_port, stack_env

EDVMP = str(Path(sys.executable).with_name("edvmp"))


@pytest.fixture(scope="module")
def samples(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("samples")
    generate_samples(folder)
    return folder


@pytest.fixture
def env(s3_stack: StackSettings, s3_bucket: str, tmp_path: Path) -> dict[str, str]:
    """A private EDVMP_HOME pointed at the test bucket."""
    return stack_env(tmp_path / "home", {**s3_stack.env(), "EDVMP_BUCKET": s3_bucket})


def edvmp(env: dict[str, str], *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([EDVMP, *args], env=env, capture_output=True, text=True, timeout=timeout)


def assert_clean_error(done: subprocess.CompletedProcess, code: int, text: str) -> None:
    """Exit ``code``, one line on stderr that contains ``text``, no traceback, no stdout."""
    assert done.returncode == code, (done.returncode, done.stdout, done.stderr)
    assert "Traceback" not in done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and text in lines[0], done.stderr
    assert done.stdout == ""


def sensor_tick(env: dict[str, str], bucket: str, monkeypatch: pytest.MonkeyPatch) -> list:
    """One object-sensor tick as the daemon would run it, on the env's catalog."""
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION"):
        monkeypatch.setenv(name, env[name])
    catalog = CatalogResource(root=str(Path(env["EDVMP_HOME"]) / "catalog"))
    store = ObjectStoreResource(endpoint_url=env["EDVMP_S3_ENDPOINT_URL"])
    settings = SensorSettings(bucket=bucket, extensions=DEFAULT_VIDEO_EXTENSIONS)
    with dg.instance_for_test() as instance:
        context = dg.build_sensor_context(instance=instance)
        result = evaluate_sweep(context, settings, catalog, store)
    return list(result.run_requests or [])


# --- upload ----------------------------------------------------------------------------------


def test_upload_prints_the_job_id_the_sensor_uses(
    env: dict[str, str],
    samples: Path,
    s3_client: BaseClient,
    s3_bucket: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    clip = samples / "marketing/launch_teaser.mp4"
    done = edvmp(env, "upload", str(clip))
    assert done.returncode == 0, done.stderr
    job = done.stdout.strip()
    assert done.stdout.count("\n") == 1, "stdout is the job id alone"
    assert "uploaded s3://" in done.stderr and f"edvmp status {job} --wait" in done.stderr

    head = s3_client.head_object(Bucket=s3_bucket, Key="launch_teaser.mp4")
    assert head["ContentLength"] == clip.stat().st_size
    assert head["ContentType"] == "video/mp4"
    body = s3_client.get_object(Bucket=s3_bucket, Key="launch_teaser.mp4")["Body"].read()
    assert body == clip.read_bytes()
    assert job == partition_key_for(
        f"s3://{s3_bucket}", "launch_teaser.mp4", normalise_etag(head["ETag"])
    )
    # The sensor itself, over the real listing, requests exactly that partition.
    requests = sensor_tick(env, s3_bucket, monkeypatch)
    assert [r.partition_key for r in requests] == [job]


def test_upload_with_key_keeps_unicode_and_spaces(
    env: dict[str, str], samples: Path, s3_client: BaseClient, s3_bucket: str
) -> None:
    key = "incoming/Ferien 動画, final (2).mov"
    done = edvmp(env, "upload", str(samples / "training/ntsc_lecture.mov"), "--key", key)
    assert done.returncode == 0, done.stderr
    etag = s3_client.head_object(Bucket=s3_bucket, Key=key)["ETag"]
    assert done.stdout.strip() == job_id_for(s3_bucket, key, etag)


def test_upload_warns_when_the_sensor_would_skip_the_key(
    env: dict[str, str], samples: Path
) -> None:
    done = edvmp(env, "upload", str(samples / "ugc/phone_portrait.mp4"), "--key", "notes.txt")
    assert done.returncode == 0
    assert "the object sensor will skip 'notes.txt'" in done.stderr
    # No hint to wait on a job that no sensor will start.
    assert "--wait" not in done.stderr
    assert "only `edvmp ingest s3://" in done.stderr


@pytest.mark.parametrize(
    ("key", "message"),
    [
        ("", "invalid object key: empty"),
        ("/abs/clip.mp4", "must not start with '/'"),
        ("a\x07b.mp4", "control character U+0007"),
        ("line\nbreak.mp4", "control character U+000A"),
        ("é" * 513, "1026 bytes of UTF-8, at most 1024"),
    ],
)
def test_upload_refuses_bad_keys(
    env: dict[str, str], samples: Path, key: str, message: str
) -> None:
    done = edvmp(env, "upload", str(samples / "ugc/phone_portrait.mp4"), "--key", key)
    assert_clean_error(done, 2, message)


def test_upload_errors_are_one_line_exit_2(
    env: dict[str, str], samples: Path, tmp_path: Path
) -> None:
    clip = str(samples / "ugc/phone_portrait.mp4")
    assert_clean_error(edvmp(env, "upload", str(tmp_path / "nope.mp4")), 2, "no such file")
    assert_clean_error(edvmp(env, "upload", str(tmp_path)), 2, "not a regular file")
    missing = edvmp({**env, "EDVMP_BUCKET": "no-such-bucket-here"}, "upload", clip)
    assert_clean_error(missing, 2, "no such bucket: s3://no-such-bucket-here")
    denied = edvmp({**env, "AWS_SECRET_ACCESS_KEY": "0" * 40}, "upload", clip)
    assert_clean_error(denied, 2, "access denied")
    unknown_key = edvmp({**env, "AWS_ACCESS_KEY_ID": "EDVMPNOSUCHKEY000000"}, "upload", clip)
    assert_clean_error(unknown_key, 2, "access denied")
    down = f"http://127.0.0.1:{free_port()}"
    unreachable = edvmp({**env, "EDVMP_S3_ENDPOINT_URL": down}, "upload", clip)
    assert_clean_error(unreachable, 2, f"S3 endpoint unreachable: {down}")


def test_longest_keys(
    env: dict[str, str], samples: Path, s3_client: BaseClient, s3_bucket: str
) -> None:
    clip = str(samples / "ugc/phone_portrait.mp4")
    # 1024 bytes in all; SeaweedFS also caps each '/'-separated part at 255 bytes.
    key = "/".join(["é" * 100] * 5) + "/" + "x" * 15 + ".mp4"
    assert len(key.encode()) == 1024
    done = edvmp(env, "upload", clip, "--key", key)
    assert done.returncode == 0, done.stderr
    assert s3_client.head_object(Bucket=s3_bucket, Key=key)["ContentLength"] > 0
    # The server's own refusal is a clean error too, with the key shortened in the message.
    refused = edvmp(env, "upload", clip, "--key", "x" * 300 + ".mp4")
    assert_clean_error(refused, 2, "object key refused as too long by the store")
    assert len(refused.stderr) < 400


# --- status ----------------------------------------------------------------------------------


def test_status_of_malformed_and_unknown_jobs(env: dict[str, str]) -> None:
    assert_clean_error(edvmp(env, "status", "not a job"), 2, "not a job id")
    unknown = partition_key_for("s3://nowhere", "clip.mp4", "0" * 32)
    assert_clean_error(edvmp(env, "status", unknown), 2, f"unknown job: {unknown}")
    waited = edvmp(env, "status", unknown, "--wait", "--timeout", "1")
    assert waited.returncode == 4, waited.stderr
    assert "timed out after 1 s; job is still unknown" in waited.stderr


def test_status_help_documents_exit_codes(env: dict[str, str]) -> None:
    done = edvmp(env, "status", "--help")
    assert done.returncode == 0
    for line in ("0  the job exists", "1  the job FAILED", "2  unknown job", "4  --wait gave"):
        assert line in done.stdout


def test_status_pending_after_the_sensor_registered_it(
    env: dict[str, str], samples: Path, s3_bucket: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    job = edvmp(env, "upload", str(samples / "ugc/phone_portrait.mp4")).stdout.strip()
    # Not seen by any sensor yet.
    assert_clean_error(edvmp(env, "status", job), 2, "unknown job")
    sensor_tick(env, s3_bucket, monkeypatch)
    done = edvmp(env, "status", job, "--json")
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert (report["state"], report["run_id"]) == ("PENDING", None)
    assert report["object_key"] == "phone_portrait.mp4"
    human = edvmp(env, "status", job)
    assert "state:      PENDING" in human.stdout and "run:        none yet" in human.stdout


def test_status_takes_a_job_id_spelled_decomposed(
    env: dict[str, str], samples: Path, s3_bucket: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A job id pasted through a tool that decomposes accents (NFD) names the same job."""
    job = edvmp(env, "upload", str(samples / "ugc/phone_portrait.mp4"), "--key", "café.mp4")
    assert job.returncode == 0, job.stderr
    assert len(sensor_tick(env, s3_bucket, monkeypatch)) == 1  # registered, PENDING
    decomposed = unicodedata.normalize("NFD", job.stdout.strip())
    assert decomposed != job.stdout.strip()
    done = edvmp(env, "status", decomposed)
    assert done.returncode == 0, done.stderr
    assert f"job:        {job.stdout.strip()}" in done.stdout
    assert "state:      PENDING" in done.stdout


def test_status_of_succeeded_and_failed_jobs(
    env: dict[str, str], samples: Path, s3_bucket: str
) -> None:
    good = edvmp(env, "upload", str(samples / "ugc/phone_portrait.mp4")).stdout.strip()
    bad = edvmp(env, "upload", str(samples / "broken/upload_cut_short.mp4")).stdout.strip()
    # `edvmp ingest` processes both in one batch run (no per-partition run tag): status finds
    # the run through the catalog.
    ingest = edvmp(env, "ingest", f"s3://{s3_bucket}")
    assert ingest.returncode == 1, ingest.stdout + ingest.stderr

    done = edvmp(env, "status", good, "--wait", "--timeout", "30", "--json")
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    # The batch run itself failed, for the other version; this version's result stands.
    assert (report["state"], report["run_status"]) == ("SUCCEEDED", "FAILURE")
    # ... and says it is a batch, so FAILURE is not read as this version's outcome.
    assert report["run_batch"] == "1 succeeded, 1 failed"
    result = report["result"]
    assert (result["video_codec"], result["width"], result["height"]) == ("h264", 320, 240)
    assert result["rotation"] == 90
    human = edvmp(env, "status", good)
    assert "result:     mov,mp4" in human.stdout and "video h264 320x240" in human.stdout
    assert "(FAILURE; a run of several versions: 1 succeeded, 1 failed)" in human.stdout

    failed = edvmp(env, "status", bad)
    assert failed.returncode == 1, failed.stderr
    assert "state:      FAILED" in failed.stdout
    assert "error:      [corrupt_media]" in failed.stdout
    assert "incident:   inc-" in failed.stdout
    as_json = json.loads(edvmp(env, "status", bad, "--json").stdout)
    assert as_json["error_class"] == "corrupt_media"
    assert as_json["incident"]["class"] == "corrupt_media"
    waited = edvmp(env, "status", bad, "--wait", "--timeout", "30")
    assert waited.returncode == 1


# --- pure parts ------------------------------------------------------------------------------


def test_validate_object_key() -> None:
    assert validate_object_key("a/b c/動画.mp4") == "a/b c/動画.mp4"
    assert validate_object_key("x" * 1024) == "x" * 1024
    for bad in ("", "/a", "x" * 1025, "a\x00b", "a\x7fb", "a\u0085b", "bad\udcffname"):
        with pytest.raises(InvalidObjectKey):
            validate_object_key(bad)


def test_etag_normalisation_keeps_multipart_etags_opaque() -> None:
    assert (
        normalise_etag('"9b2cf535f27731c974343645a3985328"') == "9b2cf535f27731c974343645a3985328"
    )
    assert normalise_etag('"3858f62230ac3c915f300c664312c11f-9"') == (
        "3858f62230ac3c915f300c664312c11f-9"
    )


def test_presign_upload_signs_the_content_type() -> None:
    settings = StackSettings(
        endpoint_url="http://127.0.0.1:9",
        access_key="AKIDEXAMPLE",
        secret_key="secret",
        region="us-east-1",
        bucket="uploads",
        pid=None,
        data_dir=None,
    )
    client = make_s3_client(settings, signature_version="s3v4")
    upload = presign_upload(client, "uploads", "a b.mp4", 600, content_type="video/mp4")
    assert upload.method == "PUT"
    assert upload.headers == {"Content-Type": "video/mp4"}
    assert upload.url.startswith("http://127.0.0.1:9/uploads/a%20b.mp4?")
    assert "X-Amz-Expires=600" in upload.url and "content-type" in upload.url
    assert presign_upload(client, "uploads", "k.mp4").headers == {}
    with pytest.raises(InvalidObjectKey):
        presign_upload(client, "uploads", "/k.mp4")
    with pytest.raises(Exception, match="not a valid Content-Type"):
        presign_upload(client, "uploads", "k.mp4", content_type="video/mp4\r\nX-Evil: 1")
    with pytest.raises(Exception, match="expiry"):
        presign_upload(client, "uploads", "k.mp4", expires_s=8 * 24 * 3600)
