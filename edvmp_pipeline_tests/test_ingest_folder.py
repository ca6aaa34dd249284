"""``edvmp ingest`` of a folder end to end: real ffprobe, a real persistent Dagster instance."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import dagster as dg
import pytest

from edvmp_pipeline.defs.in_process_runs import ingest_in_process as ingest
from edvmp_pipeline_tests.cli_support import SAMPLE_BROKEN, SAMPLE_GOOD, catalog_at, run_edvmp

GOOD = SAMPLE_GOOD
BAD = SAMPLE_BROKEN


def test_ingest_catalogues_good_videos_and_fails_bad_ones(library: Path, home: Path) -> None:
    report = ingest(str(library))
    assert report.listed == 7 and len(report.new) == 7
    assert {report.versions[pk].object_key for pk in report.succeeded} == GOOD
    failed = {report.versions[pk].object_key: report.states[pk] for pk in report.failed}
    assert {k: s.error_class for k, s in failed.items()} == BAD
    assert "moov atom not found" in failed["broken/upload_cut_short.mp4"].error
    assert len(report.run_ids) == 1

    cat = catalog_at(home)
    _, rows = cat.query(
        "SELECT object_key, video_codec, width, height, round(fps, 3), rotation, audio_codec, "
        "audio_channels, sample_rate_hz, n_audio_streams, source FROM videos ORDER BY object_key"
    )
    by_key = {r[0]: r[1:] for r in rows}
    assert set(by_key) == GOOD
    assert by_key["ugc/phone_portrait.mp4"][:5] == ("h264", 320, 240, 30.0, 90)
    assert by_key["training/ntsc_lecture.mov"][3] == 29.97
    assert by_key["ugc/clip vp9, opus.webm"][5] == "opus"
    assert by_key["training/silent_screencast.mkv"][5:9] == (None, None, None, 0)
    assert {r[-1] for r in rows} == {str(library.resolve())}
    _, rows = cat.query("SELECT count(*) FROM streams")
    assert rows == [(9,)]
    _, rows = cat.query("SELECT status, count(*) FROM jobs GROUP BY ALL ORDER BY 1")
    assert rows == [("FAILED", 2), ("SUCCEEDED", 5)]

    # The runs and partitions live in the persistent instance that `dagster dev` shows.
    os.environ["DAGSTER_HOME"] = str(home / "dagster")
    try:
        instance = dg.DagsterInstance.get()
        assert len(instance.get_dynamic_partitions("videos")) == 7
        materialized = instance.get_materialized_partitions(dg.AssetKey("video_metadata"))
        assert materialized == set(report.succeeded)
        run = instance.get_run_by_id(report.run_ids[0])
        assert run is not None and run.job_name == "ingest_videos"
        assert run.tags["edvmp/trigger"] == "edvmp-ingest"
    finally:
        del os.environ["DAGSTER_HOME"]


def test_second_ingest_processes_nothing(library: Path, home: Path) -> None:
    ingest(str(library))
    again = ingest(str(library))
    assert again.new == [] and again.processed == [] and again.run_ids == []
    assert len(again.skipped) == 5 and len(again.known_failures) == 2
    _, rows = catalog_at(home).query("SELECT count(*) FROM videos")
    assert rows == [(5,)]


def test_retry_failed_runs_known_failures_again(library: Path, home: Path) -> None:
    ingest(str(library))
    retried = ingest(str(library), retry_failed=True)
    assert len(retried.processed) == 2 and retried.new == []
    _, rows = catalog_at(home).query(
        "SELECT object_key, status, attempts FROM jobs WHERE status = 'FAILED' ORDER BY 1"
    )
    assert rows == [
        ("broken/empty_upload.mp4", "FAILED", 2),
        ("broken/upload_cut_short.mp4", "FAILED", 2),
    ]


def test_changed_content_is_a_new_version(library: Path, home: Path) -> None:
    first = ingest(str(library))
    target = library / "marketing/launch_teaser.mp4"
    shutil.copyfile(library / "training/silent_screencast.mkv", target)
    second = ingest(str(library))
    assert len(second.new) == 1 and len(second.succeeded) == 1
    assert second.versions[second.new[0]].object_key == "marketing/launch_teaser.mp4"
    cat = catalog_at(home)
    _, rows = cat.query(
        "SELECT count(*) FROM videos WHERE object_key = 'marketing/launch_teaser.mp4'"
    )
    assert rows == [(2,)]
    _, rows = cat.query(
        "SELECT partition_key, width FROM videos_latest "
        "WHERE object_key = 'marketing/launch_teaser.mp4'"
    )
    assert rows == [(second.new[0], 480)]
    assert second.new[0] not in first.versions


def test_content_hashes_are_cached_between_scans(library: Path, home: Path) -> None:
    from edvmp_pipeline.adapters.content_hash import ContentHashCache
    from edvmp_pipeline.adapters.object_store import iter_folder

    ingest(str(library))
    with ContentHashCache(home / "content_hashes.sqlite") as cache:
        list(iter_folder(library, cache))
        assert (cache.hits, cache.misses) == (7, 0)


def test_media_corpus_through_ingest(media_corpus, tmp_path: Path, home: Path) -> None:
    """Every generated case lands with the exact values it was generated with (or fails)."""
    folder = tmp_path / "corpus"
    folder.mkdir()
    for name, case in media_corpus.items():
        shutil.copyfile(case.path, folder / f"{name}{case.path.suffix}")
    report = ingest(str(folder))
    cat = catalog_at(home)
    for name, case in media_corpus.items():
        key = f"{name}{case.path.suffix}"
        if "error_class" in case.expected:
            _, rows = cat.query(
                "SELECT status, error_class, error FROM jobs WHERE object_key = ?", [key]
            )
            assert rows and rows[0][:2] == ("FAILED", case.expected["error_class"]), (key, rows)
            assert case.expected["reason_contains"] in rows[0][2]
            continue
        cols, rows = cat.query("SELECT * FROM videos WHERE object_key = ?", [key])
        assert len(rows) == 1, (key, report.states)
        row = dict(zip(cols, rows[0], strict=True))
        for field, want in case.expected.items():
            if field == "duration_s":
                assert row[field] == pytest.approx(want, abs=0.1), (key, field)
            elif isinstance(want, float):
                assert row[field] == pytest.approx(want, rel=1e-6), (key, field)
            elif field in row:
                assert row[field] == want, (key, field, row[field])


@pytest.fixture
def cli_env(home: Path) -> dict[str, str]:
    return {**os.environ, "EDVMP_HOME": str(home)}


def test_cli_exit_statuses_and_messages(library: Path, cli_env: dict[str, str]) -> None:
    done = run_edvmp("ingest", str(library), env=cli_env)
    assert done.returncode == 1, done.stderr
    assert "processed 7: succeeded 5, failed 2" in done.stdout
    assert (
        "broken/upload_cut_short.mp4: [corrupt_media] truncated file: moov atom not found"
        in done.stdout
    )
    assert "Traceback" not in done.stderr

    again = run_edvmp("ingest", str(library), env=cli_env)
    assert "nothing new to process" in again.stdout and again.returncode == 1

    shutil.rmtree(library / "broken")
    clean = run_edvmp("ingest", str(library), env=cli_env)
    assert clean.returncode == 0, clean.stdout

    missing = run_edvmp("ingest", str(library / "nope"), env=cli_env)
    assert missing.returncode == 2
    assert missing.stderr.strip() == f"edvmp: error: no such folder: {library / 'nope'}"

    unreachable = run_edvmp(
        "ingest",
        "s3://uploads",
        env={
            **cli_env,
            "EDVMP_S3_ENDPOINT_URL": "http://127.0.0.1:9",
            "AWS_ACCESS_KEY_ID": "x",
            "AWS_SECRET_ACCESS_KEY": "y",
        },
    )
    assert unreachable.returncode == 2, unreachable.stderr
    assert "store unreachable" in unreachable.stderr and "Traceback" not in unreachable.stderr

    usage = run_edvmp("ingest", env=cli_env)
    assert usage.returncode == 2 and "usage:" in usage.stderr


def test_cli_query_formats_and_read_only(library: Path, cli_env: dict[str, str]) -> None:
    import json

    run_edvmp("ingest", str(library), env=cli_env)
    done = run_edvmp(
        "query",
        "SELECT object_key, width FROM videos ORDER BY object_key",
        "--format",
        "json",
        env=cli_env,
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)[0] == {"object_key": "marketing/launch_teaser.mp4", "width": 640}
    csv_out = run_edvmp(
        "query", "SELECT width FROM videos ORDER BY 1", "--format", "csv", env=cli_env
    )
    assert csv_out.stdout.splitlines() == ["width", "320", "320", "320", "480", "640"]
    table = run_edvmp("query", "SELECT count(*) AS n FROM jobs", env=cli_env)
    assert "(1 row)" in table.stdout
    for sql in ("COPY videos TO '/tmp/x.csv'", "CREATE TABLE t (a INT)", "SELECT nope FROM videos"):
        refused = run_edvmp("query", sql, env=cli_env)
        assert refused.returncode == 2 and "Traceback" not in refused.stderr, sql


def test_dagster_cli_materialises_registered_partitions(
    library: Path, cli_env: dict[str, str], home: Path
) -> None:
    """The path CI uses: register, then Dagster's own `dagster asset materialize`."""
    shutil.rmtree(library / "broken")
    span = run_edvmp("register", str(library), "--range", env=cli_env)
    assert span.returncode == 0, span.stderr
    dagster = Path(sys.executable).with_name("dagster")
    done = subprocess.run(
        [
            str(dagster),
            "asset",
            "materialize",
            "-m",
            "edvmp_pipeline.definitions",
            "--select",
            "video_metadata*",
            "--partition-range",
            span.stdout.strip(),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        env={**cli_env, "DAGSTER_HOME": str(home / "dagster")},
    )
    assert done.returncode == 0, done.stderr[-2000:]
    _, rows = catalog_at(home).query("SELECT count(*) FROM videos")
    assert rows == [(5,)]


# --- versions registered, then deleted or replaced before they were processed ---------------


def _pk_of(report, key: str) -> str:
    (pk,) = [pk for pk, v in report.versions.items() if v.object_key == key]
    return pk


def test_a_registered_version_whose_file_is_deleted_fails_instead_of_waiting(
    library: Path, home: Path
) -> None:
    # An ingest (or `edvmp register`) stopped after registering; the file went meanwhile.
    registered = ingest(str(library), register_only=True)
    gone = _pk_of(registered, "marketing/launch_teaser.mp4")
    (library / "marketing/launch_teaser.mp4").unlink()

    report = ingest(str(library))
    assert report.unlisted == [gone]
    assert report.states[gone].status == "FAILED"
    assert report.states[gone].error_class == "object_missing"
    assert "marketing/launch_teaser.mp4" in (report.states[gone].error or "")
    assert gone in report.failed and len(report.succeeded) == 4
    assert catalog_at(home).state.latest_incident(gone) is not None
    # Dagster shows the attempt: Failed, not Missing.
    instance = dg.DagsterInstance.get()
    failed = instance.get_status_by_partition(
        dg.AssetKey("video_metadata"), [gone], dg.DynamicPartitionsDefinition(name="videos")
    )
    assert failed == {gone: dg.AssetPartitionStatus.FAILED}

    # Nothing is left waiting, and the next ingest does not take it again.
    assert catalog_at(home).state.pending_versions() == []
    assert ingest(str(library)).unlisted == []


def _same_size_other_bytes(path: Path) -> None:
    """Change bytes in the middle (inside the media data), keep the size, move the mtime."""
    data = bytearray(path.read_bytes())
    middle = len(data) // 2
    data[middle : middle + 16] = bytes(255 - b for b in data[middle : middle + 16])
    st = path.stat()
    path.write_bytes(bytes(data))
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 5_000_000_000))
    assert path.stat().st_size == st.st_size


def test_a_same_size_replacement_is_not_catalogued_as_the_registered_version(
    library: Path, home: Path
) -> None:
    registered = ingest(str(library), register_only=True)
    old = _pk_of(registered, "ugc/phone_portrait.mp4")
    _same_size_other_bytes(library / "ugc/phone_portrait.mp4")

    report = ingest(str(library))
    new = [pk for pk in report.new if report.versions[pk].object_key == "ugc/phone_portrait.mp4"]
    assert len(new) == 1 and report.unlisted == [old]
    assert report.states[new[0]].status == "SUCCEEDED"
    old_state = report.states[old]
    assert (old_state.status, old_state.error_class) == ("FAILED", "object_missing")
    assert "other content" in (old_state.error or "")
    _, rows = catalog_at(home).query(
        "SELECT partition_key FROM videos WHERE object_key = 'ugc/phone_portrait.mp4'"
    )
    assert rows == [(new[0],)], "the new bytes were catalogued as the old version"


def test_a_touched_file_is_still_its_registered_version(library: Path, home: Path) -> None:
    registered = ingest(str(library), register_only=True)
    pk = _pk_of(registered, "training/silent_screencast.mkv")
    path = library / "training/silent_screencast.mkv"
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 5_000_000_000))

    report = ingest(str(library))
    # Same bytes, so the same version: listed again and processed, not taken for replaced.
    assert report.unlisted == [] and pk in report.pending
    assert report.states[pk].status == "SUCCEEDED"
