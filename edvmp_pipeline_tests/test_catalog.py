"""The catalog: atomic Parquet files, parallel writers, views that fold and dedupe."""

import os
import signal
import subprocess
import sys
import textwrap
import time
from datetime import UTC, datetime
from pathlib import Path

import duckdb

from edvmp_pipeline.catalog import schemas
from edvmp_pipeline.catalog.parquet_files import TMP_SUFFIX, append_rows, sweep_temp_files
from edvmp_pipeline.catalog.store import FAILED, RUNNING, SUCCEEDED, Catalog
from edvmp_pipeline.domain.records import ObjectVersion, StreamRecord, VideoRecord


def _version(key: str, etag: str = "e1") -> ObjectVersion:
    return ObjectVersion("s3://uploads", key, etag, 100, datetime(2026, 1, 1, tzinfo=UTC))


def _record(width: int = 640) -> VideoRecord:
    return VideoRecord(
        format_name="mov,mp4,m4a,3gp,3g2,mj2",
        duration_s=2.0,
        bit_rate=1000,
        video_codec="h264",
        width=width,
        height=360,
        fps=25.0,
        pix_fmt="yuv420p",
        rotation=0,
        audio_codec=None,
        audio_channels=None,
        sample_rate_hz=None,
        n_video_streams=1,
        n_audio_streams=0,
        n_subtitle_streams=0,
        tags={"title": "x"},
        streams=(StreamRecord(stream_index=0, codec_type="video", codec_name="h264", width=width),),
    )


def test_views_work_on_an_empty_catalog(tmp_path: Path) -> None:
    cat = Catalog(tmp_path).ensure()
    for view in ("videos", "videos_latest", "streams", "jobs", "objects"):
        cols, rows = cat.query(f"SELECT * FROM {view}")
        assert rows == [] and cols
    _, cols_rows = cat.query("DESCRIBE videos")
    names = [r[0] for r in cols_rows]
    expected = (
        "partition_key source object_key etag size_bytes format_name duration_s bit_rate "
        "video_codec width height fps pix_fmt rotation audio_codec audio_channels "
        "sample_rate_hz n_video_streams n_audio_streams n_subtitle_streams processed_at"
    )
    for col in expected.split():
        assert col in names


def test_job_events_fold_into_one_row_per_version(tmp_path: Path) -> None:
    cat = Catalog(tmp_path).ensure()
    v = _version("a.mp4")
    cat.register([("pk-a", v)], registered_by="test")
    cat.record_events([("pk-a", v)], RUNNING, run_id="r1")
    cat.record_events([("pk-a", v)], FAILED, run_id="r1", errors={"pk-a": ("throttled", "slow")})
    cat.record_events([("pk-a", v)], RUNNING, run_id="r2")
    state = cat.job_states(["pk-a"])["pk-a"]
    assert (state.status, state.attempts) == (RUNNING, 2)
    cat.record_events([("pk-a", v)], SUCCEEDED, run_id="r2")
    _cols, rows = cat.query("SELECT status, attempts, error_class, finished_at FROM jobs")
    assert rows[0][:3] == (SUCCEEDED, 2, None) and rows[0][3] is not None


def test_reprocessing_a_version_never_duplicates_rows(tmp_path: Path) -> None:
    cat = Catalog(tmp_path).ensure()
    v = _version("a.mp4")
    cat.write_results([("pk-a", v, _record(640))], run_id="r1")
    cat.write_results([("pk-a", v, _record(650))], run_id="r2")
    _, rows = cat.query("SELECT width FROM videos")
    assert rows == [(650,)]
    _, rows = cat.query("SELECT count(*) FROM streams")
    assert rows == [(1,)]


def test_videos_latest_keeps_the_newest_version_per_object(tmp_path: Path) -> None:
    cat = Catalog(tmp_path).ensure()
    old = ObjectVersion("s3://u", "a.mp4", "e1", 1, datetime(2026, 1, 1, tzinfo=UTC))
    new = ObjectVersion("s3://u", "a.mp4", "e2", 1, datetime(2026, 2, 1, tzinfo=UTC))
    cat.write_results([("pk-new", new, _record(1280))], run_id="r2")
    cat.write_results([("pk-old", old, _record(640))], run_id="r1")
    _, rows = cat.query("SELECT etag, width FROM videos_latest")
    assert rows == [("e2", 1280)]
    _, rows = cat.query("SELECT count(*) FROM videos")
    assert rows == [(2,)]


def test_database_file_holds_the_views(tmp_path: Path) -> None:
    cat = Catalog(tmp_path).ensure()
    cat.write_results([("pk-a", _version("a.mp4"), _record())], run_id="r1")
    assert cat.write_database_file()
    con = duckdb.connect(str(cat.db_path), read_only=True)
    assert con.execute("SELECT object_key FROM videos").fetchall() == [("a.mp4",)]
    con.close()


WRITER = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from edvmp_pipeline.catalog import schemas
    from edvmp_pipeline.catalog.parquet_files import append_rows
    root, tag, n = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3])
    if len(sys.argv) > 4:
        # Stall inside the write (after the bytes, before the rename) so the test can kill us
        # there deterministically instead of racing a large write.
        import os, time
        os.fsync = lambda fd: time.sleep(float(sys.argv[4]))
    rows = [{"partition_key": f"{tag}-{i}", "status": "PENDING", "error": "x" * 50}
            for i in range(n)]
    append_rows(root, "job_events", schemas.JOB_EVENTS, rows)
    """
)


def test_parallel_writers_never_collide(tmp_path: Path) -> None:
    cat = Catalog(tmp_path).ensure()
    procs = [
        subprocess.Popen([sys.executable, "-c", WRITER, str(tmp_path), f"w{i}", "500"])
        for i in range(6)
    ]
    assert all(p.wait(timeout=120) == 0 for p in procs)
    _, rows = cat.query("SELECT count(*), count(DISTINCT partition_key) FROM job_events")
    assert rows == [(3000, 3000)]


def test_killed_writer_leaves_no_partial_file(tmp_path: Path) -> None:
    cat = Catalog(tmp_path).ensure()
    append_rows(tmp_path, "job_events", schemas.JOB_EVENTS, [{"partition_key": "kept"}])
    before = set((tmp_path / "job_events").glob("*.parquet"))
    proc = subprocess.Popen([sys.executable, "-c", WRITER, str(tmp_path), "big", "20000", "60"])
    deadline = time.monotonic() + 120
    while not list((tmp_path / "job_events").glob(f".*{TMP_SUFFIX}")):
        assert proc.poll() is None, "writer finished before it could be killed"
        assert time.monotonic() < deadline
        time.sleep(0.005)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert set((tmp_path / "job_events").glob("*.parquet")) == before
    _, rows = cat.query("SELECT partition_key FROM job_events")
    assert rows == [("kept",)]
    assert sweep_temp_files(tmp_path, older_than_s=0) == 1


def test_compaction_merges_files_and_keeps_every_row(tmp_path: Path) -> None:
    from edvmp_pipeline.catalog.compaction import compact

    cat = Catalog(tmp_path).ensure()
    for i in range(5):
        v = _version(f"k{i}.mp4")
        cat.register([(f"pk-{i}", v)], registered_by="test")
        cat.write_results([(f"pk-{i}", v, _record(600 + i))], run_id=f"r{i}")
    cat.write_results([("pk-0", _version("k0.mp4"), _record(999))], run_id="again")
    before = {
        view: cat.query(f"SELECT * FROM {view} ORDER BY ALL")[1]
        for view in ("videos", "streams", "jobs", "objects")
    }
    results = {r.table: r for r in compact(tmp_path)}
    assert (results["videos"].files_before, results["videos"].files_after) == (6, 1)
    assert results["videos"].rows == 6
    assert len(list((tmp_path / "videos").glob("*.parquet"))) == 2  # data + schema file
    for view, rows in before.items():
        assert cat.query(f"SELECT * FROM {view} ORDER BY ALL")[1] == rows, view
    _, rows = cat.query("SELECT width FROM videos WHERE partition_key = 'pk-0'")
    assert rows == [(999,)]
