"""The analysis pass: pure parsers on captured ffmpeg 5.1 output, then real media of known truth.

Every file is generated with ffmpeg's lavfi sources (tiny: 160x120, at most 3 s) so the
expected values are known by construction:

* loudness: ``aevalsrc=A*sin(2*PI*1000*t)`` is a 1 kHz sine of peak amplitude ``A``
  (relative to full scale), so its RMS is ``20*log10(A) - 3.01`` dBFS. BS.1770 loudness of
  a mono channel is ``-0.691 + 10*log10(mean square of the K-weighted signal)``; the
  K-weighting filter's gain at 1 kHz is +0.691 dB (that is what the constant is chosen to
  cancel), so a 1 kHz mono sine reads its RMS in dBFS: ``A = 0.1`` (-20 dBFS peak) gives
  -23.01 LUFS, ``A = 0.05`` gives -29.03 LUFS. Audio is stored as PCM so no codec moves it.
* black, freeze, cuts: concatenations of sources whose boundaries are at whole seconds.
* HDR: the colour tags are written by the encoder (libx265) and read back by ffprobe.
* interlacing: the ``interlace`` filter weaves two progressive frames into one frame of
  each field order, encoded with ``+ilme+ildct``.
"""

from __future__ import annotations

import json
import math
import os
import random
import shutil
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from edvmp_pipeline.adapters.analyzer import analysis_command, analyze, probe_streams
from edvmp_pipeline.adapters.prober import FfprobeProber
from edvmp_pipeline.domain.errors import MediaRejected, ProbeTimeout
from edvmp_pipeline.domain.fingerprints import best_alignment, near_duplicate_pairs, similarity
from edvmp_pipeline.domain.media_analysis import (
    AnalysisParams,
    Interlace,
    Segment,
    build_record,
    count_decode_errors,
    edge_black,
    ffmpeg_error_line,
    filter_graph,
    hdr_class,
    hdr_class_of_stream,
    interlace_verdict,
    parse_black,
    parse_ebur128,
    parse_freeze,
    parse_idet,
    parse_scene_cuts,
    pick_streams,
)

# --------------------------------------------------------------------------- captured output
# Lines captured from this host's ffmpeg 5.1 (Debian 12) running the analysis graph on a
# 3 s file (1 s black, testsrc, mandelbrot; AAC sine), arranged into one log: the first
# ebur128 summary is the empty one ffmpeg printed when it configured the graph a first
# time; the ``ebur128@a2`` block is the summary of a silent stream from the same build.

EBUR128_TWICE = """\
[ebur128@a1 @ 0x5557069ef000] Summary:

  Integrated loudness:
    I:         -70.0 LUFS
    Threshold:   0.0 LUFS

  Loudness range:
    LRA:         0.0 LU
    Threshold:   0.0 LUFS
    LRA low:     0.0 LUFS
    LRA high:    0.0 LUFS

  True peak:
    Peak:       -inf dBFS
[idet@video @ 0x5557069ef580] Repeated Fields: Neither:     0 Top:     0 Bottom:     0
[idet@video @ 0x5557069ef580] Single frame detection: TFF:     0 BFF:     0 Progressive:     0 Undetermined:     0
[idet@video @ 0x5557069ef580] Multi frame detection: TFF:     0 BFF:     0 Progressive:     0 Undetermined:     0
Stream mapping:
  Stream #0:0 (h264) -> split:default
[freezedetect @ 0x555706e034c0] lavfi.freezedetect.freeze_start: 0
[blackdetect @ 0x555706e01780] black_start:0 black_end:1 black_duration:1
[freezedetect @ 0x555706e034c0] lavfi.freezedetect.freeze_duration: 1
[freezedetect @ 0x555706e034c0] lavfi.freezedetect.freeze_end: 1
[scdet @ 0x555706e03c80] lavfi.scd.score: 42.698, lavfi.scd.time: 1
[scdet @ 0x555706e03c80] lavfi.scd.score: 25.878, lavfi.scd.time: 2
[freezedetect @ 0x555706e034c0] lavfi.freezedetect.freeze_start: 2.2
video:35kB audio:282kB subtitle:0kB other streams:0kB global headers:0kB muxing overhead: unknown
[ebur128@a1 @ 0x555706e07880] Summary:

  Integrated loudness:
    I:         -21.1 LUFS
    Threshold: -31.1 LUFS

  Loudness range:
    LRA:        20.0 LU
    Threshold: -41.1 LUFS
    LRA low:   -41.1 LUFS
    LRA high:  -21.1 LUFS

  True peak:
    Peak:      -17.3 dBFS
[ebur128@a2 @ 0x555706e07990] Summary:

  Integrated loudness:
    I:         -70.0 LUFS
    Threshold: -80.0 LUFS

  Loudness range:
    LRA:         0.0 LU
    Threshold: -80.0 LUFS
    LRA low:     0.0 LUFS
    LRA high:    0.0 LUFS

  True peak:
    Peak:       -inf dBFS
[idet@video @ 0x555706e04200] Repeated Fields: Neither:    75 Top:     0 Bottom:     0
[idet@video @ 0x555706e04200] Single frame detection: TFF:     0 BFF:     0 Progressive:     4 Undetermined:    71
[idet@video @ 0x555706e04200] Multi frame detection: TFF:     0 BFF:     0 Progressive:    51 Undetermined:    24
"""  # noqa: E501  (verbatim ffmpeg lines)


def test_ebur128_summary_last_per_instance_wins_and_silence_has_no_peak() -> None:
    assert parse_ebur128(EBUR128_TWICE) == {
        "ebur128@a1": (-21.1, 20.0, -17.3),
        "ebur128@a2": (-70.0, 0.0, None),
    }


def test_black_freeze_cut_and_idet_lines() -> None:
    assert parse_black(EBUR128_TWICE) == (Segment(0.0, 1.0, 1.0),)
    # The second freeze runs to the end of the file: closed at the duration.
    assert parse_freeze(EBUR128_TWICE, 3.2) == (Segment(0.0, 1.0, 1.0), Segment(2.2, 3.2, 1.0))
    assert parse_freeze(EBUR128_TWICE) == (Segment(0.0, 1.0, 1.0),)
    assert parse_scene_cuts(EBUR128_TWICE) == (1.0, 2.0)
    assert parse_idet(EBUR128_TWICE) == Interlace("progressive", 0, 0, 51, 24)
    assert parse_idet("") is None
    line = "[blackdetect @ 0x1] black_start:2.2 black_end:3.16 black_duration:0.96"
    assert parse_black(line) == (Segment(2.2, 3.16, 0.96),)


def test_interlace_verdict_is_the_majority_of_decided_frames() -> None:
    assert interlace_verdict(50, 0, 0, 0) == "tff"
    assert interlace_verdict(0, 40, 3, 10) == "bff"
    assert interlace_verdict(0, 0, 51, 24) == "progressive"
    assert interlace_verdict(0, 0, 0, 75) == "undetermined"
    assert interlace_verdict(10, 10, 0, 0) == "undetermined"
    assert interlace_verdict(41, 25, 9, 0) == "undetermined"  # idet guessing on testsrc2


def test_hdr_class_from_transfer_and_side_data() -> None:
    assert hdr_class("smpte2084", "bt2020") == "HDR10"
    assert hdr_class("arib-std-b67", "bt2020") == "HLG"
    assert hdr_class("bt709", "bt709") == "SDR"
    assert hdr_class(None) == "SDR"
    assert hdr_class("smpte2084", "bt2020", ["DOVI configuration record"]) == "DolbyVision"
    assert hdr_class(None, None, codec_tag="dvh1") == "DolbyVision"
    # A Dolby Vision profile 8.1 stream as ffprobe prints it (HDR10-compatible base layer).
    stream = {
        "index": 0,
        "codec_type": "video",
        "codec_tag_string": "hvc1",
        "color_transfer": "smpte2084",
        "color_primaries": "bt2020",
        "side_data_list": [
            {"side_data_type": "DOVI configuration record", "dv_profile": 8},
            {"side_data_type": "Mastering display metadata"},
        ],
    }
    assert hdr_class_of_stream(stream) == "DolbyVision"


def test_edge_black_and_graph_text() -> None:
    segs = (Segment(0.0, 1.0, 1.0), Segment(2.2, 3.16, 0.96))
    assert edge_black(segs, 3.2) == (1.0, 1.0)
    assert edge_black(segs[1:], 10.0) == (0.0, 0.0)
    graph, outs, fp, images = filter_graph(0, [1, 2], AnalysisParams())
    assert outs == ["vo", "ao1", "ao2"] and fp == "fp" and images == {}
    for part in (
        "blackdetect=d=0.1",
        "freezedetect=n=-60dB",
        "scdet=threshold=10",
        "idet@video=intl_thres=1.2",
        "fps=1:eof_action=pass,scale=9:8",
        "[0:2]ebur128@a2=peak=true",
    ):
        assert part in graph
    assert filter_graph(None, [0], AnalysisParams())[1:] == (["ao0"], None, {})
    # Images are more copies of the same decoded video: still one pass.
    with_images = filter_graph(
        0, [], AnalysisParams(), images=("contact_sheet", "poster"), duration_s=8.0
    )
    assert "split=4[vd][vf][vi_poster][vi_contact_sheet]" in with_images.graph
    assert "select='gte(t,2)'" in with_images.graph and "tile=4x3" in with_images.graph
    assert with_images.image_outputs == {
        "poster": "img_poster",
        "contact_sheet": "img_contact_sheet",
    }
    # Audio-only media has no pictures to make.
    assert filter_graph(None, [0], AnalysisParams(), images=("poster",)).image_outputs == {}


def test_error_line_is_one_line_without_the_path() -> None:
    stderr = (
        "[mov,mp4,m4a,3gp,3g2,mj2 @ 0x55b3db5ab880] moov atom not found\n"
        "file:/tmp/x/t.mp4: Invalid data found when processing input\n"
    )
    assert ffmpeg_error_line(stderr) == "Invalid data found when processing input"


def test_build_record_without_video() -> None:
    rec = build_record(EBUR128_TWICE, video=None, audio_indices=[1], duration_s=3.0,
                       fingerprint=None)  # fmt: skip
    assert rec.video_stream_index is None and rec.interlace is None and rec.hdr_class is None
    assert rec.integrated_lufs == -21.1
    assert rec.as_row()["loudness"][0]["true_peak_dbtp"] == -17.3


# --------------------------------------------------------------------------- generated media

SIZE = "160x120"
X264 = ["-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p"]
PCM = ["-c:a", "pcm_s16le"]


def _tone(amplitude: float, seconds: float = 3.0) -> str:
    return f"aevalsrc={amplitude}*sin(2*PI*1000*t):s=48000:d={seconds}"


def _has_encoder(name: str) -> bool:
    out = subprocess.run(["ffmpeg", "-hide_banner", "-encoders"], capture_output=True,
                         text=True).stdout  # fmt: skip
    return any(line.split()[1:2] == [name] for line in out.splitlines())


# name → ffmpeg arguments after "-y" (output path appended).
RECIPES: dict[str, list[str]] = {
    # Video plus two PCM tones: -20 dBFS and -26 dBFS peak.
    "tone.mkv": ["-f", "lavfi", "-i", f"testsrc2=size={SIZE}:rate=25:duration=3",
                 "-f", "lavfi", "-i", _tone(0.1), "-f", "lavfi", "-i", _tone(0.05),
                 "-map", "0", "-map", "1", "-map", "2", *X264, *PCM],
    "tone.wav": ["-f", "lavfi", "-i", _tone(0.1), *PCM],
    # 1 s black, then 2 s of testsrc; 0.6 s of black at the end.
    "black.mp4": ["-f", "lavfi", "-i", f"color=black:size={SIZE}:rate=25:duration=1",
                  "-f", "lavfi", "-i", f"testsrc2=size={SIZE}:rate=25:duration=1.4",
                  "-f", "lavfi", "-i", f"color=black:size={SIZE}:rate=25:duration=0.6",
                  "-filter_complex", "[0:v][1:v][2:v]concat=n=3:v=1:a=0[v]", "-map", "[v]",
                  *X264],
    # 1 s of motion, then its last frame held for 1.2 s, then motion again for 0.8 s.
    "freeze.mp4": ["-f", "lavfi", "-i", f"testsrc2=size={SIZE}:rate=25:duration=1",
                   "-f", "lavfi", "-i", f"mandelbrot=size={SIZE}:rate=25",
                   "-filter_complex",
                   "[0:v]tpad=stop_mode=clone:stop_duration=1.2[f];"
                   "[1:v]trim=duration=0.8,setpts=PTS-STARTPTS[m];[f][m]concat=n=2:v=1:a=0[v]",
                   "-map", "[v]", *X264],
    # Three different sources of 1 s: cuts at 1 s and 2 s.
    "cuts.mp4": ["-f", "lavfi", "-i", f"testsrc=size={SIZE}:rate=25:duration=1",
                 "-f", "lavfi", "-i", f"mandelbrot=size={SIZE}:rate=25",
                 "-f", "lavfi", "-i", f"smptebars=size={SIZE}:rate=25:duration=1",
                 "-filter_complex",
                 "[1:v]trim=duration=1,setpts=PTS-STARTPTS[m];[0:v][m][2:v]concat=n=3:v=1:a=0[v]",
                 "-map", "[v]", *X264],
    "tff.mp4": ["-f", "lavfi", "-i", f"testsrc2=size={SIZE}:rate=50:duration=2",
                "-vf", "interlace=scan=tff", *X264, "-flags", "+ilme+ildct",
                "-x264opts", "tff=1"],
    "bff.mp4": ["-f", "lavfi", "-i", f"testsrc2=size={SIZE}:rate=50:duration=2",
                "-vf", "interlace=scan=bff", *X264, "-flags", "+ilme+ildct",
                "-x264opts", "bff=1"],
    # One frame only.
    "oneframe.mp4": ["-f", "lavfi", "-i", f"testsrc2=size={SIZE}:rate=25", "-frames:v", "1",
                     *X264],
    # The same source at two sizes and bit rates, one also trimmed by 0.5 s at the start.
    "same_320.mp4": ["-f", "lavfi", "-i", "testsrc2=size=320x240:rate=25:duration=3",
                     *X264, "-crf", "18"],
    "same_160.mp4": ["-f", "lavfi", "-i", "testsrc2=size=320x240:rate=25:duration=3",
                     "-vf", "scale=160:120", *X264, "-crf", "40", "-b:v", "60k"],
    "same_trim.mp4": ["-f", "lavfi", "-i", "testsrc2=size=320x240:rate=25:duration=3",
                      "-vf", "trim=start=0.5,setpts=PTS-STARTPTS,scale=240:180", *X264,
                      "-crf", "30"],
    "other.mp4": ["-f", "lavfi", "-i", "mandelbrot=size=320x240:rate=25", "-t", "3", *X264],
    "other2.mp4": ["-f", "lavfi", "-i", "cellauto=size=320x240:rate=25:rule=110", "-t", "3",
                   *X264],
}  # fmt: skip
HDR = {"hdr10.mp4": "smpte2084", "hlg.mp4": "arib-std-b67"}


def _make(folder: Path, name: str, args: list[str]) -> None:
    cmd = ["ffmpeg", "-nostdin", "-hide_banner", "-v", "error", "-y", *args, str(folder / name)]
    done = subprocess.run(cmd, capture_output=True, text=True)
    assert done.returncode == 0, f"{' '.join(cmd)}\n{done.stderr}"


@pytest.fixture(scope="module")
def media(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    if shutil.which("ffmpeg") is None or shutil.which("ffprobe") is None:
        pytest.skip("ffmpeg/ffprobe not installed")
    folder = tmp_path_factory.mktemp("analysis_media")
    recipes = dict(RECIPES)
    if _has_encoder("libx265"):
        for name, trc in HDR.items():
            recipes[name] = [
                "-f", "lavfi", "-i", f"testsrc2=size={SIZE}:rate=25:duration=1",
                "-c:v", "libx265", "-preset", "ultrafast", "-x265-params", "log-level=error",
                "-pix_fmt", "yuv420p10le", "-color_trc", trc, "-color_primaries", "bt2020",
                "-colorspace", "bt2020nc",
            ]  # fmt: skip
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 2) as pool:
        list(pool.map(lambda kv: _make(folder, *kv), recipes.items()))
    (folder / "random.mp4").write_bytes(random.Random(0).randbytes(50_000))
    data = (folder / "same_320.mp4").read_bytes()
    (folder / "cut.mp4").write_bytes(data[: len(data) // 3])
    return {p.name: p for p in folder.iterdir()}


def _loudness_of_sine(amplitude: float) -> float:
    """LUFS of a mono 1 kHz sine of this peak amplitude (see the module docstring)."""
    return 20 * math.log10(amplitude) - 10 * math.log10(2)


def test_tone_loudness_per_audio_stream(media: dict[str, Path]) -> None:
    rec = analyze(str(media["tone.mkv"]), timeout_s=60)
    assert [x.stream_index for x in rec.loudness] == [1, 2]
    first, second = rec.loudness
    assert first.integrated_lufs == pytest.approx(_loudness_of_sine(0.1), abs=0.5)  # -23.01
    assert second.integrated_lufs == pytest.approx(_loudness_of_sine(0.05), abs=0.5)  # -29.03
    assert first.true_peak_dbtp == pytest.approx(-20.0, abs=0.5)
    assert second.true_peak_dbtp == pytest.approx(-26.0, abs=0.5)
    assert first.loudness_range_lu is not None and first.loudness_range_lu >= 0
    assert rec.hdr_class == "SDR" and rec.black_segments == ()


def test_audio_only_file_has_loudness_and_no_video_fields(media: dict[str, Path]) -> None:
    rec = analyze(str(media["tone.wav"]), timeout_s=60)
    assert rec.integrated_lufs == pytest.approx(-23.01, abs=0.5)
    assert rec.video_stream_index is None
    assert rec.fingerprint is None and rec.interlace is None and rec.leading_black_s is None


def test_leading_and_trailing_black(media: dict[str, Path]) -> None:
    rec = analyze(str(media["black.mp4"]), timeout_s=60)
    assert rec.loudness == ()
    assert rec.leading_black_s == pytest.approx(1.0, abs=0.1)
    assert rec.trailing_black_s == pytest.approx(0.6, abs=0.1)
    assert len(rec.black_segments) == 2
    start, end, duration = rec.black_segments[0]
    assert start == pytest.approx(0.0, abs=0.05) and end == pytest.approx(1.0, abs=0.1)
    assert duration == pytest.approx(1.0, abs=0.1)


def test_freeze_is_found_with_its_duration(media: dict[str, Path]) -> None:
    rec = analyze(str(media["freeze.mp4"]), timeout_s=60)
    assert len(rec.freeze_segments) == 1
    start, end, duration = rec.freeze_segments[0]
    # The held frame is the one shown from 0.96 s; freezedetect needs a frame to compare.
    assert start == pytest.approx(1.0, abs=0.15)
    assert end == pytest.approx(2.2, abs=0.1)
    assert duration >= 1.0


def test_known_cut_points(media: dict[str, Path]) -> None:
    rec = analyze(str(media["cuts.mp4"]), timeout_s=60)
    assert rec.scene_cut_count == 2
    assert rec.scene_cuts == pytest.approx((1.0, 2.0), abs=0.05)
    assert rec.leading_black_s == 0.0 and rec.freeze_segments[0].start_s >= 1.9  # bars hold


@pytest.mark.parametrize(("name", "expected"), [("hdr10.mp4", "HDR10"), ("hlg.mp4", "HLG")])
def test_hdr_tags(media: dict[str, Path], name: str, expected: str) -> None:
    if name not in media:
        pytest.skip("this ffmpeg has no libx265")
    probe = probe_streams(str(media[name]), timeout_s=30)
    video = probe["streams"][0]
    assert video["color_primaries"] == "bt2020"
    assert video["color_transfer"] == HDR[name]
    rec = analyze(str(media[name]), timeout_s=60, streams=probe)
    assert rec.hdr_class == expected


@pytest.mark.parametrize("order", ["tff", "bff"])
def test_interlaced_field_order(media: dict[str, Path], order: str) -> None:
    rec = analyze(str(media[f"{order}.mp4"]), timeout_s=60)
    assert rec.interlace is not None and rec.interlace.verdict == order
    assert getattr(rec.interlace, order) >= 45  # of 50 frames


@pytest.mark.parametrize("name", ["same_320.mp4", "cuts.mp4", "black.mp4", "freeze.mp4"])
def test_progressive_synthetic_video_is_not_called_interlaced(
    media: dict[str, Path], name: str
) -> None:
    rec = analyze(str(media[name]), timeout_s=60)
    assert rec.interlace is not None and rec.interlace.verdict == "progressive"


def test_a_single_frame_video(media: dict[str, Path]) -> None:
    rec = analyze(str(media["oneframe.mp4"]), timeout_s=60)
    assert rec.fingerprint is not None and len(rec.fingerprint) == 1
    assert rec.scene_cut_count == 0 and rec.black_segments == ()
    assert rec.interlace is not None


FP = AnalysisParams(fingerprint_fps=4.0)  # 12 frames from 3 s


def test_same_source_at_two_sizes_is_a_near_duplicate_and_others_are_not(
    media: dict[str, Path],
) -> None:
    names = ["same_320.mp4", "same_160.mp4", "same_trim.mp4", "other.mp4", "other2.mp4"]
    fps = {}
    for name in names:
        fp = analyze(str(media[name]), timeout_s=60, params=FP).fingerprint
        assert fp is not None and fp.rate_hz == 4.0
        fps[name] = fp
    assert len(fps["same_320.mp4"]) == 12 and len(fps["same_trim.mp4"]) == 10
    assert similarity(fps["same_320.mp4"], fps["same_160.mp4"]) >= 0.9
    assert similarity(fps["same_320.mp4"], fps["same_trim.mp4"]) >= 0.85
    # 0.5 s trimmed at 4 fps: the trimmed copy's frame i is the original's frame i + 2.
    assert best_alignment(fps["same_trim.mp4"], fps["same_320.mp4"])[1] == 2
    assert similarity(fps["same_320.mp4"], fps["other.mp4"]) < 0.75
    assert similarity(fps["other.mp4"], fps["other2.mp4"]) < 0.75
    pairs = near_duplicate_pairs(fps, 0.85)
    assert {frozenset((a, b)) for a, b, _ in pairs} == {
        frozenset(("same_160.mp4", "same_320.mp4")),
        frozenset(("same_320.mp4", "same_trim.mp4")),
        frozenset(("same_160.mp4", "same_trim.mp4")),
    }


def test_streams_from_a_probe_are_used_as_given(media: dict[str, Path]) -> None:
    probe = probe_streams(str(media["cuts.mp4"]), timeout_s=30)
    cmd = analysis_command(str(media["cuts.mp4"]), probe, AnalysisParams())
    assert cmd.count("-i") == 1 and cmd[-1] == "pipe:1"
    assert cmd[cmd.index("-i") + 1].startswith("file:")
    as_json = json.loads(json.dumps(probe))
    assert analyze(str(media["cuts.mp4"]), timeout_s=60, streams=as_json).scene_cut_count == 2
    # A VideoRecord from the pipeline's own prober: its raw ffprobe JSON is reused.
    path = media["tone.mkv"]
    record = FfprobeProber().probe(str(path), size_bytes=path.stat().st_size)
    assert record.ffprobe_json is not None
    rec = analyze(str(path), timeout_s=60, streams=record)
    assert [x.stream_index for x in rec.loudness] == [1, 2]


@pytest.mark.parametrize("name", ["random.mp4", "cut.mp4"])
def test_corrupt_input_is_rejected_in_one_line(media: dict[str, Path], name: str) -> None:
    with pytest.raises(MediaRejected) as caught:
        analyze(str(media[name]), timeout_s=60)
    message = str(caught.value)
    assert "\n" not in message and "could not read the media" in message
    assert str(media[name]) not in message


def test_corrupt_input_rejected_by_ffmpeg_itself(media: dict[str, Path]) -> None:
    probe = probe_streams(str(media["cuts.mp4"]), timeout_s=30)
    with pytest.raises(MediaRejected, match=r"^ffmpeg could not read the media: ") as caught:
        analyze(str(media["random.mp4"]), timeout_s=60, streams=probe)
    assert caught.value.error_class == "corrupt_media"


def test_no_stream_to_analyse() -> None:
    with pytest.raises(MediaRejected, match="no video or audio") as caught:
        analyze("x.mp4", timeout_s=5, streams={"streams": [{"index": 0, "codec_type": "data"}]})
    assert caught.value.error_class == "unsupported_media"


def test_timeout_is_a_probe_timeout(tmp_path: Path) -> None:
    if shutil.which("ffmpeg") is None:
        pytest.skip("ffmpeg not installed")
    fifo = tmp_path / "stalled.mp4"
    os.mkfifo(fifo)  # nobody writes: ffmpeg blocks opening it until killed
    streams = {"streams": [{"index": 0, "codec_type": "video", "codec_name": "h264"}], "format": {}}
    with pytest.raises(ProbeTimeout, match=r"^analysis timeout: ffmpeg did not finish in 0.5 s$"):
        analyze(str(fifo), timeout_s=0.5, streams=streams)


def test_posters_and_contact_sheets_from_the_same_pass(
    media: dict[str, Path], tmp_path: Path
) -> None:
    for name in ("oneframe.mp4", "cuts.mp4"):
        out = tmp_path / name
        out.mkdir()
        rec = analyze(str(media[name]), timeout_s=60, image_dir=out,
                      images=("poster", "contact_sheet"))  # fmt: skip
        assert rec.poster == str(out / "poster.jpg"), name  # even a one-frame video has one
        assert rec.contact_sheet == str(out / "contact_sheet.jpg"), name
        for path in (rec.poster, rec.contact_sheet):
            assert Path(path).read_bytes()[:3] == b"\xff\xd8\xff"
    # Audio has no pictures: none are claimed.
    out = tmp_path / "wav"
    out.mkdir()
    rec = analyze(str(media["tone.wav"]), timeout_s=60, image_dir=out, images=("poster",))
    assert rec.poster is None and rec.contact_sheet is None and not list(out.iterdir())


def test_a_stream_without_a_decoder_is_left_out_and_ffmpeg_chatter_is_no_decode_error() -> None:
    probe = {"streams": [
        {"index": 0, "codec_type": "video", "codec_name": "h264"},
        {"index": 1, "codec_type": "audio"},  # an unknown codec id: ffprobe names none
        {"index": 2, "codec_type": "audio", "codec_name": "aac"},
    ]}  # fmt: skip
    video, audio = pick_streams(probe)
    assert video is not None and video["index"] == 0 and audio == [2]
    stderr = (
        "Input #0, mov,mp4,m4a,3gp,3g2,mj2, from 'file:corrupt_uploads/clip.mp4':\n"
        "    title           : Corrupt Cops: Invalid NAL\n"
        "[h264 @ 0x55d0c0a1b2c0] Invalid NAL unit size (1234 > 567).\n"
        "[h264 @ 0x55d0c0a1b2c0] error while decoding MB 3 4\n"
    )
    assert count_decode_errors(stderr) == 2
