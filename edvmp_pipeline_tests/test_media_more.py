"""More media shapes, checked against ffprobe's own answers: WebM (VP9/Opus, VP8/Vorbis), Ogg
Theora, MPEG-TS, MPEG-PS, rotated and mirrored MOV, two video streams, subtitles, odd sizes,
non-square pixels, interlaced, 10-bit, variable frame rate, WMV, MXF, AVIF, WebP, stills and
audio named ``.mp4``.

Found by this pass:

* an intact MPEG-1 video in MP4/MOV was rejected as "truncated file: streams declare 13.1 MB
  but object holds 64 kB": the sequence header's "variable bit rate" code (0x3FFFF x 400 =
  104857200 b/s) reached the rate check as a real rate; in the ``streams`` view it was that
  bit rate for every VBR MPEG-1 stream (MPEG-PS, TS, Matroska too);
* a display matrix that mirrors the picture left-right was stored as ``rotation`` 180 (the
  picture turned upside down), and one that mirrors it top-bottom as 0; an all-zero matrix
  (ffprobe prints its NaN angle as -2**63) was a rotation of 8 degrees;
* Matroska statistics tags (mkvmerge's ``BPS``, and ``BPS-eng``/``DURATION-eng`` of older
  versions) were ignored: ``streams.bit_rate`` null, ``duration_s`` null;
* an audio file with subtitles was refused as "audio-only file (aac, 1 audio stream)",
  leaving out the subtitle stream;
* a WMV/ASF or an MXF cut short was a SUCCEEDED row: ffprobe takes their duration from the
  header (a half WMV "lasted" 7.6 s of a 2 s clip, a cut MXF its full 2 s);
* an AVIF image (one AV1 frame, no duration) was a SUCCEEDED "video" with fps 1;
* an animated WebP (which ffprobe 5.1 cannot decode: 0x0) was called a still image.

Every file is generated here with ffmpeg's lavfi sources (1 s, 160x120 unless said).
"""

from __future__ import annotations

import copy
import json
import os
import struct
import subprocess
from fractions import Fraction
from pathlib import Path
from typing import Any

import pytest
from botocore.client import BaseClient

from edvmp_pipeline.adapters.prober import FfprobeProber
from edvmp_pipeline.defs.in_process_runs import ingest_in_process as ingest
from edvmp_pipeline.domain.container_structure import (
    asf_truncation,
    bytes_reader,
    mxf_truncation,
    truncation_reason,
    webp_is_animated,
)
from edvmp_pipeline.domain.errors import MediaRejected
from edvmp_pipeline.domain.probe_normalise import normalise_probe
from edvmp_pipeline_tests.cli_support import catalog_at, run_edvmp
from edvmp_pipeline_tests.media_factory import (
    X264,
    _encoders,
    _ffmpeg,
    _video,
    _write_srt,
    ffmpeg_available,
    probe_json,
)

pytestmark = pytest.mark.skipif(not ffmpeg_available(), reason="ffmpeg/ffprobe not installed")

CLIP = _video(rate="25")
TONE = ["-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000:duration=1"]
AAC = ["-c:a", "aac", "-ac", "2"]
ASF_DATA = bytes.fromhex("3626b2758e66cf11a6d900aa0062ce6c")
ASF_SIMPLE_INDEX = bytes.fromhex("90080033b1e5cf1189f400a0c90349cb")
MXF_FOOTER_PARTITION = bytes.fromhex("060e2b34020501010d0102010104")


def _with_matrix(mov: bytes, a: int, b: int, c: int, d: int) -> bytes:
    """``mov`` with its video track's ``tkhd`` display matrix set to [[a, b], [c, d]]
    (16.16 fixed point, as ffmpeg 5.1 cannot write a mirroring matrix)."""
    pos = 0
    while (at := mov.find(b"tkhd", pos)) >= 0:
        version = mov[at + 4]
        matrix = at + 8 + (32 if version == 1 else 20) + 16
        width, _ = struct.unpack(">II", mov[matrix + 36 : matrix + 44])
        if width:
            one = 1 << 16
            values = struct.pack(">9i", a * one, b * one, 0, c * one, d * one, 0, 0, 0, 1 << 30)
            return mov[:matrix] + values + mov[matrix + 36 :]
        pos = at + 4
    raise AssertionError("no video tkhd")


@pytest.fixture(scope="module")
def media(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """name → generated file (about 5 s on two cores); cases this ffmpeg cannot make are
    left out."""
    d = tmp_path_factory.mktemp("more")
    have = _encoders()
    srt = _write_srt(d / "subs.srt")
    out: dict[str, Path] = {}

    def make(name: str, *args: str | Path, needs: tuple[str, ...] = ()) -> None:
        if all(n in have for n in needs):
            _ffmpeg(*args, d / name)
            out[name] = d / name

    vpx = ["-deadline", "realtime", "-cpu-used", "8", "-b:v", "200k"]
    make("vp9_opus.webm", *CLIP, *TONE, "-c:v", "libvpx-vp9", *vpx, "-c:a", "libopus",
         needs=("libvpx-vp9", "libopus"))  # fmt: skip
    make("vp8_vorbis.webm", *CLIP, *TONE, "-c:v", "libvpx", *vpx, "-c:a", "libvorbis",
         needs=("libvpx", "libvorbis"))  # fmt: skip
    make("theora.ogv", *CLIP, *TONE, "-c:v", "libtheora", "-c:a", "libvorbis",
         needs=("libtheora", "libvorbis"))  # fmt: skip
    make("h264_mp2.ts", *CLIP, *TONE, *X264, "-c:a", "mp2", needs=("mp2",))
    make("h264_aac.ts", *CLIP, *TONE, *X264, *AAC)
    make("mpeg2.mpg", *CLIP, *TONE, "-c:v", "mpeg2video", "-c:a", "mp2", needs=("mp2",))
    make("mpeg1.mpg", *CLIP, *TONE, "-c:v", "mpeg1video", "-c:a", "mp2", "-f", "mpeg",
         needs=("mp2",))  # fmt: skip
    make("mpeg1.mp4", *CLIP, "-c:v", "mpeg1video")
    make("mpeg1.mov", *CLIP, *TONE, "-c:v", "mpeg1video", *AAC)
    make("src.mov", *CLIP, *TONE, *X264, *AAC)
    for turn in (90, 180, 270):
        # ffmpeg 5.1 turns the rotate tag into a matrix of that many degrees
        # counter-clockwise (see media_factory.make_rotated_mp4).
        make(f"rotate_tag_{turn}.mov", "-i", out["src.mov"], "-c", "copy",
             "-metadata:s:v:0", f"rotate={turn}")  # fmt: skip
    make("two_video.mkv", *CLIP, "-f", "lavfi", "-i", "testsrc=size=320x240:rate=30:duration=1",
         *TONE, "-map", "0:v", "-map", "1:v", "-map", "2:a", *X264, *AAC)  # fmt: skip
    make("video_subtitles.mkv", *CLIP, *TONE, "-i", srt, "-map", "0:v", "-map", "1:a",
         "-map", "2:s", *X264, *AAC, "-c:s", "srt")  # fmt: skip
    make("audio_only.mp4", *TONE, *AAC)
    make("audio_subtitles.mkv", *TONE, "-i", srt, "-map", "0:a", "-map", "1:s", *AAC, "-c:s", "srt")
    make("jpeg.jpg", *CLIP, "-frames:v", "1")
    make("png.png", *CLIP, "-frames:v", "1")
    make("one_frame.mp4", *CLIP, "-frames:v", "1", *X264)
    make("odd_444.mp4", *_video(rate="25", size="320x240"), "-vf", "scale=321:241",
         "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv444p")  # fmt: skip
    make("sar_4_3.mp4", *CLIP, *TONE, *X264, "-vf", "setsar=4/3", *AAC)
    make("interlaced.mp4", *CLIP, *X264, "-flags", "+ildct+ilme", "-x264-params", "tff=1",
         "-vf", "setfield=tff")  # fmt: skip
    make("tenbit.mkv", *CLIP, "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt",
         "yuv420p10le")  # fmt: skip
    long_clip = (*_video(rate="25", duration=2.0), "-f", "lavfi", "-i", "sine=duration=2")
    make("clip.wmv", *long_clip, "-c:v", "wmv2", "-c:a", "wmav2", needs=("wmv2", "wmav2"))
    make("clip.mxf", *long_clip, "-c:v", "mpeg2video", "-c:a", "pcm_s16le", "-ar", "48000")
    make("still.avif", *CLIP, "-frames:v", "1", "-c:v", "libaom-av1", "-still-picture", "1",
         "-cpu-used", "8", needs=("libaom-av1",))  # fmt: skip
    make("anim.webp", *CLIP, "-c:v", "libwebp_anim", "-loop", "0", needs=("libwebp_anim",))
    make("still.webp", *CLIP, "-frames:v", "1", "-c:v", "libwebp", needs=("libwebp",))
    make("vfr.mp4", *_video(rate="30", duration=2.0), "-vf", "setpts='if(lt(T,1),PTS,PTS*3)'",
         *X264, "-fps_mode", "vfr")  # fmt: skip
    out.pop("src.mov").unlink()
    (d / "jpeg_as.mp4").write_bytes(out.pop("jpeg.jpg").read_bytes())
    (d / "png_as.mp4").write_bytes(out.pop("png.png").read_bytes())
    out["jpeg_as.mp4"], out["png_as.mp4"] = d / "jpeg_as.mp4", d / "png_as.mp4"
    for name in ("clip.wmv", "clip.mxf"):
        if name in out:
            data = out[name].read_bytes()
            for percent in (50, 97):
                cut = d / name.replace("clip", f"cut{percent}")
                cut.write_bytes(data[: len(data) * percent // 100])
                out[cut.name] = cut
    base = out["rotate_tag_90.mov"].read_bytes()
    for name, matrix in {
        "mirror_left_right.mov": (-1, 0, 0, 1),
        "mirror_top_bottom.mov": (1, 0, 0, -1),
        "transposed.mov": (0, 1, 1, 0),
        "zero_matrix.mov": (0, 0, 0, 0),
    }.items():
        (d / name).write_bytes(_with_matrix(base, *matrix))
        out[name] = d / name
    return out


def _probe(path: Path) -> Any:
    return FfprobeProber().probe(str(path), size_bytes=path.stat().st_size)


# --- MPEG-1's "variable bit rate" code -----------------------------------------------------


@pytest.mark.parametrize("name", ["mpeg1.mp4", "mpeg1.mov"])
def test_intact_mpeg1_in_mp4_is_not_truncated(media: dict[str, Path], name: str) -> None:
    video = probe_json(media[name])["streams"][0]
    assert (video["codec_name"], video["bit_rate"]) == ("mpeg1video", str(0x3FFFF * 400))
    record = _probe(media[name])
    assert (record.video_codec, record.width, record.height) == ("mpeg1video", 160, 120)
    assert record.streams[0].bit_rate is None  # variable: unknown, not 104.9 Mb/s


def test_cut_mpeg1_mp4_is_still_truncated(media: dict[str, Path], tmp_path: Path) -> None:
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(media["mpeg1.mp4"].read_bytes()[:20000])
    with pytest.raises(MediaRejected) as info:
        _probe(cut)
    assert info.value.error_class == "corrupt_media"
    assert info.value.reason.startswith("truncated file: moov atom not found")


def test_mpeg1_vbr_code_is_no_bit_rate_in_any_container(media: dict[str, Path]) -> None:
    record = _probe(media["mpeg1.mpg"])
    assert [(s.codec_name, s.bit_rate) for s in record.streams] == [
        ("mpeg1video", None),
        ("mp2", 384000),
    ]
    # A real rate in the same field is kept; so is the value in other codecs.
    doc = probe_json(media["mpeg1.mpg"])
    doc["streams"][0]["bit_rate"] = "300000"
    assert normalise_probe(doc, size_bytes=10**6).streams[0].bit_rate == 300000
    doc["streams"][0].update(codec_name="h264", bit_rate=str(0x3FFFF * 400))
    assert normalise_probe(doc, size_bytes=10**6).streams[0].bit_rate == 0x3FFFF * 400


# --- mirrored display matrices -------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "ffprobe_rotation", "rotation"),
    [
        ("rotate_tag_90.mov", 90, 270),  # plain turns: ffprobe's angle, clockwise
        ("rotate_tag_180.mov", -180, 180),
        ("rotate_tag_270.mov", -90, 90),
        # Mirrors: the picture's top stays up (0), goes down (180), goes left (270).
        ("mirror_left_right.mov", -180, 0),
        ("mirror_top_bottom.mov", 0, 180),
        ("transposed.mov", -90, 270),
    ],
)
def test_rotation_follows_the_top_of_the_picture(
    media: dict[str, Path], name: str, ffprobe_rotation: int, rotation: int
) -> None:
    (side_data,) = probe_json(media[name])["streams"][0]["side_data_list"]
    assert side_data["rotation"] == ffprobe_rotation
    record = _probe(media[name])
    assert (record.rotation, record.streams[0].rotation) == (rotation, rotation)


def test_degenerate_display_matrix_is_no_rotation(media: dict[str, Path]) -> None:
    (side_data,) = probe_json(media["zero_matrix.mov"])["streams"][0]["side_data_list"]
    assert side_data["rotation"] == -(2**63)  # ffprobe's NaN
    record = _probe(media["zero_matrix.mov"])
    assert (record.rotation, record.streams[0].rotation) == (0, 0)
    doc = probe_json(media["zero_matrix.mov"])
    del doc["streams"][0]["side_data_list"][0]["displaymatrix"]
    assert normalise_probe(doc, size_bytes=10**6).rotation == 0  # the angle alone: absurd


def test_unreadable_display_matrix_falls_back_to_ffprobe_rotation(
    media: dict[str, Path],
) -> None:
    doc = probe_json(media["mirror_left_right.mov"])
    size = media["mirror_left_right.mov"].stat().st_size
    for text in (None, "junk", "\n00000000: 1 2\n"):
        variant = copy.deepcopy(doc)
        variant["streams"][0]["side_data_list"][0]["displaymatrix"] = text
        assert normalise_probe(variant, size_bytes=size).rotation == 180, text


# --- Matroska statistics tags --------------------------------------------------------------


@pytest.mark.parametrize("suffix", ["", "-eng"])
def test_matroska_statistics_tags_give_bit_rate_and_duration(
    media: dict[str, Path], tmp_path: Path, suffix: str
) -> None:
    tagged = tmp_path / "tagged.mkv"
    # What mkvmerge writes (with "-eng" before v25): no bit_rate field for ffprobe to show.
    _ffmpeg("-i", media["tenbit.mkv"], "-c", "copy",
            "-metadata:s:v:0", f"BPS{suffix}=301234",
            "-metadata:s:v:0", f"NUMBER_OF_FRAMES{suffix}=25", tagged)  # fmt: skip
    doc = probe_json(tagged)
    assert "bit_rate" not in doc["streams"][0]
    if suffix:
        # Only the language-tagged DURATION, as old mkvmerge files have it.
        tags = doc["streams"][0]["tags"]
        tags["DURATION-eng"] = tags.pop("DURATION")
    (video,) = normalise_probe(doc, size_bytes=tagged.stat().st_size).streams
    assert video.bit_rate == 301234
    assert video.duration_s == pytest.approx(1.0, abs=0.01)


# --- ASF and MXF cut short, AVIF ------------------------------------------------------------


def _piped(*args: str) -> bytes:
    """ffmpeg output written to a pipe: the muxer cannot go back to fill in sizes."""
    cmd = ["ffmpeg", "-nostdin", "-hide_banner", "-v", "error", *args, "-"]
    return subprocess.run(cmd, capture_output=True, check=True).stdout


def _need(media: dict[str, Path], name: str) -> bytes:
    if name not in media:
        pytest.skip(f"this ffmpeg cannot make {name}")
    return media[name].read_bytes()


@pytest.mark.parametrize("percent", [50, 97])
def test_cut_asf_is_truncated_although_ffprobe_reads_it(
    media: dict[str, Path], percent: int
) -> None:
    full = _need(media, "clip.wmv")
    path = media[f"cut{percent}.wmv"]
    # ffprobe takes the duration from the header: the cut file probes "fine".
    assert probe_json(path)["streams"][0]["codec_name"] == "wmv2"
    with pytest.raises(MediaRejected) as info:
        _probe(path)
    data_end = full.index(ASF_SIMPLE_INDEX) if ASF_SIMPLE_INDEX in full else len(full)
    assert info.value.error_class == "corrupt_media"
    assert info.value.reason == (
        f"truncated file: ASF 'Data' object needs {data_end:,} bytes, object holds "
        f"{path.stat().st_size:,}"
    )


def test_intact_piped_and_padded_asf_are_not_truncated(media: dict[str, Path]) -> None:
    full = _need(media, "clip.wmv")
    assert asf_truncation(bytes_reader(full), len(full)) is None
    padded = full + b"\0" * 100  # appended junk ends the walk, proves nothing
    assert asf_truncation(bytes_reader(padded), len(padded)) is None
    # Piped: a broadcast file (sizes not filled in), cut or not.
    piped = _piped(*CLIP, "-c:v", "wmv2", "-f", "asf")
    for data in (piped, piped[: len(piped) // 2]):
        assert asf_truncation(bytes_reader(data), len(data)) is None
    head = full[:300]  # inside the Header object
    assert asf_truncation(bytes_reader(head), len(head)) == (
        f"truncated file: ASF 'Header' object needs {full.index(ASF_DATA):,} bytes, object "
        "holds 300"
    )
    assert truncation_reason(bytes_reader(head), 300, head[:64]) is not None


@pytest.mark.parametrize("percent", [50, 97])
def test_cut_mxf_is_truncated_although_ffprobe_reports_full_duration(
    media: dict[str, Path], percent: int
) -> None:
    full = _need(media, "clip.mxf")
    path = media[f"cut{percent}.mxf"]
    assert float(probe_json(path)["format"]["duration"]) == pytest.approx(2.0, abs=0.05)
    with pytest.raises(MediaRejected) as info:
        _probe(path)
    assert info.value.error_class == "corrupt_media"
    footer = full.rindex(MXF_FOOTER_PARTITION)
    assert info.value.reason == (
        f"truncated file: MXF header partition puts the footer partition at byte "
        f"{footer:,}, object holds {path.stat().st_size:,}"
    )


def test_intact_and_piped_mxf_are_not_truncated(media: dict[str, Path]) -> None:
    full = _need(media, "clip.mxf")
    assert mxf_truncation(bytes_reader(full), len(full)) is None
    assert _probe(media["clip.mxf"]).duration_s == pytest.approx(2.0, abs=0.05)
    # Piped: the header partition stays open with no footer offset; proves nothing.
    piped = _piped(*CLIP, "-c:v", "mpeg2video", "-f", "mxf")
    for data in (piped, piped[: len(piped) // 2]):
        assert mxf_truncation(bytes_reader(data), len(data)) is None


def test_avif_image_is_a_still_not_a_video(media: dict[str, Path]) -> None:
    _need(media, "still.avif")
    video = probe_json(media["still.avif"])["streams"][0]
    assert (video["codec_name"], video["nb_frames"], video.get("duration")) == ("av1", "1", None)
    with pytest.raises(MediaRejected) as info:
        _probe(media["still.avif"])
    assert info.value.error_class == "unsupported_media"
    assert info.value.reason == "still image (av1), not a video"
    # One frame that lasts a frame's time is a (very short) video, whatever the codec.
    assert _probe(media["one_frame.mp4"]).duration_s == pytest.approx(0.04)


def test_animated_webp_is_not_called_a_still(media: dict[str, Path]) -> None:
    anim, still = _need(media, "anim.webp"), _need(media, "still.webp")
    assert anim[12:16] == b"VP8X" and still[12:16] == b"VP8 "
    assert webp_is_animated(bytes_reader(anim)) and not webp_is_animated(bytes_reader(still))
    # The extended header alone (alpha, EXIF, ICC) is not an animation: only its flag is.
    flags = anim[20] & ~0x02
    assert not webp_is_animated(bytes_reader(anim[:20] + bytes([flags]) + anim[21:]))
    (video,) = probe_json(media["anim.webp"])["streams"]
    assert (video["codec_name"], video["width"], video["height"]) == ("webp", 0, 0)
    with pytest.raises(MediaRejected) as info:
        _probe(media["anim.webp"])
    assert (info.value.error_class, info.value.reason) == (
        "unsupported_media",
        "unsupported video codec: animated WebP, which this ffprobe cannot decode",
    )
    with pytest.raises(MediaRejected) as info:
        _probe(media["still.webp"])
    assert info.value.reason == "still image (webp), not a video"


# --- end to end: rows against ffprobe ------------------------------------------------------


def _fps(rate: str) -> float | None:
    num, _, den = rate.partition("/")
    return float(Fraction(int(num), int(den))) if int(den or 0) and int(num) else None


FAILED = {
    "audio_only.mp4": "[unsupported_media] no video stream: audio-only file (aac, 1 audio stream)",
    "audio_subtitles.mkv": "[unsupported_media] no video stream: audio-only file (aac, 1 audio "
    "stream, 1 subtitle stream)",
    "jpeg_as.mp4": "[unsupported_media] still image (mjpeg), not a video",
    "png_as.mp4": "[unsupported_media] still image (png), not a video",
    "still.avif": "[unsupported_media] still image (av1), not a video",
    "anim.webp": "[unsupported_media] unsupported video codec: animated WebP, which this "
    "ffprobe cannot decode",
    "still.webp": "[unsupported_media] still image (webp), not a video",
    "cut50.wmv": "[corrupt_media] truncated file: ASF 'Data' object needs …",
    "cut97.wmv": "[corrupt_media] truncated file: ASF 'Data' object needs …",
    "cut50.mxf": "[corrupt_media] truncated file: MXF header partition puts the footer …",
    "cut97.mxf": "[corrupt_media] truncated file: MXF header partition puts the footer …",
}

# Spelled out (not derived from ffprobe) where the shape is the point of the case.
EXPECTED = {
    "odd_444.mp4": {"width": 321, "height": 241, "pix_fmt": "yuv444p"},
    "tenbit.mkv": {"pix_fmt": "yuv420p10le"},
    "two_video.mkv": {"n_video_streams": 2, "width": 160, "fps": 25.0},
    "video_subtitles.mkv": {"n_subtitle_streams": 1},
    "sar_4_3.mp4": {"width": 160, "height": 120},  # coded size; the SAR is not in the record
    "vfr.mp4": {"fps": pytest.approx(60 / 5.933, abs=0.01)},
    "one_frame.mp4": {"duration_s": pytest.approx(0.04)},  # one H.264 frame is still a video
    "rotate_tag_90.mov": {"rotation": 270},
    "mirror_left_right.mov": {"rotation": 0},
    "zero_matrix.mov": {"rotation": 0},
    "mpeg1.mp4": {"video_codec": "mpeg1video"},
}


def test_ingest_rows_match_ffprobe(media: dict[str, Path], tmp_path: Path, home: Path) -> None:
    folder = tmp_path / "uploads"
    folder.mkdir()
    for name, path in media.items():
        (folder / name).write_bytes(path.read_bytes())
    done = run_edvmp("ingest", str(folder), env={**os.environ, "EDVMP_HOME": str(home)})
    assert done.returncode == 1, done.stdout + done.stderr
    assert "Traceback" not in done.stderr and "internal error" not in done.stderr
    expected_failures = {k: v for k, v in FAILED.items() if k in media}
    good = sorted(set(media) - set(FAILED))
    assert (
        f"processed {len(media)}: succeeded {len(good)}, failed {len(expected_failures)}"
        in done.stdout
    )
    failed = dict(
        line.strip().split(": ", 1)
        for line in done.stdout.split("failed:\n", 1)[1].splitlines()
        if line.startswith("  ")
    )
    assert sorted(failed) == sorted(expected_failures)
    for name, reason in expected_failures.items():
        assert failed[name].startswith(reason.rstrip("…")), name

    columns, rows = catalog_at(home).query("SELECT * FROM videos ORDER BY object_key")
    by_key = {r["object_key"]: r for r in (dict(zip(columns, row, strict=True)) for row in rows)}
    assert sorted(by_key) == good
    for name in good:
        row, doc = by_key[name], probe_json(folder / name)
        fmt, streams = doc["format"], doc["streams"]
        kinds = [s["codec_type"] for s in streams if not s["disposition"].get("attached_pic")]
        video = next(s for s in streams if s["codec_type"] == "video")
        audio = next((s for s in streams if s["codec_type"] == "audio"), None)
        expected = {
            "format_name": fmt["format_name"],
            "duration_s": pytest.approx(float(fmt["duration"])),
            "bit_rate": int(fmt["bit_rate"]),
            "video_codec": video["codec_name"],
            "width": video["width"],
            "height": video["height"],
            "fps": pytest.approx(_fps(video["avg_frame_rate"])),
            "pix_fmt": video["pix_fmt"],
            "audio_codec": audio and audio["codec_name"],
            "audio_channels": audio and audio["channels"],
            "sample_rate_hz": audio and int(audio["sample_rate"]),
            "n_video_streams": kinds.count("video"),
            "n_audio_streams": kinds.count("audio"),
            "n_subtitle_streams": kinds.count("subtitle"),
            "probe_score": fmt["probe_score"],
        }
        expected.update(EXPECTED.get(name, {}))
        actual = {k: row[k] for k in expected}
        assert actual == expected, name
        assert json.loads(row["tags_json"]) == fmt.get("tags", {}), name

    columns, rows = catalog_at(home).query(
        "SELECT object_key, stream_index, codec_type, codec_name, profile, bit_rate, duration_s,"
        " width, height, pix_fmt, bits_per_raw_sample, channels, channel_layout, sample_rate_hz,"
        " language FROM streams ORDER BY object_key, stream_index"
    )
    streams_of: dict[str, list[tuple[Any, ...]]] = {}
    for row in rows:
        streams_of.setdefault(row[0], []).append(tuple(row[1:]))
    for name in good:
        expected_streams = []
        for st in probe_json(folder / name)["streams"]:
            tags = st.get("tags", {})
            video, audio = st["codec_type"] == "video", st["codec_type"] == "audio"
            bit_rate = int(st["bit_rate"]) if "bit_rate" in st else None
            if st["codec_name"] == "mpeg1video" and bit_rate == 0x3FFFF * 400:
                bit_rate = None  # "variable", not 104.9 Mb/s
            duration = st.get("duration") or tags.get("DURATION")
            if duration and ":" in duration:
                h, m, sec = duration.split(":")
                duration = int(h) * 3600 + int(m) * 60 + float(sec)
            expected_streams.append(
                (
                    st["index"], st["codec_type"], st.get("codec_name"), st.get("profile"),
                    bit_rate, pytest.approx(float(duration)) if duration else None,
                    st.get("width") if video else None, st.get("height") if video else None,
                    st.get("pix_fmt") if video else None,
                    int(st["bits_per_raw_sample"]) if "bits_per_raw_sample" in st else None,
                    st.get("channels") if audio else None,
                    st.get("channel_layout") if audio else None,
                    int(st["sample_rate"]) if audio else None, tags.get("language"),
                )
            )  # fmt: skip
        assert streams_of[name] == expected_streams, name


def test_bucket_ingest_reads_asf_and_mxf_structures_through_presigned_urls(
    s3_home: Path, s3_client: BaseClient, s3_bucket: str, media: dict[str, Path]
) -> None:
    # Past the leading bytes the ASF objects are read with ranged GETs of the URL.
    names = ["clip.wmv", "cut50.wmv", "clip.mxf", "cut97.mxf", "anim.webp"]
    for name in names:
        s3_client.put_object(Bucket=s3_bucket, Key=name, Body=_need(media, name))
    report = ingest(f"s3://{s3_bucket}")
    outcome = {
        report.versions[pk].object_key: (state.status, state.error_class, state.error or "")
        for pk, state in report.states.items()
    }
    assert outcome["clip.wmv"][:2] == outcome["clip.mxf"][:2] == ("SUCCEEDED", None)
    assert outcome["cut50.wmv"][2].startswith("truncated file: ASF 'Data' object needs")
    assert outcome["cut97.mxf"][2].startswith("truncated file: MXF header partition")
    assert outcome["anim.webp"][:2] == ("FAILED", "unsupported_media")
