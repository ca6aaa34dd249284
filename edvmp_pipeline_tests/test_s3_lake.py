"""The Parquet lake on S3 (``EDVMP_CATALOG=s3://bucket/prefix``) on the real local SeaweedFS:
the result tables round-trip through S3, stay compacted by their writers, and are queried
through pyarrow's S3 file system registered into DuckDB; then the whole pipeline with its
results on S3, alone and with the state in DynamoDB (everything but Dagster off the box)."""

from __future__ import annotations

import os
from datetime import UTC, datetime
from pathlib import Path

import pytest
from botocore.client import BaseClient

from edvmp_pipeline.catalog import schemas
from edvmp_pipeline.catalog.compaction import FANOUT_L0, compact, file_budget
from edvmp_pipeline.catalog.lake import S3Location
from edvmp_pipeline.catalog.store import Catalog
from edvmp_pipeline.devtools.stack import StackSettings
from edvmp_pipeline.domain.errors import ConfigError
from edvmp_pipeline.domain.records import ObjectVersion
from edvmp_pipeline_tests.cli_support import SAMPLE_BROKEN, SAMPLE_GOOD, run_edvmp
from edvmp_pipeline_tests.media_factory import ffmpeg_available
from edvmp_pipeline_tests.s3_server import configure_s3_env
from edvmp_pipeline_tests.test_catalog import _record


@pytest.fixture
def lake_env(
    s3_stack: StackSettings, s3_bucket: str, home: Path, monkeypatch: pytest.MonkeyPatch
) -> dict[str, str]:
    """This process and child commands pointed at ``s3://<fresh bucket>/lake``."""
    configure_s3_env(monkeypatch, s3_stack, s3_bucket)
    monkeypatch.setenv("EDVMP_CATALOG", f"s3://{s3_bucket}/lake")
    return {**os.environ}


def _version(i: int) -> ObjectVersion:
    return ObjectVersion(
        source="s3://uploads",
        object_key=f"clips/c{i:04d}.mp4",
        etag=f"{i:032x}",
        size_bytes=1000 + i,
        last_modified=datetime(2026, 12, 1, tzinfo=UTC),
    )


def _keys(client: BaseClient, bucket: str) -> list[str]:
    pages = client.get_paginator("list_objects_v2").paginate(Bucket=bucket)
    return sorted(item["Key"] for page in pages for item in page.get("Contents", ()))


def test_results_round_trip_through_s3(
    lake_env: dict[str, str], s3_client: BaseClient, s3_bucket: str
) -> None:
    catalog = Catalog(f"s3://{s3_bucket}/lake").ensure()
    assert catalog.on_s3 and catalog.location == f"s3://{s3_bucket}/lake"
    versions = [(f"pk{i}", _version(i)) for i in range(3)]
    catalog.register(versions, "test")
    stem = catalog.write_results([(pk, v, _record(640)) for pk, v in versions], run_id="run-1")
    assert stem is not None
    catalog.write_summaries(
        [{"partition_key": "pk0", "summary": "a test clip", "summarizer": "offline"}], run_id="r"
    )

    keys = _keys(s3_client, s3_bucket)
    assert f"lake/videos/{stem}.parquet" in keys and f"lake/streams/{stem}.parquet" in keys
    assert all(k.startswith("lake/") and k.endswith(".parquet") for k in keys), keys
    assert not (catalog.root / "videos").exists()  # nothing of the results is local

    records = catalog.video_records(["pk0", "pk2", "absent"])
    assert set(records) == {"pk0", "pk2"}
    version, record = records["pk2"]
    assert version == _version(2) and record.width == 640
    assert record.streams[0].codec_name == "h264"

    _, rows = catalog.query("SELECT partition_key, width FROM videos ORDER BY 1")
    assert rows == [("pk0", 640), ("pk1", 640), ("pk2", 640)]
    _, rows = catalog.query(
        "SELECT v.object_key, s.summary FROM videos v JOIN summaries s USING (partition_key)"
    )
    assert rows == [("clips/c0000.mp4", "a test clip")]
    assert catalog.summary_of("pk0") == "a test clip"

    # A re-probe of pk1 with another width: the views keep the newest row per version.
    catalog.write_results([("pk1", _version(1), _record(1280))], run_id="run-2")
    _, rows = catalog.query("SELECT width FROM videos WHERE partition_key = 'pk1'")
    assert rows == [(1280,)]
    assert catalog.video_records(["pk1"])["pk1"][1].width == 1280


def test_the_writers_keep_the_lake_compacted(
    lake_env: dict[str, str], s3_client: BaseClient, s3_bucket: str
) -> None:
    catalog = Catalog(f"s3://{s3_bucket}/lake").ensure()
    n = FANOUT_L0 * 2 + 5
    for i in range(n):
        catalog.write_results([(f"pk{i}", _version(i), _record(320 + i))], run_id=f"r{i}")
    videos = [k for k in _keys(s3_client, s3_bucket) if k.startswith("lake/videos/")]
    assert len(videos) <= file_budget(n) and len(videos) < n, videos
    assert any(k.rsplit("/", 1)[1].startswith("L1-") for k in videos), videos
    _, rows = catalog.query("SELECT count(*), count(DISTINCT partition_key) FROM videos")
    assert rows == [(n, n)]
    assert catalog.video_records([f"pk{n - 1}"])[f"pk{n - 1}"][1].width == 320 + n - 1

    results = {r.table: r for r in compact(catalog.lake)}
    assert results["videos"].files_after == 1 and results["videos"].rows == n
    # No lease object is left behind by a finished compaction.
    assert not [k for k in _keys(s3_client, s3_bucket) if "lease" in k]
    _, rows = catalog.query("SELECT count(*) FROM streams")
    assert rows == [(n,)]


def test_query_on_the_lake_stays_read_only(lake_env: dict[str, str], s3_bucket: str) -> None:
    catalog = Catalog(f"s3://{s3_bucket}/lake").ensure()
    catalog.write_results([("pk0", _version(0), _record(640))], run_id="r")
    _, rows = catalog.read_only_query("SELECT count(*) FROM videos")
    assert rows == [(1,)]
    with pytest.raises(Exception, match=r"(?i)permission|disabled|not allowed"):
        catalog.read_only_query("SELECT * FROM read_csv('/etc/passwd')")
    with pytest.raises(ConfigError):
        catalog.read_only_query("COPY (SELECT 1) TO '/tmp/x.csv'")
    assert not catalog.write_database_file()  # no DuckDB file can read s3:// offline


@pytest.mark.parametrize(
    "url",
    ["s3://", "s3:///prefix", "s3://b/a//c", "s3://b/../x", "s3://b/p?x=1"],
)
def test_bad_lake_urls_are_refused(url: str) -> None:
    with pytest.raises(ConfigError, match="EDVMP_CATALOG"):
        S3Location.parse(url)


def test_a_missing_bucket_is_one_line(lake_env: dict[str, str]) -> None:
    env = {**lake_env, "EDVMP_CATALOG": "s3://no-such-bucket-edvmp/lake"}
    done = run_edvmp("query", "SELECT count(*) FROM videos", env=env)
    assert done.returncode == 2, done.stdout + done.stderr
    assert "bucket 'no-such-bucket-edvmp' does not exist" in done.stderr
    assert "Traceback" not in done.stderr and len(done.stderr.strip().splitlines()) == 1


@pytest.mark.skipif(not ffmpeg_available(), reason="ffmpeg/ffprobe not installed")
@pytest.mark.parametrize("state", ["sqlite", "dynamodb"])
def test_the_pipeline_lands_its_results_on_s3(
    state: str,
    library: Path,
    home: Path,
    lake_env: dict[str, str],
    s3_client: BaseClient,
    s3_bucket: str,
    request: pytest.FixtureRequest,
) -> None:
    env = {**lake_env, "EDVMP_HOME": str(home)}
    if state == "dynamodb":
        # moto's server takes any credentials: keep the S3 server's (one AWS_* set).
        dynamo = request.getfixturevalue("dynamodb_env")
        env.update({k: v for k, v in dynamo.items() if k.startswith("EDVMP_")})
    done = run_edvmp("ingest", str(library), env=env)
    assert done.returncode == 1, done.stdout + done.stderr  # the two broken samples
    assert "processed 7: succeeded 5, failed 2" in done.stdout, done.stdout

    keys = _keys(s3_client, s3_bucket)
    for table in ("videos", "streams", "summaries", "checks"):
        assert any(k.startswith(f"lake/{table}/") for k in keys), (table, keys)
    # Only Dagster's own home (and, on SQLite, the state store) is local.
    local = {p.name for p in (home / "lakes").rglob("*") if p.is_file()}
    assert local <= {"state.sqlite", "state.sqlite-wal", "state.sqlite-shm"}, local
    assert bool(local) == (state == "sqlite")

    query = run_edvmp(
        "query", "SELECT object_key FROM videos ORDER BY 1", "--format", "json", env=env
    )
    assert query.returncode == 0, query.stderr
    import json

    assert {r["object_key"] for r in json.loads(query.stdout)} == SAMPLE_GOOD
    jobs = run_edvmp(
        "query",
        "SELECT object_key, error_class FROM jobs WHERE status = 'FAILED'",
        "--format",
        "json",
        env=env,
    )
    assert {r["object_key"]: r["error_class"] for r in json.loads(jobs.stdout)} == SAMPLE_BROKEN
    checks = run_edvmp("check", env=env)
    assert checks.returncode == 0, checks.stdout + checks.stderr  # warnings only
    assert "5 versions checked against" in checks.stdout + checks.stderr

    again = run_edvmp("ingest", str(library), env=env)
    assert "new 0, already catalogued (skipped) 5, known failures 2" in again.stdout, again.stdout
    assert schemas.TABLES  # the same tables as a local catalog


def test_other_url_schemes_are_refused(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EDVMP_CATALOG", "gs://bucket/lake")
    done = run_edvmp("query", "SELECT 1", env={**os.environ})
    assert done.returncode == 2 and "no other scheme" in done.stderr, done.stderr
