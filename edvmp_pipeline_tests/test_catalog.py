"""The catalog's result tables: atomic Parquet files, parallel writers, views that dedupe."""

import os
import signal
import subprocess
import sys
import textwrap
import time
from datetime import UTC, datetime
from pathlib import Path

from edvmp_pipeline.catalog import schemas
from edvmp_pipeline.catalog.parquet_files import TMP_SUFFIX, append_rows, sweep_temp_files
from edvmp_pipeline.catalog.store import Catalog
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
    rows = [{"partition_key": f"{tag}-{i}", "rule_id": "r", "actual": "x" * 50}
            for i in range(n)]
    append_rows(root, "checks", schemas.CHECKS, rows)
    """
)


def test_parallel_writers_never_collide(tmp_path: Path) -> None:
    cat = Catalog(tmp_path).ensure()
    procs = [
        subprocess.Popen([sys.executable, "-c", WRITER, str(tmp_path), f"w{i}", "500"])
        for i in range(6)
    ]
    assert all(p.wait(timeout=120) == 0 for p in procs)
    _, rows = cat.query("SELECT count(*), count(DISTINCT partition_key) FROM checks")
    assert rows == [(3000, 3000)]


def test_killed_writer_leaves_no_partial_file(tmp_path: Path) -> None:
    cat = Catalog(tmp_path).ensure()
    append_rows(tmp_path, "checks", schemas.CHECKS, [{"partition_key": "kept", "rule_id": "r"}])
    before = set((tmp_path / "checks").glob("*.parquet"))
    proc = subprocess.Popen([sys.executable, "-c", WRITER, str(tmp_path), "big", "20000", "60"])
    deadline = time.monotonic() + 120
    while not list((tmp_path / "checks").glob(f".*{TMP_SUFFIX}")):
        assert proc.poll() is None, "writer finished before it could be killed"
        assert time.monotonic() < deadline
        time.sleep(0.005)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert set((tmp_path / "checks").glob("*.parquet")) == before
    _, rows = cat.query("SELECT partition_key FROM checks")
    assert rows == [("kept",)]
    assert sweep_temp_files(tmp_path, older_than_s=0) == 1


def test_full_compaction_merges_files_and_keeps_the_newest_row_per_key(tmp_path: Path) -> None:
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
    # pk-0 was written twice: the merged file keeps its newest row only.
    assert results["videos"].rows == 5
    assert len(list((tmp_path / "videos").glob("*.parquet"))) == 2  # data + schema file
    for view, rows in before.items():
        assert cat.query(f"SELECT * FROM {view} ORDER BY ALL")[1] == rows, view
    _, rows = cat.query("SELECT width FROM videos WHERE partition_key = 'pk-0'")
    assert rows == [(999,)]
