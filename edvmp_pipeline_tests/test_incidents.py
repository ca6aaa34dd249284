"""Failures as data: every bad input is exactly one classified incident, nothing is lost or
doubled, transient failures are redriven a bounded number of times, and a killed run's
versions are recovered."""

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import dagster as dg
import pytest

from edvmp_pipeline.adapters.dagster_instance import get_instance
from edvmp_pipeline.defs.catalog_resource import CatalogResource
from edvmp_pipeline.defs.in_process_runs import ingest_in_process as ingest
from edvmp_pipeline.defs.run_failures import record_run_failure
from edvmp_pipeline.defs.sensors.failure_sensors import incident_sensor, redrive_sensor
from edvmp_pipeline.devtools.sample_media import generate_samples
from edvmp_pipeline.services.incidents import due_redrives
from edvmp_pipeline_tests.cli_support import catalog_at, run_edvmp

HOSTILE_NAMES = [
    "unicode/日本語 ビデオ.mp4",
    "spaces and, commas [1].mp4",
    "dots..in..name/clip...final.mp4",
    "long/" + "x" * 200 + ".mp4",
]


def _sparse_probe_bomb(path: Path) -> None:
    """A real MPEG-TS clip followed by 3 GB of holes: ffprobe resyncs for ~17 s."""
    subprocess.run(
        [
            "ffmpeg",
            "-v",
            "error",
            "-y",
            "-f",
            "lavfi",
            "-i",
            "testsrc2=size=160x120:rate=10:duration=1",
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
            "-f",
            "mpegts",
            str(path),
        ],
        check=True,
    )
    os.truncate(path, 3 * 1024**3)


def test_bad_input_corpus_gives_one_incident_each(
    media_corpus, tmp_path: Path, home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("EDVMP_PROBE_TIMEOUT_S", "1")
    folder = tmp_path / "library"
    folder.mkdir()
    expected: dict[str, str] = {}
    good: set[str] = set()
    for name, case in media_corpus.items():
        key = f"{name}{case.path.suffix}"
        shutil.copyfile(case.path, folder / key)
        if "error_class" in case.expected:
            expected[key] = case.expected["error_class"]
        else:
            good.add(key)
    good_source = media_corpus["h264_aac_mp4"].path
    for name in HOSTILE_NAMES:
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(good_source, folder / name)
        good.add(name)
    _sparse_probe_bomb(folder / "huge_sparse.ts")
    expected["huge_sparse.ts"] = "probe_timeout"

    ingest(str(folder))
    ingest(str(folder))  # a second pass must not add rows or incidents
    cat = catalog_at(home)
    _, rows = cat.query("SELECT object_key, count(*) FROM videos GROUP BY ALL")
    assert dict(rows) == dict.fromkeys(good, 1)
    _, rows = cat.query(
        'SELECT object_key, "class", count(*) OVER (PARTITION BY object_key) FROM incidents'
    )
    assert {r[0]: r[1] for r in rows} == expected
    assert all(r[2] == 1 for r in rows)
    _, rows = cat.query("SELECT retryable FROM incidents WHERE object_key = 'huge_sparse.ts'")
    assert rows == [(True,)]


def test_recording_a_failure_twice_does_not_duplicate(tmp_path: Path, home: Path) -> None:
    folder = tmp_path / "lib"
    generate_samples(folder)
    report = ingest(str(folder))
    instance = get_instance()
    run = instance.get_run_by_id(report.run_ids[0])
    assert run is not None and run.status == dg.DagsterRunStatus.FAILURE
    cat = catalog_at(home)
    before = cat.query("SELECT * FROM incidents ORDER BY incident_id")[1]
    record_run_failure(instance, run, cat)
    # What the daemon's failure sensor does with the same run: same incidents, no new rows.
    context = dg.build_run_status_sensor_context(
        sensor_name="incident_sensor",
        dagster_event=next(
            e.dagster_event
            for e in instance.all_logs(run.run_id, of_type=dg.DagsterEventType.RUN_FAILURE)
        ),
        dagster_instance=instance,
        dagster_run=run,
        resources={"catalog": CatalogResource(root=str(home / "catalog"))},
    ).for_run_failure()
    incident_sensor(context)
    after = cat.query("SELECT * FROM incidents ORDER BY incident_id")[1]
    assert after == before and len(after) == 2


def test_redrive_is_bounded_with_backoff(
    tmp_path: Path, home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Probe timeouts are retryable: redriven after a backoff, at most max_redrives times."""
    monkeypatch.setenv("EDVMP_PROBE_TIMEOUT_S", "1")
    monkeypatch.setenv("EDVMP_REDRIVE_BASE_DELAY_S", "0.2")
    folder = tmp_path / "lib"
    folder.mkdir()
    _sparse_probe_bomb(folder / "slow.ts")
    ingest(str(folder))
    cat = catalog_at(home)
    resources = {"catalog": CatalogResource(root=str(home / "catalog"))}
    instance = get_instance()
    requested = 0
    for _ in range(6):
        time.sleep(0.5)  # past the (jittered) backoff
        result = redrive_sensor(dg.build_sensor_context(instance=instance, resources=resources))
        if not result.run_requests:
            break
        assert len(result.run_requests) == 1
        request = result.run_requests[0]
        assert request.tags["edvmp/attempt"] == str(requested + 2)
        # Run what the daemon would launch, through the same job and instance.
        from edvmp_pipeline.defs.batch_runs import run_batches

        run_batches(
            instance,
            [request.partition_key],
            source=str(folder),
            batch_size=1,
            workers=1,
            trigger="redrive-sensor",
            extra_tags=dict(request.tags),
        )
        requested += 1
    _, rows = cat.query('SELECT "class", attempts, redrives, status FROM incidents')
    # probe_timeout allows 2 redrives: 3 failed attempts in all, then it stays open.
    assert rows == [("probe_timeout", 3, 2, "OPEN")]
    assert requested == 2 and due_redrives(cat) == []


def test_permanent_failures_are_never_redriven(tmp_path: Path, home: Path) -> None:
    folder = tmp_path / "lib"
    generate_samples(folder)
    ingest(str(folder))
    assert due_redrives(catalog_at(home)) == []


def test_object_deleted_before_processing_is_object_missing(tmp_path: Path, home: Path) -> None:
    from edvmp_pipeline.defs.batch_runs import run_batches

    folder = tmp_path / "lib"
    generate_samples(folder, broken=False)
    report = ingest(str(folder), register_only=True)
    victim = next(
        pk for pk in report.processed if report.versions[pk].object_key == "ugc/phone_portrait.mp4"
    )
    (folder / "ugc/phone_portrait.mp4").unlink()
    run_batches(get_instance(), report.processed, source=str(folder), batch_size=50, workers=2)
    cat = catalog_at(home)
    _, rows = cat.query('SELECT partition_key, "class", retryable, status FROM incidents')
    assert rows == [(victim, "object_missing", False, "OPEN")]
    _, rows = cat.query("SELECT count(*) FROM videos")
    assert rows == [(4,)]
    assert due_redrives(cat) == []


def test_killed_ingest_leaves_no_partial_file_and_is_recovered(tmp_path: Path, home: Path) -> None:
    folder = tmp_path / "lib"
    generate_samples(folder, broken=False)
    for i in range(40):
        shutil.copyfile(
            folder / "marketing/launch_teaser.mp4",
            folder / f"bulk/{i:03d}.mp4"
            if (folder / "bulk").exists()
            else _mk(folder / "bulk") / f"{i:03d}.mp4",
        )
        with open(folder / f"bulk/{i:03d}.mp4", "ab") as fh:
            fh.write(i.to_bytes(4, "big"))
    edvmp = Path(sys.executable).with_name("edvmp")
    env = {**os.environ, "EDVMP_HOME": str(home)}
    proc = subprocess.Popen(
        [str(edvmp), "ingest", str(folder), "--workers", "1"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    cat = catalog_at(home)
    deadline = time.monotonic() + 120
    while True:
        assert proc.poll() is None, "ingest finished before it could be killed"
        assert time.monotonic() < deadline
        if (home / "catalog").exists():
            _, rows = cat.query("SELECT count(*) FROM jobs WHERE status = 'RUNNING'")
            if rows[0][0]:
                break
        time.sleep(0.05)
    time.sleep(0.3)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    # Every visible file is complete (a partial one would fail to read).
    _, rows = cat.query("SELECT count(*) FROM jobs")
    assert rows[0][0] == 45
    _, rows = cat.query("SELECT count(*) FROM videos")
    assert rows == [(0,)]

    done = subprocess.run(
        [str(edvmp), "ingest", str(folder)],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    _, rows = cat.query("SELECT count(*), count(DISTINCT partition_key) FROM videos")
    assert rows == [(45, 45)]
    _, rows = cat.query('SELECT "class", status, count(*) FROM incidents GROUP BY ALL')
    assert rows == [("resource_exhausted", "RESOLVED", 45)]
    instance = get_instance()
    killed = instance.get_runs(filters=dg.RunsFilter(statuses=[dg.DagsterRunStatus.FAILURE]))
    assert len(killed) == 1


def _mk(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path


def test_incident_commands(library: Path, home: Path) -> None:
    """`edvmp incidents`, `incidents summary` and `redrive` through the console script."""
    import json

    env = {**os.environ, "EDVMP_HOME": str(home)}
    assert run_edvmp("ingest", str(library), env=env).returncode == 1

    listed = run_edvmp("incidents", "--json", env=env)
    assert listed.returncode == 0, listed.stderr
    incidents = json.loads(listed.stdout)
    assert {i["class"] for i in incidents} == {"corrupt_media", "empty_object"}
    for field in (
        "incident_id",
        "class",
        "retryable",
        "object_key",
        "etag",
        "message",
        "attempts",
        "status",
    ):
        assert all(field in i for i in incidents), field
    assert all(i["status"] == "OPEN" and i["attempts"] == 1 for i in incidents)

    only = json.loads(
        run_edvmp("incidents", "--class", "empty_object", "--open", "--json", env=env).stdout
    )
    assert [i["object_key"] for i in only] == ["broken/empty_upload.mp4"]

    summary = run_edvmp("incidents", "summary", env=env)
    assert summary.returncode == 0
    assert "[corrupt_media] truncated file: moov atom not found" in summary.stdout
    assert "runbooks/corrupt_media.md" in summary.stdout
    grouped = json.loads(run_edvmp("incidents", "summary", "--json", env=env).stdout)
    assert {(g["class"], g["incidents"], g["objects"]) for g in grouped} == {
        ("corrupt_media", 1, 1),
        ("empty_object", 1, 1),
    }

    corrupt = next(i for i in incidents if i["class"] == "corrupt_media")
    redriven = run_edvmp("redrive", "--fingerprint", corrupt["fingerprint"], env=env)
    assert redriven.returncode == 1  # the same bytes fail the same way
    assert "redrove 1 incident (1 version): succeeded 0, failed 1" in redriven.stdout
    again = json.loads(run_edvmp("incidents", "--class", "corrupt_media", "--json", env=env).stdout)
    assert [(i["attempts"], i["redrives"]) for i in again] == [(2, 1)]

    # Usage errors and unknown incidents (resolution after a successful redrive is covered
    # by the store-outage test in test_s3_faults.py).
    assert run_edvmp("redrive", env=env).returncode == 2
    assert run_edvmp("redrive", "inc-000000000000", env=env).returncode == 1


@pytest.mark.parametrize(
    ("args", "what"),
    [
        (("incidents", "--class", "nosuch"), "unknown failure class 'nosuch'"),
        (("incidents", "summary", "--class", "nosuch"), "unknown failure class 'nosuch'"),
        (("incidents", "--class", ""), "empty failure class"),
        (("incidents", "summary", "--open", "--class", ""), "empty failure class"),
        (("redrive", "--class", "nosuch"), "unknown failure class 'nosuch'"),
        (("redrive", "--class", ""), "empty failure class"),
        (("redrive", "--class", "Corrupt_Media"), "unknown failure class 'Corrupt_Media'"),
    ],
)
def test_an_unknown_or_empty_class_is_refused_listing_the_classes(
    tmp_path: Path, args: tuple[str, ...], what: str
) -> None:
    """`--class nosuch` used to print `(0 rows)` (or `no open incident matches`), and an
    empty `--class ''` filtered nothing: both are usage errors, refused before the catalog
    is opened."""
    from edvmp_pipeline.domain.failure_classes import CLASSES_BY_NAME

    home = tmp_path / "home"
    done = run_edvmp(*args, env={**os.environ, "EDVMP_HOME": str(home)}, timeout=60)
    assert done.returncode == 2, (done.returncode, done.stdout, done.stderr)
    assert done.stdout == ""
    known = ", ".join(sorted(CLASSES_BY_NAME))
    assert done.stderr.splitlines() == [f"edvmp: error: --class: {what}; one of: {known}"]
    assert not home.exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("redrive", ""), "the incident id is empty (give an id such as inc-…)"),
        (
            ("redrive", "inc-000000000000", "--fingerprint", ""),
            "--fingerprint is empty (give one that `edvmp incidents summary` shows)",
        ),
        (
            ("redrive", "--fingerprint", ""),
            "--fingerprint is empty (give one that `edvmp incidents summary` shows)",
        ),
        (
            ("redrive", "inc-000000000000", "--class", "corrupt_media"),
            "give one of: an incident id, --class CLASS, --fingerprint FP",
        ),
    ],
)
def test_redrive_refuses_an_empty_incident_id_or_fingerprint(
    tmp_path: Path, args: tuple[str, ...], message: str
) -> None:
    """An empty selector used to be dropped silently (the other one then chose alone)."""
    home = tmp_path / "home"
    done = run_edvmp(*args, env={**os.environ, "EDVMP_HOME": str(home)}, timeout=60)
    assert done.returncode == 2, (done.returncode, done.stdout, done.stderr)
    assert done.stderr.splitlines() == [f"edvmp: error: {message}"]
    assert not home.exists()
