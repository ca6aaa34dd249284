"""What the Dagster UI shows about each version, read back through the webserver's GraphQL
(the API the UI itself uses): an ``edvmp ingest`` batch with good and bad versions, a
redrive that heals one, and a single-run backfill over the whole range with Dagster's CLI."""

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import pytest

import edvmp_pipeline.definitions as definitions
from edvmp_pipeline.adapters.dagster_instance import get_instance
from edvmp_pipeline.defs.in_process_runs import ingest_in_process as ingest
from edvmp_pipeline.defs.in_process_runs import redrive_in_process as redrive
from edvmp_pipeline.defs.tags import TAG_FAILED, TAG_SUCCEEDED
from edvmp_pipeline.domain.policy import load_default_policy
from edvmp_pipeline_tests.cli_support import SAMPLE_BROKEN, SAMPLE_GOOD, catalog_at
from edvmp_pipeline_tests.dagster_dev import (
    DagsterDev,
    asset_kinds,
    check_statuses,
    failure_notes,
    partition_stats,
    prepare_homes,
    stack_env,
    start_dagster_dev,
)
from edvmp_pipeline_tests.test_video_summary_asset import FailingSummarizer

PORTRAIT = "ugc/phone_portrait.mp4"
ASSETS = ("video_metadata", "video_summary")


@pytest.fixture
def webserver(home: Path, tmp_path: Path) -> Iterator[DagsterDev]:
    """``dagster-webserver`` on the test's home (no daemon: the test runs everything)."""
    prepare_homes(home)
    dev = start_dagster_dev(stack_env(home, {}), tmp_path / "webserver.log", webserver_only=True)
    try:
        dev.wait_until_ready(timeout_s=120)
        yield dev
    finally:
        dev.stop()


def _counts(dev: DagsterDev) -> dict[str, tuple[int, int, int]]:
    stats = partition_stats(dev.url, *ASSETS)
    return {
        a: (
            s["numMaterialized"],
            s["numFailed"],
            s["numPartitions"] - s["numMaterialized"] - s["numFailed"] - s["numMaterializing"],
        )
        for a, s in stats.items()
    }


def test_partitions_view_tells_the_truth_after_ingest_redrive_and_backfill(
    library: Path, home: Path, webserver: DagsterDev, monkeypatch: pytest.MonkeyPatch
) -> None:
    n_good, n_bad = len(SAMPLE_GOOD), len(SAMPLE_BROKEN)
    real = definitions.build_resources

    def with_throttled_portrait() -> dict[str, object]:
        return {**real(), "summarizer": FailingSummarizer(fail_on=PORTRAIT, error="throttled")}

    # 1. One ingest batch: two broken uploads, and Bedrock throttling one good version.
    monkeypatch.setattr(definitions, "build_resources", with_throttled_portrait)
    report = ingest(str(library))
    monkeypatch.setattr(definitions, "build_resources", real)
    (run_id,) = report.run_ids

    # (materialized, failed, missing): nothing attempted reads as Missing.
    assert _counts(webserver) == {
        "video_metadata": (n_good, n_bad, 0),
        "video_summary": (n_good - 1, n_bad + 1, 0),
    }
    assert asset_kinds(webserver.url, *ASSETS) == {
        "video_metadata": {"ffprobe", "parquet"},
        "video_summary": {"python", "parquet"},
    }
    # The failed partition's page: class, reason, object key, runbook and incident id.
    truncated = next(pk for pk, v in report.versions.items() if "cut_short" in v.object_key)
    (note,) = failure_notes(webserver.url, "video_metadata", truncated)
    assert note["error_class"] == "corrupt_media"
    assert note["object_key"] == "broken/upload_cut_short.mp4"
    assert "moov atom not found" in note["reason"]
    assert note["runbook"] == "runbooks/corrupt_media.md"
    state = catalog_at(home).state
    incident = state.get_incident(note["incident_id"])
    assert incident is not None and incident.partition_key == truncated
    portrait = next(pk for pk, v in report.versions.items() if v.object_key == PORTRAIT)
    (note,) = failure_notes(webserver.url, "video_summary", portrait)
    assert note["error_class"] == "throttled"
    incident = state.get_incident(note["incident_id"])
    assert incident is not None and incident.failure_class == "throttled"
    assert failure_notes(webserver.url, "video_metadata", portrait) == []

    # The run: failed, with its counts as tags (the Runs list shows them) and a one-line
    # reason for these expected failures.
    instance = get_instance()
    run = instance.get_run_by_id(run_id)
    assert run is not None and run.status == dg.DagsterRunStatus.FAILURE
    assert (run.tags[TAG_SUCCEEDED], run.tags[TAG_FAILED]) == (str(n_good - 1), str(n_bad + 1))
    (failure,) = instance.all_logs(run_id, of_type=dg.DagsterEventType.STEP_FAILURE)
    data = failure.dagster_event.event_specific_data  # type: ignore[union-attr]
    assert data.user_failure_data is not None
    assert data.user_failure_data.description.startswith(f"{n_bad + 1} of {n_good + n_bad} ")
    assert "\n" not in data.user_failure_data.description

    # Checks are the library's: has_audio fails while the silent video is catalogued.
    statuses = check_statuses(webserver.url, "video_metadata")
    assert set(statuses) == {r.id for r in load_default_policy().rules}
    assert statuses["has_audio"] == "FAILED" and statuses["has_video"] == "SUCCEEDED"

    # 2. A redrive heals the throttled version: its summary turns Materialized.
    healed = redrive(failure_class="throttled")
    assert healed.succeeded == [portrait], healed
    assert _counts(webserver)["video_summary"] == (n_good, n_bad, 0)
    assert catalog_at(home).job_states([portrait])[portrait].status == "SUCCEEDED"

    # 3. A single-run backfill of everything over the whole range, as the UI launches it
    # (Dagster's CLI, one run): the broken versions fail again, nothing else turns Failed.
    order = instance.get_dynamic_partitions("videos")
    dagster = Path(sys.executable).with_name("dagster")
    done = subprocess.run(
        [
            str(dagster),
            "asset",
            "materialize",
            "-m",
            "edvmp_pipeline.definitions",
            "--select",
            "*",
            "--partition-range",
            f"{order[0]}...{order[-1]}",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        env=stack_env(home, {}),
    )
    assert done.returncode != 0, "the broken versions fail the run"
    assert _counts(webserver) == {
        "video_metadata": (n_good, n_bad, 0),
        "video_summary": (n_good, n_bad, 0),
    }
    runs = instance.get_runs(filters=dg.RunsFilter(job_name="__ASSET_JOB"), limit=1)
    assert runs and runs[0].tags[TAG_FAILED] == str(n_bad)
    _, rows = catalog_at(home).query("SELECT count(*) FROM videos_latest")
    assert rows == [(n_good,)]
