"""Sample videos for the demo and the CI job, generated with ffmpeg's lavfi test sources.

Nothing binary is committed: ``edvmp samples DIR`` writes a small, varied library (codecs,
containers, a rotated phone clip, an NTSC rate, subtitles, no audio) plus two broken files so
that the failure path is visible too.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from edvmp_pipeline.domain.errors import ConfigError

_VIDEO = ["-f", "lavfi", "-i"]
_TONE = ["-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000:duration=2"]
_H264 = ["-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p"]

# name → ffmpeg arguments between the global flags and the output path.
SAMPLES: dict[str, list[str]] = {
    "marketing/launch_teaser.mp4": [
        *_VIDEO,
        "testsrc2=size=640x360:rate=25:duration=2",
        *_TONE,
        *_H264,
        "-c:a",
        "aac",
        "-ac",
        "2",
        "-shortest",
    ],
    "ugc/phone_portrait.mp4": [
        *_VIDEO,
        "testsrc2=size=320x240:rate=30:duration=2",
        *_TONE,
        *_H264,
        "-c:a",
        "aac",
        "-ac",
        "1",
        "-shortest",
    ],
    "training/ntsc_lecture.mov": [
        *_VIDEO,
        "testsrc2=size=320x240:rate=30000/1001:duration=2",
        *_TONE,
        *_H264,
        "-c:a",
        "aac",
        "-ac",
        "2",
        "-shortest",
    ],
    "training/silent_screencast.mkv": [
        *_VIDEO,
        "testsrc2=size=480x270:rate=15:duration=2",
        *_H264,
        "-an",
    ],
    "ugc/clip vp9, opus.webm": [
        *_VIDEO,
        "testsrc2=size=320x180:rate=24:duration=2",
        *_TONE,
        "-c:v",
        "libvpx-vp9",
        "-deadline",
        "realtime",
        "-cpu-used",
        "8",
        "-b:v",
        "200k",
        "-c:a",
        "libopus",
        "-shortest",
    ],
}

# ffmpeg 5.1 drops the rotate tag when encoding and turns it into a display matrix of N degrees
# counter-clockwise on a stream copy: 270 gives what phones write for a 90° clockwise turn.
REMUX_ROTATE = {"ugc/phone_portrait.mp4": 270}


def _ffmpeg() -> str:
    path = shutil.which("ffmpeg")
    if path is None:
        raise ConfigError("ffmpeg not found: run `make setup` (installs Debian's ffmpeg)")
    return path


def generate_samples(folder: Path, *, broken: bool = True) -> list[Path]:
    """Write the sample library into ``folder`` (existing files are kept as they are)."""
    ffmpeg = _ffmpeg()
    written = []
    for name, args in SAMPLES.items():
        out = folder / name
        if out.exists():
            written.append(out)
            continue
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_name(f".{out.stem}.tmp{out.suffix}")
        cmd = [ffmpeg, "-v", "error", "-y", *args, str(tmp)]
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)
        if done.returncode != 0:
            tmp.unlink(missing_ok=True)
            raise ConfigError(f"ffmpeg could not generate {name}: {done.stderr.strip()[-300:]}")
        if name in REMUX_ROTATE:
            rotated = tmp.with_name(f".{out.stem}.rot{out.suffix}")
            cmd = [ffmpeg, "-v", "error", "-y", "-i", str(tmp), "-c", "copy"]
            cmd += ["-metadata:s:v:0", f"rotate={REMUX_ROTATE[name]}", str(rotated)]
            subprocess.run(cmd, capture_output=True, timeout=120, check=True)
            tmp.unlink()
            tmp = rotated
        tmp.replace(out)
        written.append(out)
    if broken:
        bad = folder / "broken"
        bad.mkdir(parents=True, exist_ok=True)
        teaser = (folder / "marketing/launch_teaser.mp4").read_bytes()
        # The default MP4 muxer writes the index (moov) last: cutting the file loses it.
        (bad / "upload_cut_short.mp4").write_bytes(teaser[: len(teaser) // 2])
        (bad / "empty_upload.mp4").write_bytes(b"")
        written += [bad / "upload_cut_short.mp4", bad / "empty_upload.mp4"]
    return written
