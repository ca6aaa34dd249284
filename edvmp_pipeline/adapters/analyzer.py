"""Run the one ffmpeg decode pass behind an :class:`AnalysisRecord` (the analysis engine).

Thin on purpose, like :mod:`edvmp_pipeline.adapters.prober`: build the command line, run it
with a timeout, map process failures to pipeline errors. The filter graph, the parsing of
ffmpeg's stderr and the fingerprint arithmetic live in the domain
(:mod:`~edvmp_pipeline.domain.media_analysis`, :mod:`~edvmp_pipeline.domain.fingerprints`).

One pass: ffmpeg decodes the chosen video stream and every audio stream once; the video
branch runs blackdetect, freezedetect, scdet and idet into ``-f null`` and a 9x8 grayscale
copy sampled at ``fingerprint_fps`` into stdout as raw frames; each audio stream runs
ebur128 into ``-f null``. stdout and stderr are read together (``communicate``), so neither
pipe can fill up and stall ffmpeg.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from edvmp_pipeline.adapters.ffmpeg_inputs import input_options, is_url
from edvmp_pipeline.domain.errors import ConfigError, MediaRejected, PipelineError, ProbeTimeout
from edvmp_pipeline.domain.fingerprints import fingerprint_from_frames
from edvmp_pipeline.domain.media_analysis import (
    AnalysisParams,
    AnalysisRecord,
    build_record,
    ffmpeg_error_line,
    filter_graph,
    pick_streams,
    probe_duration,
)
from edvmp_pipeline.domain.probe_normalise import classify_transport_failure
from edvmp_pipeline.domain.records import VideoRecord

RW_TIMEOUT_S = 15.0


def _source(target: str, tool_path: str) -> tuple[list[str], str]:
    """Input options and the input itself (``file:`` for local paths, as the prober does);
    the options confine the tool to reading the upload itself."""
    confined = input_options(tool_path, target)
    if is_url(target):
        return [*confined, "-rw_timeout", str(int(RW_TIMEOUT_S * 1_000_000))], target
    return confined, "file:" + os.fspath(Path(target))


def _run(cmd: list[str], timeout_s: float, what: str) -> subprocess.CompletedProcess[bytes]:
    try:
        return subprocess.run(
            cmd, stdin=subprocess.DEVNULL, capture_output=True, timeout=timeout_s, check=False
        )
    except subprocess.TimeoutExpired:
        # subprocess.run has already killed and reaped the child.
        raise ProbeTimeout(f"analysis timeout: {what} did not finish in {timeout_s:g} s") from None
    except OSError as exc:
        raise ConfigError(
            f"cannot run {what} ({cmd[0]!r}): {exc.strerror or exc}; install ffmpeg"
        ) from None


def _fail(done: subprocess.CompletedProcess[bytes], what: str) -> PipelineError:
    stderr = done.stderr.decode("utf-8", errors="replace")
    if done.returncode < 0:
        return PipelineError(f"{what} killed by signal {-done.returncode}")
    transport = classify_transport_failure(stderr)
    if transport is not None:
        return transport
    return MediaRejected(f"{what} could not read the media: {ffmpeg_error_line(stderr)}")


def probe_streams(target: str, *, timeout_s: float, ffprobe_path: str = "ffprobe") -> dict:
    """ffprobe's ``{"streams": [...], "format": {...}}`` for ``target``."""
    opts, source = _source(target, ffprobe_path)
    cmd = [ffprobe_path, "-v", "error", "-print_format", "json", "-show_format",
           "-show_streams", *opts, "-i", source]  # fmt: skip
    done = _run(cmd, timeout_s, "ffprobe")
    if done.returncode != 0:
        raise _fail(done, "ffprobe")
    try:
        return json.loads(done.stdout.decode("utf-8", errors="replace"))
    except json.JSONDecodeError as exc:
        raise PipelineError(f"ffprobe printed invalid JSON: {exc}") from None


def _probe_of(streams: VideoRecord | Mapping[str, Any] | None) -> Mapping[str, Any] | None:
    if isinstance(streams, VideoRecord):
        return json.loads(streams.ffprobe_json) if streams.ffprobe_json else None
    return streams


def analysis_command(
    target: str,
    probe: Mapping[str, Any],
    params: AnalysisParams,
    *,
    ffmpeg_path: str = "ffmpeg",
    image_dir: Path | None = None,
    images: Sequence[str] = (),
) -> list[str]:
    """The ffmpeg argument list for one analysis pass (no shell is ever involved).

    Each requested image (``poster``, ``contact_sheet``) is written as
    ``image_dir/<kind>.jpg`` by the same pass.
    """
    video, audio = pick_streams(probe)
    if video is None and not audio:
        raise MediaRejected("nothing to analyse: no video or audio stream", error_class=
                            "unsupported_media")  # fmt: skip
    if images and image_dir is None:
        raise ValueError("images need an image_dir to be written to")
    fg = filter_graph(
        int(video["index"]) if video is not None else None,
        audio,
        params,
        images=images,
        duration_s=probe_duration(probe, video),
    )
    opts, source = _source(target, ffmpeg_path)
    cmd = [ffmpeg_path, "-hide_banner", "-nostdin", "-nostats", "-v", "info", *opts,
           "-i", source, "-filter_complex", fg.graph]  # fmt: skip
    for label in fg.null_outputs:
        cmd += ["-map", f"[{label}]"]
    cmd += ["-f", "null", "-"]
    if fg.fingerprint_output is not None:
        cmd += ["-map", f"[{fg.fingerprint_output}]", "-f", "rawvideo", "-pix_fmt", "gray",
                "pipe:1"]  # fmt: skip
    for kind, label in fg.image_outputs.items():
        assert image_dir is not None
        cmd += ["-map", f"[{label}]", "-frames:v", "1", "-q:v", "4", "-f", "image2",
                "-update", "1", "file:" + os.fspath(image_dir / f"{kind}.jpg")]  # fmt: skip
    return cmd


def analyze(
    target: str,
    *,
    timeout_s: float,
    streams: VideoRecord | Mapping[str, Any] | None = None,
    params: AnalysisParams | None = None,
    ffmpeg_path: str = "ffmpeg",
    ffprobe_path: str = "ffprobe",
    image_dir: Path | None = None,
    images: Sequence[str] = (),
) -> AnalysisRecord:
    """Analyse ``target`` (a local path or an http(s) URL) in one ffmpeg decode pass.

    ``streams`` is what probing already found: a :class:`VideoRecord` (its raw ffprobe
    JSON is used) or ffprobe's JSON dict (``{"streams": [...], "format": {...}}``); when
    ``None`` (or the record kept no raw JSON) ffprobe is run first. ``timeout_s`` bounds
    each process.

    Raises :class:`ProbeTimeout` when ffmpeg overruns, :class:`MediaRejected` when the
    media cannot be decoded or has neither video nor audio, :class:`ConfigError` when
    ffmpeg cannot be run, and the store errors for URLs ffmpeg could not read.

    ``images`` (``poster``, ``contact_sheet``) are written into ``image_dir`` by the same
    pass; the record names the files that were made (none for audio-only media).
    """
    params = params or AnalysisParams()
    probe = _probe_of(streams)
    if probe is None:
        probe = probe_streams(target, timeout_s=timeout_s, ffprobe_path=ffprobe_path)
    video, audio = pick_streams(probe)
    cmd = analysis_command(
        target, probe, params, ffmpeg_path=ffmpeg_path, image_dir=image_dir, images=images
    )
    started = time.monotonic()
    done = _run(cmd, timeout_s, "ffmpeg")
    elapsed = time.monotonic() - started
    if done.returncode != 0:
        raise _fail(done, "ffmpeg")
    stderr = done.stderr.decode("utf-8", errors="replace")
    fingerprint = (
        fingerprint_from_frames(done.stdout, params.fingerprint_fps) if video is not None else None
    )
    record = build_record(
        stderr,
        video=video,
        audio_indices=audio,
        duration_s=probe_duration(probe, video),
        fingerprint=fingerprint,
        elapsed_s=round(elapsed, 3),
    )
    made = {}
    for kind in images if video is not None and image_dir is not None else ():
        path = image_dir / f"{kind}.jpg"
        # A poster time past the last frame (a duration the container overstates) yields none.
        if path.is_file() and path.stat().st_size > 0:
            made[kind] = str(path)
    return replace(record, **made) if made else record
