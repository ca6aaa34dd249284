"""Typed records that flow through the pipeline and land in the catalog."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any


@dataclass(frozen=True)
class ObjectVersion:
    """One version of one object in a source.

    ``source`` is ``s3://bucket`` or an absolute folder path; ``object_key`` is the S3 key
    or the path relative to the folder with ``/`` separators; ``etag`` is the S3 ETag
    (quotes stripped, multipart ``-N`` kept as an opaque string) or a content hash.
    """

    source: str
    object_key: str
    etag: str
    size_bytes: int
    last_modified: datetime | None = None

    @property
    def is_s3(self) -> bool:
        return self.source.startswith("s3://")

    @property
    def bucket(self) -> str | None:
        return self.source[len("s3://") :] if self.is_s3 else None


@dataclass(frozen=True)
class StreamRecord:
    """One stream of a probed file (the ``streams`` view)."""

    stream_index: int
    codec_type: str
    codec_name: str | None
    codec_long_name: str | None = None
    profile: str | None = None
    bit_rate: int | None = None
    duration_s: float | None = None
    language: str | None = None
    # video
    width: int | None = None
    height: int | None = None
    pix_fmt: str | None = None
    fps: float | None = None
    bits_per_raw_sample: int | None = None
    rotation: int | None = None
    # audio
    channels: int | None = None
    channel_layout: str | None = None
    sample_rate_hz: int | None = None


@dataclass(frozen=True)
class VideoRecord:
    """The normalised technical metadata of one video version (the ``videos`` view).

    Units: ``duration_s`` seconds, ``bit_rate`` bits per second, ``fps`` frames per second
    (average rate), ``rotation`` display rotation in degrees clockwise in [0, 360),
    ``sample_rate_hz`` Hz. ``width``/``height`` are the coded frame size of the first
    video stream.
    """

    format_name: str
    duration_s: float | None
    bit_rate: int | None
    video_codec: str | None
    width: int | None
    height: int | None
    fps: float | None
    pix_fmt: str | None
    rotation: int
    audio_codec: str | None
    audio_channels: int | None
    sample_rate_hz: int | None
    n_video_streams: int
    n_audio_streams: int
    n_subtitle_streams: int
    probe_score: int | None = None
    format_long_name: str | None = None
    tags: dict[str, str] = field(default_factory=dict)
    streams: tuple[StreamRecord, ...] = ()
    # ffprobe's format and streams as JSON text (None when unknown or over the size cap);
    # evidence kept beside the record, not part of what makes two records the same.
    ffprobe_json: str | None = field(default=None, compare=False, repr=False)

    def as_row(self) -> dict[str, Any]:
        """The scalar columns (no streams, tags flattened to JSON by the catalog)."""
        row = asdict(self)
        row.pop("streams")
        return row
