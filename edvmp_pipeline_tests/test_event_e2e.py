"""The event path end to end, as a user runs it: ``dagster dev`` with the sensors on, uploads
to the S3 server (SeaweedFS), and the catalog filling up with no other command.

Four good videos and one truncated MP4 are uploaded, two through ``edvmp upload`` and three
with boto3. The test waits (bounded) until the four are SUCCEEDED, the truncated one is
FAILED as ``corrupt_media`` with an incident recorded by the daemon's incident sensor, and
each version ran exactly once; ``edvmp status --wait`` follows one upload to the end.
Run with ``-s`` to see the timings.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import dagster as dg
import pytest
from botocore.client import BaseClient

from edvmp_pipeline.catalog.store import Catalog
from edvmp_pipeline.devtools.sample_media import generate_samples
from edvmp_pipeline.devtools.stack import StackSettings
from edvmp_pipeline.services.uploads import job_id_for
from edvmp_pipeline_tests.dagster_dev import (
    failure_notes,
    partition_stats,
    prepare_homes,
    sensor_tick_statuses,
    stack_env,
    start_dagster_dev,
)

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]

EDVMP = str(Path(sys.executable).with_name("edvmp"))
# sample file → object key; the first two go through `edvmp upload`, the rest through boto3.
CLI_UPLOADS = {
    "marketing/launch_teaser.mp4": "incoming/launch teaser.mp4",
    "broken/upload_cut_short.mp4": "incoming/upload_cut_short.mp4",
}
BOTO_UPLOADS = {
    "ugc/phone_portrait.mp4": "incoming/phone/portrait.mp4",
    "training/ntsc_lecture.mov": "incoming/ntsc_lecture.mov",
    "training/silent_screencast.mkv": "incoming/silent_screencast.mkv",
}
CORRUPT_KEY = "incoming/upload_cut_short.mp4"
DEADLINE_S = 120.0


def _catalog_state(catalog: Catalog) -> tuple[dict[str, tuple], dict[str, str]]:
    _, jobs = catalog.query(
        "SELECT partition_key, status, error_class, error, finished_at FROM jobs"
    )
    _, incidents = catalog.query('SELECT partition_key, "class" FROM incidents')
    return {r[0]: r[1:] for r in jobs}, {r[0]: r[1] for r in incidents}


def test_uploads_become_catalogued_jobs_with_dagster_dev(
    s3_stack: StackSettings, s3_client: BaseClient, s3_bucket: str, tmp_path: Path
) -> None:
    timings: dict[str, float] = {}
    t0 = time.monotonic()
    home = tmp_path / "home"
    dagster_home = prepare_homes(home)
    env = stack_env(home, {**s3_stack.env(), "EDVMP_BUCKET": s3_bucket})
    dev = start_dagster_dev(env, tmp_path / "dagster-dev.log")
    try:
        # Generate while Dagster starts (both take a few seconds).
        samples = tmp_path / "samples"
        generate_samples(samples)
        timings["samples generated"] = time.monotonic() - t0
        timings["dagster dev answering"] = dev.wait_until_ready()

        uploaded_at: dict[str, float] = {}
        jobs: dict[str, str] = {}  # object key → job id
        for name, key in CLI_UPLOADS.items():
            done = subprocess.run(
                [EDVMP, "upload", str(samples / name), "--key", key],
                env=env,
                capture_output=True,
                text=True,
                timeout=60,
            )
            assert done.returncode == 0, done.stderr
            jobs[key] = done.stdout.strip()
            uploaded_at[key] = time.time()
        for name, key in BOTO_UPLOADS.items():
            response = s3_client.put_object(
                Bucket=s3_bucket, Key=key, Body=(samples / name).read_bytes()
            )
            jobs[key] = job_id_for(s3_bucket, key, response["ETag"])
            uploaded_at[key] = time.time()
        timings["uploads done"] = time.monotonic() - t0
        good = {jobs[k] for k in jobs if k != CORRUPT_KEY}
        corrupt = jobs[CORRUPT_KEY]

        # `edvmp status --wait` follows the first upload through PENDING/QUEUED/RUNNING.
        started = time.monotonic()
        first = jobs["incoming/launch teaser.mp4"]
        status = subprocess.run(
            [EDVMP, "status", first, "--wait", "--json", "--timeout", "90"],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        timings["status --wait returned"] = time.monotonic() - started
        assert status.returncode == 0, status.stdout + status.stderr + dev.log_tail()
        report = json.loads(status.stdout)
        assert report["state"] == "SUCCEEDED"
        assert report["object_key"] == "incoming/launch teaser.mp4"
        assert (report["result"]["width"], report["result"]["height"]) == (640, 360)
        assert report["run_id"]

        catalog = Catalog(home / "catalog")
        deadline = time.monotonic() + DEADLINE_S
        while True:
            states, incidents = _catalog_state(catalog)
            done_good = {pk for pk in good if states.get(pk, ("",))[0] == "SUCCEEDED"}
            corrupt_done = states.get(corrupt, ("",))[0] == "FAILED" and corrupt in incidents
            if done_good == good and corrupt_done:
                break
            assert time.monotonic() < deadline, (
                f"after {DEADLINE_S:g} s: jobs {states}, incidents {incidents}\n" + dev.log_tail()
            )
            time.sleep(0.5)
        timings["all catalogued, incident recorded"] = time.monotonic() - t0

        assert set(states) == good | {corrupt}, "the job ids are the sensor's partition keys"
        status_, error_class, error, _ = states[corrupt]
        assert (status_, error_class) == ("FAILED", "corrupt_media")
        assert "moov atom not found" in error
        assert incidents[corrupt] == "corrupt_media"
        for key, pk in jobs.items():
            finished = states[pk][3]
            timings[f"upload→{states[pk][0]} {key}"] = finished.timestamp() - uploaded_at[key]

        failed = subprocess.run(
            [EDVMP, "status", corrupt], env=env, capture_output=True, text=True, timeout=60
        )
        assert failed.returncode == 1, failed.stdout + failed.stderr
        assert "FAILED" in failed.stdout and "[corrupt_media]" in failed.stdout
        assert "incident:   inc-" in failed.stdout

        # Exactly one run per version: the run key (bucket/key@etag) held across ticks.
        instance = dg.DagsterInstance.from_config(str(dagster_home))
        try:
            runs = instance.get_runs(filters=dg.RunsFilter(job_name="ingest_videos"))
            partitions = sorted(r.tags.get("dagster/partition", "") for r in runs)
        finally:
            instance.dispose()
        assert partitions == sorted(good | {corrupt})

        # What the UI shows (its GraphQL): every version Materialized or Failed, none
        # Missing; the corrupt one's reason on its partition; healthy sensor ticks.
        for asset, stats in partition_stats(dev.url, "video_metadata", "video_summary").items():
            assert (stats["numMaterialized"], stats["numFailed"]) == (len(good), 1), asset
            assert stats["numPartitions"] == len(good) + 1, asset
        (note,) = failure_notes(dev.url, "video_metadata", corrupt)
        assert note["error_class"] == "corrupt_media" and note["incident_id"].startswith("inc-")
        ticks = sensor_tick_statuses(dev.url, "s3_object_sensor")
        assert ticks and all(status != "FAILURE" for status, _ in ticks), ticks
    finally:
        stop_s, killed = dev.stop()
        timings["dagster dev stopped in"] = stop_s
        timings["total"] = time.monotonic() - t0
        print()
        for what, seconds in timings.items():
            print(f"  {what:<58} {seconds:6.2f} s")
    assert not killed, f"needed SIGKILL for {killed}"
    # Clean logs: no warnings of ours or about our definitions, no failed sensor ticks.
    log = dev.log_path.read_text(errors="replace")
    noisy = [
        line
        for line in log.splitlines()
        if "Warning" in line or "WARNING" in line or "did not yield" in line or "errored" in line
    ]
    assert not noisy, "\n".join(noisy[:20])
    assert dev.processes() == []
