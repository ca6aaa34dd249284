"""Media the rest of the suite never made: AVI, FLV, APNG, PNG in Matroska, unknown codecs.

Found by a variety pass over ffmpeg-generated media against ffprobe's own answers:

* an AVI cut short probed "fine" as a shorter clip (ffprobe rebuilds the lost index by
  scanning), and an FLV cut short probed fine with its *full* duration (ffprobe takes it
  from the ``onMetaData`` tag): both were SUCCEEDED rows of broken uploads;
* an animated PNG (APNG: no frame count, no duration in ffprobe) was rejected as a still
  image, while an animated GIF is a clip;
* one PNG picture in Matroska (no frame count in the container) was a 0.04 s "video",
  while the same picture in MOV is a still;
* a MOV or MKV naming a codec this ffprobe does not know (ProRes RAW ``aprn``, VVC
  ``V_MPEGI/ISO/VVC``) was ``corrupt_media``, telling the uploader to re-upload the same,
  intact bytes.

Every file is generated here with ffmpeg's lavfi sources; ffprobe is real, and the last
test reads the files from a real S3 bucket (SeaweedFS) through presigned URLs.
"""

from __future__ import annotations

import os
import struct
import subprocess
from pathlib import Path

import pytest
from botocore.client import BaseClient

from edvmp_pipeline.adapters.prober import FfprobeProber
from edvmp_pipeline.defs.in_process_runs import ingest_in_process as ingest
from edvmp_pipeline.domain.container_structure import (
    apng_frame_count,
    bytes_reader,
    flv_truncation,
    matroska_video_codec_id,
    riff_truncation,
    truncation_reason,
)
from edvmp_pipeline.domain.errors import MediaRejected
from edvmp_pipeline.domain.probe_normalise import classify_probe_failure
from edvmp_pipeline.domain.records import VideoRecord
from edvmp_pipeline_tests.cli_support import catalog_at, run_edvmp
from edvmp_pipeline_tests.media_factory import (
    X264,
    _ffmpeg,
    _tone,
    _video,
    ffmpeg_available,
    probe_json,
)

pytestmark = pytest.mark.skipif(not ffmpeg_available(), reason="ffmpeg/ffprobe not installed")

# 2 s at 25 fps: long enough that half a file is clearly half the clip.
CLIP = _video(rate="25", duration=2.0)
TONE = _tone(duration=2.0)


def _piped(*args: str) -> bytes:
    """ffmpeg output written to a pipe: the muxer cannot go back to fill in sizes."""
    cmd = ["ffmpeg", "-nostdin", "-hide_banner", "-v", "error", *args, "-"]
    return subprocess.run(cmd, capture_output=True, check=True).stdout


def _cut(data: bytes, fraction: float) -> bytes:
    return data[: int(len(data) * fraction)]


@pytest.fixture(scope="module")
def media(tmp_path_factory: pytest.TempPathFactory) -> dict[str, bytes]:
    """name → bytes of the generated files (about a second on two cores)."""
    d = tmp_path_factory.mktemp("variety")
    _ffmpeg(*CLIP, *TONE, "-c:v", "mpeg4", "-c:a", "pcm_s16le", d / "clip.avi")
    _ffmpeg(*CLIP, *TONE, "-c:v", "flv", "-c:a", "aac", "-ar", "44100", d / "clip.flv")
    _ffmpeg(*_video(size="64x48", rate="10"), "-plays", "0", "-f", "apng", d / "anim.apng")
    _ffmpeg(*_video(), "-frames:v", "1", d / "picture.png")
    _ffmpeg("-i", d / "picture.png", "-c:v", "png", d / "picture.mkv")
    _ffmpeg("-loop", "1", "-i", d / "picture.png", "-t", "2", "-r", "25", "-c:v", "png",
            d / "slideshow.mkv")  # fmt: skip
    _ffmpeg(*CLIP, *TONE, *X264, "-c:a", "aac", d / "clip.mov")
    _ffmpeg(*CLIP, *TONE, *X264, "-c:a", "aac", d / "clip.mkv")
    out = {p.name: p.read_bytes() for p in d.iterdir()}
    out["piped.avi"] = _piped(*CLIP, "-c:v", "mpeg4", "-f", "avi")
    out["piped.flv"] = _piped(*CLIP, "-c:v", "flv", "-f", "flv")
    return out


def _unknown_fourcc(mov: bytes, fourcc: bytes) -> bytes:
    """``mov`` with its video sample entry's ``avc1`` renamed ``fourcc`` (a codec ffprobe
    cannot decode, in an otherwise intact file)."""
    at = mov.index(b"avc1", mov.index(b"stsd"))
    return mov[:at] + fourcc + mov[at + 4 :]


def _probe(path: Path) -> VideoRecord:
    return FfprobeProber().probe(str(path), size_bytes=path.stat().st_size)


def _rejected(path: Path) -> MediaRejected:
    with pytest.raises(MediaRejected) as info:
        _probe(path)
    return info.value


def _ffprobe_duration(path: Path) -> float:
    return float(probe_json(path)["format"]["duration"])


# --- truncated AVI and FLV ----------------------------------------------------------------


@pytest.mark.parametrize("fraction", [0.5, 0.97])
def test_cut_avi_is_truncated_although_ffprobe_reads_it(
    media: dict[str, bytes], tmp_path: Path, fraction: float
) -> None:
    data = media["clip.avi"]
    path = tmp_path / "cut.avi"
    path.write_bytes(_cut(data, fraction))
    # ffprobe rebuilds the index by scanning: a shorter clip, not an error.
    assert probe_json(path)["streams"], "ffprobe no longer reads a cut AVI"
    error = _rejected(path)
    assert error.error_class == "corrupt_media"
    assert error.reason == (
        f"truncated file: RIFF 'AVI' chunk needs {len(data):,} bytes, object holds "
        f"{path.stat().st_size:,}"
    )


def test_intact_piped_and_padded_avi_are_not_truncated(
    media: dict[str, bytes], tmp_path: Path
) -> None:
    data = media["clip.avi"]
    assert riff_truncation(bytes_reader(data), len(data)) is None
    # Written to a pipe the RIFF size stays 0xFFFFFFFF: unknown, proves nothing.
    piped = media["piped.avi"]
    assert piped[4:8] == b"\xff\xff\xff\xff"
    assert riff_truncation(bytes_reader(piped), len(piped) // 2) is None
    # Bytes appended after the RIFF chunk are not a cut.
    padded = data + b"appended"
    assert riff_truncation(bytes_reader(padded), len(padded)) is None
    # OpenDML: a second RIFF 'AVIX' chunk after the first is walked and judged too.
    avix = struct.pack("<4sI4s", b"RIFF", 1000, b"AVIX") + bytes(100)
    two_parts = data + avix
    assert riff_truncation(bytes_reader(two_parts), len(two_parts)) == (
        f"truncated file: RIFF 'AVIX' chunk needs {len(data) + 1008:,} bytes, object holds "
        f"{len(two_parts):,}"
    )
    for name, blob in (("clip.avi", data), ("piped.avi", piped)):
        path = tmp_path / name
        path.write_bytes(blob)
        record = _probe(path)
        assert (record.video_codec, record.width, record.height) == ("mpeg4", 160, 120)


def test_failed_probe_of_a_cut_avi_or_flv_names_the_cut(media: dict[str, bytes]) -> None:
    # Cut inside its header, ffprobe gives up ("Invalid data found"); the sizes still tell
    # a truncated upload from garbage.
    for name, reason in (
        ("clip.avi", "truncated file: RIFF 'AVI' chunk needs"),
        ("clip.flv", "truncated file: FLV metadata declares filesize"),
    ):
        cut = media[name][:2000]
        error = classify_probe_failure(
            "Invalid data found when processing input",
            size_bytes=len(cut),
            leading_bytes=cut[:64],
            read=bytes_reader(cut),
        )
        assert error.error_class == "corrupt_media", name
        assert error.reason.startswith(reason), error.reason


@pytest.mark.parametrize("fraction", [0.5, 0.97])
def test_cut_flv_is_truncated_although_ffprobe_reports_full_duration(
    media: dict[str, bytes], tmp_path: Path, fraction: float
) -> None:
    data = media["clip.flv"]
    whole, cut = tmp_path / "whole.flv", tmp_path / "cut.flv"
    whole.write_bytes(data)
    cut.write_bytes(_cut(data, fraction))
    # The duration comes from onMetaData: the cut file claims the whole clip's.
    assert _ffprobe_duration(cut) == _ffprobe_duration(whole)
    error = _rejected(cut)
    assert error.error_class == "corrupt_media"
    assert error.reason == (
        f"truncated file: FLV metadata declares filesize {len(data):,} bytes, object holds "
        f"{cut.stat().st_size:,}"
    )
    assert _probe(whole).duration_s == pytest.approx(2.0, abs=0.1)


def test_intact_piped_and_padded_flv_are_not_truncated(media: dict[str, bytes]) -> None:
    data = media["clip.flv"]
    assert flv_truncation(bytes_reader(data), len(data)) is None
    assert flv_truncation(bytes_reader(data + b"appended"), len(data) + 8) is None
    # filesize is the writer's claim: within 1 % of it is not judged, past 1 % it is a cut.
    assert flv_truncation(bytes_reader(data), int(len(data) * 0.995)) is None
    assert flv_truncation(bytes_reader(data), int(len(data) * 0.985)) is not None
    # Written to a pipe, filesize stays 0 (the muxer cannot seek back): no verdict.
    piped = media["piped.flv"]
    assert flv_truncation(bytes_reader(piped), len(piped) // 2) is None
    # Dispatch is by the first bytes: the same check through truncation_reason.
    assert truncation_reason(bytes_reader(data), len(data) // 2, data[:64]) is not None
    assert truncation_reason(bytes_reader(piped), len(piped) // 2, piped[:64]) is None


# --- pictures and animations --------------------------------------------------------------


def test_animated_png_is_a_clip_not_a_still(media: dict[str, bytes], tmp_path: Path) -> None:
    path = tmp_path / "anim.apng"
    path.write_bytes(media["anim.apng"])
    record = _probe(path)
    assert (record.format_name, record.video_codec) == ("apng", "apng")
    assert (record.width, record.height, record.fps) == (64, 48, 10.0)
    # ffprobe knows no duration for APNG; null, not a guess.
    assert record.duration_s is None


def test_apng_declaring_one_frame_is_a_still(media: dict[str, bytes], tmp_path: Path) -> None:
    data = media["anim.apng"]
    # ffmpeg 5.1 writes IHDR, pHYs, then acTL: its count lies past the 64 leading bytes,
    # so it is read through the range reader.
    at = data.index(b"acTL")
    assert apng_frame_count(bytes_reader(data)) == 10
    path = tmp_path / "one_frame.apng"
    path.write_bytes(data[: at + 4] + (1).to_bytes(4, "big") + data[at + 8 :])
    assert probe_json(path)["format"]["format_name"] == "apng"
    error = _rejected(path)
    assert (error.error_class, error.reason) == (
        "unsupported_media",
        "still image (apng), not a video",
    )


def test_one_picture_in_matroska_is_a_still(media: dict[str, bytes], tmp_path: Path) -> None:
    still, slideshow = tmp_path / "picture.mkv", tmp_path / "slideshow.mkv"
    still.write_bytes(media["picture.mkv"])
    slideshow.write_bytes(media["slideshow.mkv"])
    error = _rejected(still)
    assert (error.error_class, error.reason) == (
        "unsupported_media",
        "still image (png), not a video",
    )
    # 50 PNG frames over 2 s are a clip, like an animated GIF.
    record = _probe(slideshow)
    assert (record.video_codec, record.fps) == ("png", 25.0)
    assert record.duration_s == pytest.approx(2.0, abs=0.05)


# --- codecs ffprobe does not know ---------------------------------------------------------


def test_unknown_fourcc_is_unsupported_not_corrupt(media: dict[str, bytes], tmp_path: Path) -> None:
    path = tmp_path / "prores_raw.mov"
    path.write_bytes(_unknown_fourcc(media["clip.mov"], b"aprn"))
    stream = probe_json(path)["streams"][0]
    assert "codec_name" not in stream and stream["codec_tag_string"] == "aprn"
    error = _rejected(path)
    assert (error.error_class, error.reason) == (
        "unsupported_media",
        "unsupported video codec: ffprobe does not know codec tag 'aprn'",
    )
    # A zero tag names nothing: that stream header is damaged.
    zero = tmp_path / "zero_tag.mov"
    zero.write_bytes(_unknown_fourcc(media["clip.mov"], bytes(4)))
    assert _rejected(zero).error_class == "corrupt_media"


def _matroska_codec(mkv: bytes, codec_id: bytes) -> bytes:
    """``mkv`` with its H.264 track's CodecID replaced by ``codec_id`` (same length)."""
    at = mkv.index(b"V_MPEG4/ISO/AVC")
    assert len(codec_id) == 15
    return mkv[:at] + codec_id + mkv[at + 15 :]


def test_unknown_matroska_codec_is_unsupported_not_corrupt(
    media: dict[str, bytes], tmp_path: Path
) -> None:
    # H.266/VVC: a real Matroska codec ID this ffprobe (5.1) cannot decode. ffprobe shows
    # no codec and a zero tag, exactly as for a damaged track; the ID tells them apart.
    path = tmp_path / "vvc.mkv"
    path.write_bytes(_matroska_codec(media["clip.mkv"], b"V_MPEGI/ISO/VVC"))
    stream = probe_json(path)["streams"][0]
    assert "codec_name" not in stream and stream["codec_tag_string"] == "[0][0][0][0]"
    assert matroska_video_codec_id(bytes_reader(media["clip.mkv"]), len(media["clip.mkv"])) == (
        "V_MPEG4/ISO/AVC"
    )
    error = _rejected(path)
    assert (error.error_class, error.reason) == (
        "unsupported_media",
        "unsupported video codec: ffprobe does not know Matroska codec 'V_MPEGI/ISO/VVC'",
    )
    # Binary junk where the ID should be names nothing (ffmpeg drops such a track).
    damaged = _matroska_codec(media["clip.mkv"], b"\x01" * 15)
    assert matroska_video_codec_id(bytes_reader(damaged), len(damaged)) is None


# --- end to end ---------------------------------------------------------------------------


def test_ingest_gives_rows_or_one_line_failures(
    media: dict[str, bytes], tmp_path: Path, home: Path
) -> None:
    folder = tmp_path / "uploads"
    folder.mkdir()
    files = {
        "clip.avi": media["clip.avi"],
        "clip.flv": media["clip.flv"],
        "anim.apng": media["anim.apng"],
        "slideshow.mkv": media["slideshow.mkv"],
        "cut.avi": _cut(media["clip.avi"], 0.5),
        "cut.flv": _cut(media["clip.flv"], 0.5),
        "picture.mkv": media["picture.mkv"],
        "prores_raw.mov": _unknown_fourcc(media["clip.mov"], b"aprn"),
        "vvc.mkv": _matroska_codec(media["clip.mkv"], b"V_MPEGI/ISO/VVC"),
    }
    for name, data in files.items():
        (folder / name).write_bytes(data)
    done = run_edvmp("ingest", str(folder), env={**os.environ, "EDVMP_HOME": str(home)})
    assert done.returncode == 1, done.stdout + done.stderr
    assert "Traceback" not in done.stderr and "internal error" not in done.stderr
    assert "processed 9: succeeded 4, failed 5" in done.stdout, done.stdout
    failed = {
        line.strip().split(": ", 1)[0]: line.strip().split(": ", 1)[1]
        for line in done.stdout.split("failed:\n", 1)[1].splitlines()
        if line.startswith("  ")
    }
    assert failed == {
        "cut.avi": f"[corrupt_media] truncated file: RIFF 'AVI' chunk needs "
        f"{len(files['clip.avi']):,} bytes, object holds {len(files['cut.avi']):,}",
        "cut.flv": f"[corrupt_media] truncated file: FLV metadata declares filesize "
        f"{len(files['clip.flv']):,} bytes, object holds {len(files['cut.flv']):,}",
        "picture.mkv": "[unsupported_media] still image (png), not a video",
        "prores_raw.mov": "[unsupported_media] unsupported video codec: ffprobe does not "
        "know codec tag 'aprn'",
        "vvc.mkv": "[unsupported_media] unsupported video codec: ffprobe does not know "
        "Matroska codec 'V_MPEGI/ISO/VVC'",
    }
    _, rows = catalog_at(home).query(
        "SELECT object_key, video_codec, width, height, fps, round(duration_s, 1), "
        "audio_codec FROM videos ORDER BY 1"
    )
    assert [tuple(r) for r in rows] == [
        ("anim.apng", "apng", 64, 48, 10.0, None, None),
        ("clip.avi", "mpeg4", 160, 120, 25.0, 2.0, "pcm_s16le"),
        ("clip.flv", "flv1", 160, 120, 25.0, 2.0, "aac"),
        ("slideshow.mkv", "png", 160, 120, 25.0, 2.0, None),
    ]


def test_bucket_ingest_reads_the_new_structures_through_presigned_urls(
    s3_home: Path, s3_client: BaseClient, s3_bucket: str, media: dict[str, bytes]
) -> None:
    # Past the leading bytes the FLV metadata, the acTL chunk and the RIFF size are read
    # with ranged GETs of the presigned URL, not from a local file.
    objects = {
        "cut.avi": _cut(media["clip.avi"], 0.5),
        "cut.flv": _cut(media["clip.flv"], 0.5),
        "anim.apng": media["anim.apng"],
        "clip.flv": media["clip.flv"],
    }
    for key, body in objects.items():
        s3_client.put_object(Bucket=s3_bucket, Key=key, Body=body)
    report = ingest(f"s3://{s3_bucket}")
    outcome = {
        report.versions[pk].object_key: (state.status, state.error_class, state.error)
        for pk, state in report.states.items()
    }
    assert outcome["anim.apng"][:2] == outcome["clip.flv"][:2] == ("SUCCEEDED", None)
    assert outcome["cut.avi"] == (
        "FAILED",
        "corrupt_media",
        f"truncated file: RIFF 'AVI' chunk needs {len(media['clip.avi']):,} bytes, object "
        f"holds {len(objects['cut.avi']):,}",
    )
    assert outcome["cut.flv"] == (
        "FAILED",
        "corrupt_media",
        f"truncated file: FLV metadata declares filesize {len(media['clip.flv']):,} bytes, "
        f"object holds {len(objects['cut.flv']):,}",
    )
