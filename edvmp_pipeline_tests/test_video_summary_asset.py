"""``video_summary`` through ``edvmp ingest``: real ffprobe, a real persistent Dagster instance."""

import json
import shutil
from pathlib import Path
from typing import Any
from unittest import mock
from urllib.parse import unquote

import dagster as dg
import pytest

import edvmp_pipeline.definitions as definitions
from edvmp_pipeline.adapters.dagster_instance import get_instance
from edvmp_pipeline.adapters.prober import FfprobeProber
from edvmp_pipeline.adapters.summarizers import (
    OfflineSummarizer,
    SummarizerError,
    SummarizerResource,
    SummarizerThrottled,
    SummarizerUnavailable,
    Summary,
)
from edvmp_pipeline.defs.batch_runs import add_partitions
from edvmp_pipeline.defs.in_process_runs import ingest_in_process as ingest
from edvmp_pipeline.defs.jobs import INGEST_JOB
from edvmp_pipeline.defs.tags import ERROR_CLASSES, FAILED_PARTITIONS
from edvmp_pipeline.domain.offline_summary import offline_summary
from edvmp_pipeline.domain.records import VideoRecord
from edvmp_pipeline_tests.cli_support import SAMPLE_BROKEN, SAMPLE_GOOD, catalog_at
from edvmp_pipeline_tests.test_bedrock_summarizer import (  # noqa: F401  (a fixture)
    FakeBedrock,
    converse_response,
    fake_bedrock,
)

GOOD = SAMPLE_GOOD
BAD = set(SAMPLE_BROKEN)
PORTRAIT = "ugc/phone_portrait.mp4"
MODEL_ID = "anthropic.claude-3-haiku-20240307-v1:0"


def _summaries(home: Path) -> dict[str, tuple[Any, ...]]:
    _, rows = catalog_at(home).query(
        "SELECT object_key, summarizer, model_id, summary, input_tokens, output_tokens, "
        "latency_ms, stop_reason, etag, created_at FROM summaries"
    )
    return {r[0]: r[1:] for r in rows}


def test_offline_summaries_land_and_a_corrupt_version_does_not_block_them(
    library: Path, home: Path
) -> None:
    report = ingest(str(library))
    assert {report.versions[pk].object_key for pk in report.failed} == BAD

    summaries = _summaries(home)
    assert set(summaries) == GOOD
    assert summaries[PORTRAIT][:3] == (
        "offline",
        "edvmp-offline-v1",
        '"ugc/phone_portrait.mp4" is a 2-second 320×240 H.264 video at 30 fps, rotated 90°, '
        "with mono AAC audio at 48 kHz.",
    )
    assert summaries["training/silent_screencast.mkv"][2].endswith("at 15 fps, with no audio.")
    # Deterministic, and the record rebuilt from the catalog gives the same text as the probe.
    prober = FfprobeProber()
    for key, row in summaries.items():
        path = library / key
        probed = prober.probe(str(path), size_bytes=path.stat().st_size)
        assert row[2] == offline_summary(probed, key), key
        # No tokens or stop reason offline; the latency is measured.
        assert (row[3], row[4], row[6]) == (None, None, None) and isinstance(row[5], int)

    # The good versions also went through the compliance checks in the same run.
    _, rows = catalog_at(home).query("SELECT DISTINCT object_key FROM checks")
    assert {r[0] for r in rows} == GOOD

    instance = get_instance()
    (run_id,) = report.run_ids
    run = instance.get_run_by_id(run_id)
    assert run is not None and run.status == dg.DagsterRunStatus.FAILURE
    good_keys = set(report.succeeded)
    for asset in ("video_metadata", "video_summary"):
        assert instance.get_materialized_partitions(dg.AssetKey(asset)) == good_keys, asset
    # The run failed once, at the end of its one step, naming both broken versions.
    failures = [
        e
        for e in instance.all_logs(run_id, of_type=dg.DagsterEventType.STEP_FAILURE)
        if e.dagster_event is not None
    ]
    assert [e.step_key for e in failures] == ["process_videos"]
    data = failures[0].dagster_event.event_specific_data  # type: ignore[union-attr]
    metadata = data.user_failure_data.metadata
    assert set(metadata[FAILED_PARTITIONS].value) == set(report.failed)
    assert set(metadata[ERROR_CLASSES].value.values()) == {"corrupt_media", "empty_object"}
    mats = instance.fetch_materializations(
        dg.AssetRecordsFilter(
            asset_key=dg.AssetKey("video_summary"),
            asset_partitions=[pk for pk in good_keys if report.versions[pk].object_key == PORTRAIT],
        ),
        limit=1,
    ).records
    meta = mats[0].asset_materialization.metadata  # type: ignore[union-attr]
    assert meta["summary"].value == summaries[PORTRAIT][2]
    assert meta["model_id"].value == "edvmp-offline-v1"


def test_versions_already_summarised_are_not_summarised_again(library: Path, home: Path) -> None:
    ingest(str(library))
    before = _summaries(home)
    again = ingest(str(library), retry_failed=True)
    assert len(again.processed) == 2 and again.run_ids
    assert _summaries(home) == before
    _, rows = catalog_at(home).query("SELECT count(*) FROM summaries")
    assert rows == [(5,)]


class FailingSummarizer(SummarizerResource):
    """The offline summarizer, except for one object key, where it raises ``error``."""

    fail_on: str
    error: str

    def summarize(self, record: VideoRecord, object_key: str | None = None) -> Summary:
        if object_key == self.fail_on:
            errors = {
                "summarizer_error": SummarizerError,
                "throttled": SummarizerThrottled,
                "summarizer_unavailable": SummarizerUnavailable,
            }
            raise errors[self.error](f"Bedrock refused {object_key!r} ({self.error})")
        return OfflineSummarizer().summarize(record, object_key)


@pytest.mark.parametrize("error", ["summarizer_error", "throttled", "summarizer_unavailable"])
def test_summarizer_failure_keeps_metadata_and_fails_the_version(
    library: Path, home: Path, monkeypatch: pytest.MonkeyPatch, error: str
) -> None:
    shutil.rmtree(library / "broken")
    real = definitions.build_resources

    def with_failing_summarizer() -> dict[str, object]:
        return {**real(), "summarizer": FailingSummarizer(fail_on=PORTRAIT, error=error)}

    # ingest.run_batches builds its resources from definitions.build_resources at call time.
    monkeypatch.setattr(definitions, "build_resources", with_failing_summarizer)
    report = ingest(str(library))

    cat = catalog_at(home)
    _, rows = cat.query("SELECT object_key FROM videos")
    assert {r[0] for r in rows} == GOOD, "the metadata row stays"
    assert set(_summaries(home)) == GOOD - {PORTRAIT}
    _, rows = cat.query(
        "SELECT object_key, status, error_class, error FROM jobs WHERE NOT status = 'SUCCEEDED'"
    )
    assert rows == [(PORTRAIT, "FAILED", error, f"Bedrock refused {PORTRAIT!r} ({error})")]
    assert {report.versions[pk].object_key for pk in report.failed} == {PORTRAIT}
    # The run failed, and its incident carries the summarizer's class.
    run = get_instance().get_run_by_id(report.run_ids[0])
    assert run is not None and run.status == dg.DagsterRunStatus.FAILURE
    _, rows = cat.query("SELECT object_key, class FROM incidents")
    assert rows == [(PORTRAIT, error)]


def test_single_partition_run_like_the_sensors(library: Path, home: Path) -> None:
    """Sensor runs are the same job with one partition key and no run config."""
    shutil.rmtree(library / "broken")
    report = ingest(str(library), register_only=True)
    pk = next(pk for pk, v in report.versions.items() if v.object_key == PORTRAIT)
    instance = get_instance()
    add_partitions(instance, [pk])
    job = definitions.defs.resolve_job_def(INGEST_JOB)
    result = job.execute_in_process(
        instance=instance,
        partition_key=pk,
        resources=definitions.build_resources(),
        run_config={"loggers": {"console": {"config": {"log_level": "CRITICAL"}}}},
    )
    assert result.success
    assert set(_summaries(home)) == {PORTRAIT}
    _, rows = catalog_at(home).query("SELECT count(*) FROM checks WHERE partition_key = ?", [pk])
    assert rows[0][0] == len(definitions.video_assets.check_keys)  # type: ignore[union-attr]
    assert instance.get_materialized_partitions(dg.AssetKey("video_summary")) == {pk}


def test_bedrock_summaries_end_to_end(
    library: Path,
    home: Path,
    monkeypatch: pytest.MonkeyPatch,
    fake_bedrock: FakeBedrock,  # noqa: F811
) -> None:
    shutil.rmtree(library / "broken")
    monkeypatch.setenv("EDVMP_SUMMARIZER", "bedrock")
    monkeypatch.setenv("EDVMP_BEDROCK_MODEL_ID", MODEL_ID)
    monkeypatch.setenv("EDVMP_BEDROCK_ENDPOINT_URL", fake_bedrock.url)
    monkeypatch.setenv("EDVMP_BEDROCK_REGION", "eu-west-1")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDTESTEDVMP")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "secret-for-tests")
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(home.parent / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(home.parent / "no-aws-credentials"))
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    fake_bedrock.script += [(200, {}, converse_response("Summary from Bedrock."))] * len(GOOD)

    report = ingest(str(library))

    assert report.all_ok, report.states
    summaries = _summaries(home)
    assert set(summaries) == GOOD
    for row in summaries.values():
        assert row[:7] == ("bedrock", MODEL_ID, "Summary from Bedrock.", 321, 17, 845, "end_turn")
    assert len(fake_bedrock.received) == len(GOOD)
    seen_keys = set()
    for request in fake_bedrock.received:
        assert request["headers"]["Authorization"].startswith("AWS4-HMAC-SHA256 ")
        assert unquote(request["path"]) == f"/model/{MODEL_ID}/converse"
        text = request["body"]["messages"][0]["content"][0]["text"]
        seen_keys |= {key for key in GOOD if f'"object_key": "{key}"' in text}
    assert seen_keys == GOOD
    pk = next(pk for pk, v in report.versions.items() if v.object_key == PORTRAIT)
    mats = (
        get_instance()
        .fetch_materializations(
            dg.AssetRecordsFilter(asset_key=dg.AssetKey("video_summary"), asset_partitions=[pk]),
            limit=1,
        )
        .records
    )
    meta = mats[0].asset_materialization.metadata  # type: ignore[union-attr]
    assert meta["model_id"].value == MODEL_ID
    assert (meta["input_tokens"].value, meta["output_tokens"].value) == (321, 17)


def test_summaries_join_videos_in_edvmp_query(library: Path, home: Path) -> None:
    from edvmp_pipeline.cli import main

    shutil.rmtree(library / "broken")
    ingest(str(library))
    with mock.patch("builtins.print") as printed:
        status = main(
            [
                "query",
                "SELECT v.object_key, v.width, s.summary FROM videos v "
                "JOIN summaries s USING (partition_key) ORDER BY 1",
                "--format",
                "json",
            ]
        )
    assert status == 0
    rows = json.loads(printed.call_args.args[0])
    assert [r["object_key"] for r in rows] == sorted(GOOD)
    assert rows[0]["summary"].startswith('"marketing/launch_teaser.mp4" is a 2-second 640×360')
