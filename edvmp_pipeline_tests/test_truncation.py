"""Truncated files that still probe (review issue 10, item 11).

ffprobe reads a container's header and index and stops, so MKV and WebM cut to 50 % and a
faststart MP4 cut to 97 % used to be SUCCEEDED with their full duration. The container's own
structure (top-level MP4 box sizes, the Matroska Segment size) is checked against the
object's size: directly on the pure parsers, through the prober, and end to end through
``ingest`` of a local folder and of an S3 bucket (real SeaweedFS, presigned range reads).
"""

from __future__ import annotations

import functools
import os
import random
import struct
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
from botocore.client import BaseClient

from edvmp_pipeline.adapters.object_store import MAX_RANGE_READS, RangeReader
from edvmp_pipeline.adapters.prober import FfprobeProber
from edvmp_pipeline.defs.in_process_runs import ingest_in_process as ingest
from edvmp_pipeline.devtools.stack import StackSettings
from edvmp_pipeline.domain.container_structure import (
    MAX_TOP_LEVEL,
    bytes_reader,
    ebml_truncation,
    mp4_truncation,
    truncation_reason,
    walk_ebml_elements,
    walk_mp4_boxes,
)
from edvmp_pipeline.domain.errors import MediaRejected, ObjectMissing
from edvmp_pipeline.domain.probe_normalise import classify_probe_failure
from edvmp_pipeline_tests.cli_support import catalog_at
from edvmp_pipeline_tests.media_factory import ffmpeg_available

pytestmark = pytest.mark.skipif(not ffmpeg_available(), reason="ffmpeg/ffprobe not installed")

SOURCE = ["-f", "lavfi", "-i", "testsrc2=size=160x120:rate=10:duration=2"]
TONE = ["-f", "lavfi", "-i", "sine=frequency=440:duration=2"]
X264 = ["-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p"]


def ffmpeg(*args: str | Path) -> None:
    subprocess.run(["ffmpeg", "-v", "error", "-y", *map(str, args)], check=True)


@functools.cache
def encoders() -> str:
    return subprocess.run(
        ["ffmpeg", "-hide_banner", "-encoders"], capture_output=True, text=True, check=True
    ).stdout


def webm_codecs() -> list[str]:
    """VP9/Opus when this ffmpeg has them, else VP8/Vorbis."""
    if " libvpx-vp9 " in encoders() and " libopus " in encoders():
        return ["-c:v", "libvpx-vp9", "-deadline", "realtime", "-cpu-used", "8", "-c:a", "libopus"]
    if " libvpx " in encoders() and " libvorbis " in encoders():
        return ["-c:v", "libvpx", "-deadline", "realtime", "-c:a", "libvorbis"]
    pytest.skip("this ffmpeg can encode no WebM (no libvpx)")


def largesize_mdat(data: bytes) -> bytes:
    """The same MP4 with its mdat header rewritten as a 64-bit box (size 1 + largesize).

    ffmpeg writes an 8-byte ``free`` box right before ``mdat`` to leave room for exactly
    this; the media data stays where it was, so the chunk offsets in moov stay valid.
    """
    pos = 0
    while pos + 8 <= len(data):
        size, kind = struct.unpack(">I4s", data[pos : pos + 8])
        if kind == b"free" and size == 8 and data[pos + 12 : pos + 16] == b"mdat":
            mdat_size = struct.unpack(">I", data[pos + 8 : pos + 12])[0]
            header = struct.pack(">I4sQ", 1, b"mdat", mdat_size + 8)
            return data[:pos] + header + data[pos + 16 :]
        pos += size
    raise AssertionError("no free box before mdat")


def cut(data: bytes, fraction: float) -> bytes:
    return data[: int(len(data) * fraction)]


@pytest.fixture(scope="module")
def media(tmp_path_factory: pytest.TempPathFactory) -> dict[str, bytes]:
    """name → bytes of small real files made with ffmpeg (about a second in all)."""
    d = tmp_path_factory.mktemp("truncation")
    makers: dict[str, Callable[[Path], None]] = {
        "normal.mp4": lambda p: ffmpeg(*SOURCE, *TONE, *X264, "-c:a", "aac", p),
        "faststart.mp4": lambda p: ffmpeg(
            *SOURCE, *TONE, *X264, "-c:a", "aac", "-movflags", "+faststart", p
        ),
        "video.mkv": lambda p: ffmpeg(*SOURCE, *TONE, *X264, "-c:a", "aac", p),
        "video.webm": lambda p: ffmpeg(*SOURCE, *TONE, *webm_codecs(), "-b:v", "100k", p),
        # Fragmented: one fragment per frame, more top-level boxes than a walk reads.
        "fragmented.mp4": lambda p: ffmpeg(
            "-f", "lavfi", "-i", "testsrc2=size=160x120:rate=10:duration=4", *X264,
            "-g", "1", "-movflags", "frag_keyframe+empty_moov", p,
        ),
    }  # fmt: skip
    out = {}
    for name, make in makers.items():
        make(d / name)
        out[name] = (d / name).read_bytes()
    # Written to a pipe, the muxer cannot go back: the Segment keeps its unknown size.
    out["live.mkv"] = subprocess.run(
        ["ffmpeg", "-v", "error", *SOURCE, *TONE, *X264, "-c:a", "aac", "-f", "matroska", "-"],
        capture_output=True,
        check=True,
    ).stdout
    out["largesize.mp4"] = largesize_mdat(out["normal.mp4"])
    out["largesize_faststart.mp4"] = largesize_mdat(out["faststart.mp4"])
    return out


def box_kinds(data: bytes) -> list[str]:
    return [b.kind for b in walk_mp4_boxes(bytes_reader(data), len(data)).boxes]


# --- the pure parsers --------------------------------------------------------------------------


def test_generated_files_have_the_structures_under_test(media: dict[str, bytes]) -> None:
    assert box_kinds(media["normal.mp4"]) == ["ftyp", "free", "mdat", "moov"]
    assert box_kinds(media["faststart.mp4"]) == ["ftyp", "moov", "free", "mdat"]
    assert box_kinds(media["largesize.mp4"]) == ["ftyp", "mdat", "moov"]
    assert box_kinds(media["largesize_faststart.mp4"]) == ["ftyp", "moov", "mdat"]
    for name in ("video.mkv", "video.webm"):
        data = media[name]
        names = [e.name for e in walk_ebml_elements(bytes_reader(data), len(data))]
        assert names == ["EBML header", "Segment"], name
    live = media["live.mkv"]
    segment = walk_ebml_elements(bytes_reader(live), len(live))[-1]
    assert (segment.name, segment.end) == ("Segment", None)  # unknown size (all 1s)


@pytest.mark.parametrize(
    "name",
    [
        "normal.mp4",
        "faststart.mp4",
        "largesize.mp4",
        "largesize_faststart.mp4",
        "fragmented.mp4",
        "video.mkv",
        "video.webm",
        "live.mkv",
    ],
)
def test_intact_files_pass(media: dict[str, bytes], name: str) -> None:
    data = media[name]
    assert truncation_reason(bytes_reader(data), len(data), data[:64]) is None
    if name.endswith(".mp4") and name != "fragmented.mp4":
        assert walk_mp4_boxes(bytes_reader(data), len(data)).complete


@pytest.mark.parametrize(
    ("name", "fraction", "box"),
    [
        ("faststart.mp4", 0.97, "mdat"),
        ("faststart.mp4", 0.99, "mdat"),
        ("faststart.mp4", 0.50, "mdat"),
        ("normal.mp4", 0.99, "moov"),
        ("normal.mp4", 0.50, "mdat"),
        ("largesize.mp4", 0.99, "moov"),
        ("largesize.mp4", 0.50, "mdat"),
        ("largesize_faststart.mp4", 0.97, "mdat"),
    ],
)
def test_cut_mp4_names_the_box_that_overruns(
    media: dict[str, bytes], name: str, fraction: float, box: str
) -> None:
    full = media[name]
    data = cut(full, fraction)
    walk = walk_mp4_boxes(bytes_reader(data), len(data))
    assert walk.overrun is not None and not walk.complete
    # The box's claimed end: the whole file's size for the last box.
    end = walk.overrun.end
    if box == box_kinds(full)[-1]:
        assert end == len(full)
    assert mp4_truncation(bytes_reader(data), len(data)) == (
        f"truncated file: '{box}' box needs {end:,} bytes, object holds {len(data):,}"
    )
    assert truncation_reason(bytes_reader(data), len(data), data[:64]) is not None


@pytest.mark.parametrize("name", ["video.mkv", "video.webm"])
@pytest.mark.parametrize("fraction", [0.5, 0.97, 0.99])
def test_cut_matroska_names_the_segment(media: dict[str, bytes], name: str, fraction: float):
    full = media[name]
    data = cut(full, fraction)
    expected = (
        f"truncated file: Matroska/WebM 'Segment' element needs {len(full):,} bytes, "
        f"object holds {len(data):,}"
    )
    assert ebml_truncation(bytes_reader(data), len(data)) == expected
    # The Segment header is within the first bytes the store hands over anyway: no reads.
    assert truncation_reason(bytes_reader(b""), len(data), data[:64]) == expected


def test_unknown_size_segment_is_never_called_truncated(media: dict[str, bytes]) -> None:
    for fraction in (0.5, 0.97):
        data = cut(media["live.mkv"], fraction)
        assert ebml_truncation(bytes_reader(data), len(data)) is None


def test_64_bit_largesize_is_read_not_taken_for_the_32_bit_size(media: dict[str, bytes]) -> None:
    data = media["largesize.mp4"]
    mdat = walk_mp4_boxes(bytes_reader(data), len(data)).boxes[1]
    assert data[mdat.offset : mdat.offset + 4] == b"\x00\x00\x00\x01"
    largesize = struct.unpack(">Q", data[mdat.offset + 8 : mdat.offset + 16])[0]
    assert mdat.kind == "mdat" and mdat.end - mdat.offset == largesize > 16
    assert walk_mp4_boxes(bytes_reader(data), len(data)).boxes[2].kind == "moov"
    # Cut inside the 16-byte header of the 64-bit box: the header itself is cut off.
    header_cut = data[: mdat.offset + 12]
    reason = mp4_truncation(bytes_reader(header_cut), len(header_cut))
    assert reason == (
        f"truncated file: 'mdat' box needs {mdat.offset + 16:,} bytes, "
        f"object holds {len(header_cut):,}"
    )


def test_open_ended_last_box_runs_to_the_end(media: dict[str, bytes]) -> None:
    # Size 0: "to the end of the file", legal for the last box.
    data = bytearray(media["faststart.mp4"])
    mdat = walk_mp4_boxes(bytes_reader(bytes(data)), len(data)).boxes[-1]
    data[mdat.offset : mdat.offset + 4] = b"\x00\x00\x00\x00"
    walk = walk_mp4_boxes(bytes_reader(bytes(data)), len(data))
    assert walk.boxes[-1].open_ended and walk.complete
    assert mp4_truncation(bytes_reader(bytes(data)), len(data)) is None


def test_bytes_appended_after_the_last_box_are_not_truncation(media: dict[str, bytes]) -> None:
    junk = random.Random(7).randbytes(4096)
    # Reads as a box header (printable type, a size past the end) but names no known box;
    # and an EBML Void after the Segment, also claiming more than there is.
    lookalikes = [struct.pack(">I4s", 0x7FFFFFFF, b"JUNK"), b"\xec\x40\xff" + bytes(8)]
    for name in ("normal.mp4", "faststart.mp4", "video.mkv", "video.webm"):
        for tail in (b"\x00\x00\x00\x07", junk, *lookalikes):
            data = media[name] + tail
            assert truncation_reason(bytes_reader(data), len(data), data[:64]) is None, name


def test_walks_are_bounded(media: dict[str, bytes]) -> None:
    full = media["fragmented.mp4"]
    assert len(box_kinds(full)) == MAX_TOP_LEVEL  # the file has more; the walk stops there
    reads: list[tuple[int, int]] = []
    inner = bytes_reader(full)

    def counting(offset: int, length: int) -> bytes:
        reads.append((offset, length))
        return inner(offset, length)

    assert truncation_reason(counting, len(full), full[:64]) is None
    assert len(reads) <= MAX_TOP_LEVEL and all(length <= 16 for _, length in reads)
    # A cut beyond the 64th box is past what the walk looks at: no verdict, no false one.
    data = cut(full, 0.95)
    assert truncation_reason(bytes_reader(data), len(data), data[:64]) is None
    # A faststart MP4 needs two header reads past the 64 leading bytes (free, mdat).
    reads.clear()
    fast = media["faststart.mp4"]
    inner = bytes_reader(fast)
    assert truncation_reason(counting, len(fast), fast[:64]) is None
    assert len(reads) == 2


def test_failed_probe_walks_past_the_leading_bytes(media: dict[str, bytes]) -> None:
    # A non-faststart MP4 whose mdat header lies beyond the 64 leading bytes (a 100-byte
    # free box in front): only a read past them finds that the moov was cut off.
    full = media["normal.mp4"]
    boxes = walk_mp4_boxes(bytes_reader(full), len(full)).boxes
    ftyp_end = boxes[0].end
    padded = full[:ftyp_end] + struct.pack(">I4s", 100, b"free") + bytes(92) + full[ftyp_end:]
    data = cut(padded, 0.5)
    stderr = "moov atom not found\nInvalid data found when processing input\n"
    blind = classify_probe_failure(stderr, size_bytes=len(data), leading_bytes=data[:64])
    assert "truncated" not in blind.reason  # the mdat header is not in the leading bytes
    seen = classify_probe_failure(
        stderr, size_bytes=len(data), leading_bytes=data[:64], read=bytes_reader(data)
    )
    [mdat] = [
        b for b in walk_mp4_boxes(bytes_reader(padded), len(padded)).boxes if b.kind == "mdat"
    ]
    assert mdat.offset + 8 > 64
    assert seen.error_class == "corrupt_media"
    assert seen.reason == (
        f"truncated file: moov atom not found ('mdat' box needs {mdat.end:,} bytes, "
        f"object holds {len(data):,})"
    )


# --- the range reader (local files) -------------------------------------------------------------


def test_range_reader_reads_local_files_at_any_offset(tmp_path: Path) -> None:
    data = random.Random(3).randbytes(10_000)
    path = tmp_path / "f.bin"
    path.write_bytes(data)
    with RangeReader(str(path)) as read:
        assert read(0, 16) == data[:16]
        assert read(9_990, 16) == data[9_990:]  # short at the end
        assert read(10_000, 16) == b"" and read(50_000, 16) == b""
        assert read.reads == 4
    budget = RangeReader(str(path), max_reads=3)
    assert [len(budget(0, 8)) for _ in range(5)] == [8, 8, 8, 0, 0]  # bounded
    budget.close()
    assert MAX_RANGE_READS >= MAX_TOP_LEVEL
    # Deleted since it was listed: the same class as the other reads of the object.
    with RangeReader(str(tmp_path / "gone.mp4")) as read, pytest.raises(ObjectMissing):
        read(0, 16)


def test_range_reader_does_not_block_on_a_fifo(tmp_path: Path) -> None:
    fifo = tmp_path / "swapped.mkv"
    os.mkfifo(fifo)
    with RangeReader(str(fifo)) as read:
        assert read(0, 16) == b""


# --- through the prober and ingest ---------------------------------------------------------------

TRUNCATED = {
    # name in the library: (source file, fraction kept)
    "cut/video_50.mkv": ("video.mkv", 0.50),
    "cut/video_97.mkv": ("video.mkv", 0.97),
    "cut/video_50.webm": ("video.webm", 0.50),
    "cut/faststart_97.mp4": ("faststart.mp4", 0.97),
    "cut/faststart_99.mp4": ("faststart.mp4", 0.99),
    "cut/largesize_faststart_97.mp4": ("largesize_faststart.mp4", 0.97),
    "cut/normal_99.mp4": ("normal.mp4", 0.99),
}
INTACT = [
    "normal.mp4",
    "faststart.mp4",
    "largesize.mp4",
    "largesize_faststart.mp4",
    "video.mkv",
    "video.webm",
    "live.mkv",
]


@pytest.fixture
def library(tmp_path: Path, media: dict[str, bytes]) -> Path:
    folder = tmp_path / "library"
    (folder / "cut").mkdir(parents=True)
    for name in INTACT:
        (folder / name).write_bytes(media[name])
    for name, (source, fraction) in TRUNCATED.items():
        (folder / name).write_bytes(cut(media[source], fraction))
    return folder


def test_prober_rejects_cut_files_that_ffprobe_reads_fine(library: Path) -> None:
    prober = FfprobeProber()
    for name in TRUNCATED:
        path = library / name
        with pytest.raises(MediaRejected) as info:
            prober.probe(str(path), size_bytes=path.stat().st_size)
        assert info.value.error_class == "corrupt_media", name
        assert info.value.reason.startswith("truncated file: "), info.value.reason
        assert f"object holds {path.stat().st_size:,}" in info.value.reason
    for name in INTACT:
        path = library / name
        record = prober.probe(str(path), size_bytes=path.stat().st_size)
        assert (record.width, record.height) == (160, 120), name


def test_ingest_of_a_folder_fails_the_truncated_versions(library: Path, home: Path) -> None:
    report = ingest(str(library))
    assert len(report.new) == len(INTACT) + len(TRUNCATED)
    outcome = {
        report.versions[pk].object_key: (state.status, state.error_class, state.error)
        for pk, state in report.states.items()
    }
    for name in INTACT:
        assert outcome[name][:2] == ("SUCCEEDED", None), (name, outcome[name])
    for name in TRUNCATED:
        status, error_class, error = outcome[name]
        assert (status, error_class) == ("FAILED", "corrupt_media"), (name, outcome[name])
        assert error and "truncated file: " in error
    assert "'Segment' element needs" in outcome["cut/video_50.webm"][2]
    assert "'mdat' box needs" in outcome["cut/faststart_97.mp4"][2]
    _, rows = catalog_at(home).query("SELECT object_key FROM videos ORDER BY 1")
    assert [r[0] for r in rows] == sorted(INTACT)


def test_ingest_of_a_bucket_fails_the_truncated_versions(
    s3_home: Path,
    s3_stack: StackSettings,
    s3_client: BaseClient,
    s3_bucket: str,
    media: dict[str, bytes],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    objects = {
        "cut/video 50%.mkv": cut(media["video.mkv"], 0.5),
        "cut/faststart 97%.mp4": cut(media["faststart.mp4"], 0.97),
        "ok/faststart.mp4": media["faststart.mp4"],
        "ok/live.mkv": media["live.mkv"],
    }
    for key, body in objects.items():
        s3_client.put_object(Bucket=s3_bucket, Key=key, Body=body)
    ranges: list[str] = []
    real = RangeReader._read_url

    def recording(self: RangeReader, offset: int, length: int) -> bytes:
        ranges.append(self._shown_url())
        return real(self, offset, length)

    monkeypatch.setattr(RangeReader, "_read_url", recording)
    report = ingest(f"s3://{s3_bucket}")
    outcome = {
        report.versions[pk].object_key: (state.status, state.error_class, state.error)
        for pk, state in report.states.items()
    }
    assert outcome["ok/faststart.mp4"][:2] == ("SUCCEEDED", None)
    assert outcome["ok/live.mkv"][:2] == ("SUCCEEDED", None)
    mkv, mp4 = outcome["cut/video 50%.mkv"], outcome["cut/faststart 97%.mp4"]
    assert mkv[:2] == mp4[:2] == ("FAILED", "corrupt_media")
    full, kept = len(media["video.mkv"]), len(objects["cut/video 50%.mkv"])
    assert mkv[2] == (
        f"truncated file: Matroska/WebM 'Segment' element needs {full:,} bytes, "
        f"object holds {kept:,}"
    )
    full, kept = len(media["faststart.mp4"]), len(objects["cut/faststart 97%.mp4"])
    assert mp4[2] == f"truncated file: 'mdat' box needs {full:,} bytes, object holds {kept:,}"
    # The MP4 boxes past the leading bytes were read with ranged GETs of the presigned URLs.
    prefix = f"{s3_stack.endpoint_url}/{s3_bucket}/"
    assert ranges and all(r.startswith(prefix) and "?" not in r for r in ranges)
    assert len(ranges) <= 2 * len(objects)
