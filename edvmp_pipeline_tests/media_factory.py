"""Generate a small corpus of real test media with ffmpeg's lavfi sources.

Every case is generated at test time (nothing binary is committed) and carries the exact
values it was generated with, so tests compare ffprobe's answer with what we asked for:

* good cases: ``expected`` holds :class:`~edvmp_pipeline.domain.records.VideoRecord` field
  values (``duration_s`` is nominal; compare it with a tolerance because AAC priming and
  container rounding move it by a few tens of milliseconds);
* bad cases: ``expected`` holds ``error_class`` and ``reason_contains`` (a substring of the
  :class:`~edvmp_pipeline.domain.errors.MediaRejected` reason).

Sizes are tiny (160x120, 1 s, ``-preset ultrafast``) so the whole corpus takes about a
second on two cores.
"""

from __future__ import annotations

import functools
import json
import random
import shutil
import struct
import subprocess
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, NamedTuple

MP4_FORMAT = "mov,mp4,m4a,3gp,3g2,mj2"
MKV_FORMAT = "matroska,webm"

# Video source shared by most cases: small, 1 s, deterministic.
W, H = 160, 120
SIZE = f"{W}x{H}"
X264 = ["-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p"]


class MediaCase(NamedTuple):
    """One generated file and what probing it must give."""

    path: Path
    expected: dict[str, Any]


class MediaCorpus(dict[str, MediaCase]):
    """name → :class:`MediaCase`, plus ``skipped``: name → why that case could not be made."""

    def __init__(self) -> None:
        super().__init__()
        self.skipped: dict[str, str] = {}


class CaseSkipped(Exception):
    """This ffmpeg build cannot produce the case (e.g. no libx265)."""


def ffmpeg_available() -> bool:
    """True when both ``ffmpeg`` and ``ffprobe`` are on PATH."""
    return shutil.which("ffmpeg") is not None and shutil.which("ffprobe") is not None


@functools.cache
def _encoders() -> frozenset[str]:
    out = subprocess.run(
        ["ffmpeg", "-hide_banner", "-encoders"], capture_output=True, text=True, check=True
    ).stdout
    names = set()
    for line in out.splitlines():
        parts = line.split()
        # Encoder lines look like " V....D libx264  description"; the flags column has a dot.
        if len(parts) >= 2 and "." in parts[0] and len(parts[0]) == 6:
            names.add(parts[1])
    return frozenset(names)


def _need(encoder: str) -> None:
    if encoder not in _encoders():
        raise CaseSkipped(f"this ffmpeg has no {encoder} encoder")


def _ffmpeg(*args: str | Path) -> None:
    cmd = ["ffmpeg", "-nostdin", "-hide_banner", "-v", "error", "-y", *map(str, args)]
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"ffmpeg failed ({done.returncode}): {' '.join(cmd)}\n{done.stderr}")


def _video(rate: str = "30", size: str = SIZE, duration: float = 1.0) -> list[str]:
    return ["-f", "lavfi", "-i", f"testsrc2=size={size}:rate={rate}:duration={duration}"]


def _tone(sample_rate: int = 48000, freq: int = 440, duration: float = 1.0) -> list[str]:
    src = f"sine=frequency={freq}:sample_rate={sample_rate}:duration={duration}"
    return ["-f", "lavfi", "-i", src]


def _good(
    *,
    format_name: str = MP4_FORMAT,
    video_codec: str = "h264",
    width: int = W,
    height: int = H,
    fps: float = 30.0,
    pix_fmt: str = "yuv420p",
    rotation: int = 0,
    audio_codec: str | None = "aac",
    audio_channels: int | None = 2,
    sample_rate_hz: int | None = 48000,
    n_video_streams: int = 1,
    n_audio_streams: int = 1,
    n_subtitle_streams: int = 0,
    duration_s: float = 1.0,
) -> dict[str, Any]:
    return {
        "format_name": format_name,
        "video_codec": video_codec,
        "width": width,
        "height": height,
        "fps": fps,
        "pix_fmt": pix_fmt,
        "rotation": rotation,
        "audio_codec": audio_codec,
        "audio_channels": audio_channels,
        "sample_rate_hz": sample_rate_hz,
        "n_video_streams": n_video_streams,
        "n_audio_streams": n_audio_streams,
        "n_subtitle_streams": n_subtitle_streams,
        "duration_s": duration_s,
    }


def _bad(error_class: str, reason_contains: str) -> dict[str, Any]:
    return {"error_class": error_class, "reason_contains": reason_contains}


def _write_srt(path: Path) -> Path:
    path.write_text(
        "1\n00:00:00,000 --> 00:00:00,500\nhello\n\n2\n00:00:00,500 --> 00:00:01,000\nworld\n",
        encoding="utf-8",
    )
    return path


# ---------------------------------------------------------------------------- good media


def make_h264_aac_mp4(d: Path) -> MediaCase:
    """H.264 + AAC stereo 48 kHz in MP4 (index at the end, as ffmpeg writes by default)."""
    p = d / "h264_aac.mp4"
    _ffmpeg(*_video(), *_tone(), *X264, "-c:a", "aac", "-ac", "2", "-b:a", "64k", p)
    return MediaCase(p, _good())


def make_video_only_mp4(d: Path) -> MediaCase:
    """H.264 without any audio stream."""
    p = d / "video_only.mp4"
    _ffmpeg(*_video(), *X264, p)
    return MediaCase(
        p, _good(audio_codec=None, audio_channels=None, sample_rate_hz=None, n_audio_streams=0)
    )


def make_two_audio_mp4(d: Path) -> MediaCase:
    """H.264 + AAC stereo 48 kHz (first) + AAC mono 44.1 kHz (second)."""
    p = d / "two_audio.mp4"
    _ffmpeg(
        *_video(), *_tone(48000), *_tone(44100, freq=880),
        "-map", "0:v", "-map", "1:a", "-map", "2:a", *X264,
        "-c:a", "aac", "-ac:a:0", "2", "-ac:a:1", "1", p,
    )  # fmt: skip
    return MediaCase(p, _good(n_audio_streams=2))


def make_subtitles_mp4(d: Path) -> MediaCase:
    """H.264 + AAC + one mov_text subtitle stream (from a tiny SRT)."""
    srt = _write_srt(d / "subs_mp4.srt")
    p = d / "subtitles.mp4"
    _ffmpeg(
        *_video(), *_tone(), "-i", srt, "-map", "0:v", "-map", "1:a", "-map", "2:s",
        *X264, "-c:a", "aac", "-ac", "2", "-c:s", "mov_text", p,
    )  # fmt: skip
    return MediaCase(p, _good(n_subtitle_streams=1))


def make_subtitles_mkv(d: Path) -> MediaCase:
    """H.264 + AAC stereo 44.1 kHz + two SubRip subtitle streams in MKV, 25 fps."""
    srt = _write_srt(d / "subs_mkv.srt")
    p = d / "subtitles.mkv"
    _ffmpeg(
        *_video(rate="25"), *_tone(44100), "-i", srt, "-i", srt,
        "-map", "0:v", "-map", "1:a", "-map", "2:s", "-map", "3:s",
        *X264, "-c:a", "aac", "-ac", "2", "-c:s", "srt", p,
    )  # fmt: skip
    return MediaCase(
        p,
        _good(format_name=MKV_FORMAT, fps=25.0, sample_rate_hz=44100, n_subtitle_streams=2),
    )


def make_rotated_mp4(d: Path) -> MediaCase:
    """A "portrait phone" clip: 160x120 coded frame shown rotated 90° clockwise.

    ffmpeg 5.1 has no ``-display_rotation`` (added in 6.0), and it drops the ``rotate``
    tag when encoding, so the tag is set on a stream copy. Beware: 5.1 turns
    ``rotate=N`` into a display matrix of N degrees *counter-clockwise* (checked by
    decoding with autorotate: rotate=90 put the top-left corner at the bottom-left), the
    opposite of the legacy tag's clockwise meaning. ``rotate=270`` therefore gives the
    matrix real phones write for a 90° clockwise turn (ffprobe ``rotation: -90``).
    """
    src = d / "rotated_src.mp4"
    _ffmpeg(*_video(), *_tone(), *X264, "-c:a", "aac", "-ac", "2", src)
    p = d / "rotated.mp4"
    _ffmpeg("-i", src, "-c", "copy", "-metadata:s:v:0", "rotate=270", p)
    src.unlink()
    return MediaCase(p, _good(rotation=90))


def make_hevc10_mp4(d: Path) -> MediaCase:
    """10-bit HEVC (libx265, yuv420p10le) + AAC in MP4."""
    _need("libx265")
    p = d / "hevc10.mp4"
    _ffmpeg(
        *_video(), *_tone(),
        "-c:v", "libx265", "-preset", "ultrafast", "-pix_fmt", "yuv420p10le",
        "-x265-params", "log-level=error", "-tag:v", "hvc1",
        "-c:a", "aac", "-ac", "2", p,
    )  # fmt: skip
    return MediaCase(p, _good(video_codec="hevc", pix_fmt="yuv420p10le"))


def make_vp9_opus_webm(d: Path) -> MediaCase:
    """VP9 + Opus stereo 48 kHz in WebM (no per-stream bit rates in Matroska)."""
    _need("libvpx-vp9")
    _need("libopus")
    p = d / "vp9_opus.webm"
    _ffmpeg(
        *_video(rate="24"), *_tone(),
        "-c:v", "libvpx-vp9", "-deadline", "realtime", "-cpu-used", "8", "-b:v", "200k",
        "-pix_fmt", "yuv420p", "-c:a", "libopus", "-ac", "2", "-b:a", "48k", p,
    )  # fmt: skip
    return MediaCase(p, _good(format_name=MKV_FORMAT, video_codec="vp9", fps=24.0,
                              audio_codec="opus"))  # fmt: skip


def make_h264_mkv(d: Path) -> MediaCase:
    """H.264 + MP3 mono 44.1 kHz in Matroska at 320x240."""
    _need("libmp3lame")
    p = d / "h264.mkv"
    _ffmpeg(
        *_video(size="320x240"), *_tone(44100), *X264,
        "-c:a", "libmp3lame", "-ac", "1", "-b:a", "64k", p,
    )  # fmt: skip
    return MediaCase(
        p,
        _good(format_name=MKV_FORMAT, width=320, height=240, audio_codec="mp3",
              audio_channels=1, sample_rate_hz=44100),
    )  # fmt: skip


def make_mov(d: Path) -> MediaCase:
    """H.264 + 16-bit PCM mono 22.05 kHz in a QuickTime .mov."""
    p = d / "clip.mov"
    _ffmpeg(*_video(), *_tone(22050), *X264, "-c:a", "pcm_s16le", "-ac", "1", p)
    return MediaCase(p, _good(audio_codec="pcm_s16le", audio_channels=1, sample_rate_hz=22050))


def make_ntsc_mp4(d: Path) -> MediaCase:
    """H.264 at NTSC 30000/1001 fps (29.97...) + AAC, 2 s, faststart."""
    p = d / "ntsc.mp4"
    _ffmpeg(
        *_video(rate="30000/1001", duration=2.0), *_tone(duration=2.0), *X264,
        "-c:a", "aac", "-ac", "2", "-movflags", "+faststart", p,
    )  # fmt: skip
    return MediaCase(p, _good(fps=30000 / 1001, duration_s=2.0))


# ----------------------------------------------------------------------------- bad media


def make_zero_bytes_mp4(d: Path) -> MediaCase:
    """An empty object named ``.mp4``."""
    p = d / "zero.mp4"
    p.write_bytes(b"")
    return MediaCase(p, _bad("empty_object", "empty object: 0 bytes"))


def _h264_aac(p: Path, *, faststart: bool, duration: float = 2.0) -> Path:
    flags = ["-movflags", "+faststart"] if faststart else []
    _ffmpeg(
        *_video(duration=duration), *_tone(duration=duration), *X264,
        "-c:a", "aac", "-ac", "2", *flags, p,
    )  # fmt: skip
    return p


def _cut_in_half(src: Path, dst: Path) -> Path:
    data = src.read_bytes()
    dst.write_bytes(data[: len(data) // 2])
    src.unlink()
    return dst


def make_truncated_mp4(d: Path) -> MediaCase:
    """A normal MP4 (moov at the end) cut in half: the index is gone."""
    src = _h264_aac(d / "truncated_src.mp4", faststart=False)
    p = _cut_in_half(src, d / "truncated.mp4")
    return MediaCase(p, _bad("corrupt_media", "truncated file: moov atom not found"))


def make_truncated_faststart_mp4(d: Path) -> MediaCase:
    """A faststart MP4 (moov at the front) cut in half: probes "fine" with full duration."""
    src = _h264_aac(d / "truncated_fs_src.mp4", faststart=True)
    p = _cut_in_half(src, d / "truncated_faststart.mp4")
    return MediaCase(p, _bad("corrupt_media", "truncated file: streams declare"))


def _strip_top_level_box(data: bytes, box_type: bytes) -> bytes:
    out, pos = bytearray(), 0
    while pos + 8 <= len(data):
        size, kind = struct.unpack(">I4s", data[pos : pos + 8])
        if size == 1:
            size = struct.unpack(">Q", data[pos + 8 : pos + 16])[0]
        elif size == 0:
            size = len(data) - pos
        if kind != box_type:
            out += data[pos : pos + size]
        pos += size
    return bytes(out)


def make_moov_removed_mp4(d: Path) -> MediaCase:
    """A complete MP4 whose moov box was cut out: every other box intact, no index."""
    src = _h264_aac(d / "no_moov_src.mp4", faststart=False)
    p = d / "no_moov.mp4"
    p.write_bytes(_strip_top_level_box(src.read_bytes(), b"moov"))
    src.unlink()
    return MediaCase(p, _bad("corrupt_media", "moov atom not found"))


def _random_bytes(p: Path, seed: int, size: int = 65536) -> Path:
    p.write_bytes(random.Random(seed).randbytes(size))
    return p


def make_random_mp4(d: Path) -> MediaCase:
    """64 KiB of seeded random bytes named ``.mp4`` (ffprobe exits non-zero)."""
    p = _random_bytes(d / "random.mp4", seed=1)
    return MediaCase(p, _bad("corrupt_media", "unrecognised or corrupt data"))


def make_random_bin(d: Path) -> MediaCase:
    """Random bytes with an extension no demuxer claims (ffprobe exits non-zero)."""
    p = _random_bytes(d / "random.bin", seed=2)
    return MediaCase(p, _bad("corrupt_media", "unrecognised or corrupt data"))


def make_random_m4v(d: Path) -> MediaCase:
    """Random bytes named ``.m4v``: ffprobe 5.1 "succeeds" with a 0x0 MPEG-4 video stream
    at probe_score 1 (``.mjpeg`` does the same), the bogus-probe case."""
    p = _random_bytes(d / "random.m4v", seed=3)
    return MediaCase(p, _bad("corrupt_media", "probe score 1"))


def make_text_mp4(d: Path) -> MediaCase:
    """A text file named ``.mp4``."""
    p = d / "notes.mp4"
    p.write_text("Meeting notes\n- this is not a video\n- ünïcödé is fine too\n", "utf-8")
    return MediaCase(p, _bad("unsupported_media", "not a video: looks like a text file"))


def make_png_still(d: Path) -> MediaCase:
    """One PNG frame (ffprobe sees ``png_pipe``)."""
    p = d / "still.png"
    _ffmpeg(*_video(), "-frames:v", "1", p)
    return MediaCase(p, _bad("unsupported_media", "still image (png), not a video"))


def make_audio_only_mp3(d: Path) -> MediaCase:
    """MP3 mono 44.1 kHz, no video at all."""
    _need("libmp3lame")
    p = d / "audio_only.mp3"
    _ffmpeg(*_tone(44100), "-c:a", "libmp3lame", "-b:a", "64k", p)
    return MediaCase(
        p, _bad("unsupported_media", "no video stream: audio-only file (mp3, 1 audio stream)")
    )


def make_audio_with_cover_m4a(d: Path) -> MediaCase:
    """AAC in M4A with a PNG cover picture (an ``attached_pic`` "video" stream)."""
    cover = d / "cover.png"
    _ffmpeg(*_video(), "-frames:v", "1", cover)
    p = d / "audio_cover.m4a"
    _ffmpeg(
        *_tone(), "-i", cover, "-map", "0:a", "-map", "1:v", "-c:a", "aac", "-ac", "2",
        "-c:v", "png", "-disposition:v:0", "attached_pic", p,
    )  # fmt: skip
    cover.unlink()
    return MediaCase(p, _bad("unsupported_media", "1 audio stream, cover art only"))


GOOD_CASES: dict[str, Callable[[Path], MediaCase]] = {
    "h264_aac_mp4": make_h264_aac_mp4,
    "video_only_mp4": make_video_only_mp4,
    "two_audio_mp4": make_two_audio_mp4,
    "subtitles_mp4": make_subtitles_mp4,
    "subtitles_mkv": make_subtitles_mkv,
    "rotated_mp4": make_rotated_mp4,
    "hevc10_mp4": make_hevc10_mp4,
    "vp9_opus_webm": make_vp9_opus_webm,
    "h264_mkv": make_h264_mkv,
    "mov": make_mov,
    "ntsc_mp4": make_ntsc_mp4,
}

BAD_CASES: dict[str, Callable[[Path], MediaCase]] = {
    "zero_bytes_mp4": make_zero_bytes_mp4,
    "truncated_mp4": make_truncated_mp4,
    "truncated_faststart_mp4": make_truncated_faststart_mp4,
    "moov_removed_mp4": make_moov_removed_mp4,
    "random_mp4": make_random_mp4,
    "random_bin": make_random_bin,
    "random_m4v": make_random_m4v,
    "text_mp4": make_text_mp4,
    "png_still": make_png_still,
    "audio_only_mp3": make_audio_only_mp3,
    "audio_with_cover_m4a": make_audio_with_cover_m4a,
}


def build_corpus(directory: Path, *, workers: int = 3) -> MediaCorpus:
    """Generate every case into ``directory`` (in parallel; ffmpeg calls are I/O-light).

    A case this ffmpeg cannot make lands in ``corpus.skipped`` with the reason; any other
    failure raises, because a broken generator would silently weaken the tests.
    """
    directory.mkdir(parents=True, exist_ok=True)
    corpus = MediaCorpus()
    makers = {**GOOD_CASES, **BAD_CASES}

    def run(name: str) -> tuple[str, MediaCase | str]:
        try:
            return name, makers[name](directory)
        except CaseSkipped as exc:
            return name, str(exc)

    with ThreadPoolExecutor(max_workers=workers) as pool:
        for name, result in pool.map(run, makers):
            if isinstance(result, MediaCase):
                corpus[name] = result
            else:
                corpus.skipped[name] = result
    return corpus


def probe_json(path: Path) -> dict[str, Any]:
    """Real ffprobe JSON for ``path`` (same flags as the prober), for pure-function tests."""
    done = subprocess.run(
        ["ffprobe", "-v", "error", "-print_format", "json", "-show_format", "-show_streams",
         "-i", f"file:{path}"],
        capture_output=True, check=True,
    )  # fmt: skip
    return json.loads(done.stdout)
