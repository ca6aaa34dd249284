"""Turn ffprobe's JSON into a :class:`VideoRecord`, or say precisely why the object is unusable.

Pure functions: no subprocess, no Dagster. The input is the output of
``ffprobe -v error -print_format json -show_format -show_streams`` plus what the caller
knows without ffprobe (the object's size and its first bytes).

Conventions (see :class:`~edvmp_pipeline.domain.records.VideoRecord`):

* ``rotation`` is the display rotation in degrees *clockwise*, in [0, 360). This is the
  meaning of the legacy ``rotate`` tag (a phone held upright writes ``rotate=90``). The
  display matrix angle that ffprobe prints as ``rotation`` is *counter-clockwise* (the
  same upright phone clip shows ``rotation: -90``), so it is negated.
  A matrix that also mirrors the picture (negative determinant) is given as the turn that
  puts the picture's top where the matrix puts it (see ``_mirrored_rotation_cw``): the
  record has no mirror flag, and ffprobe's angle reads a left-right mirror as 180°.
* ``width``/``height`` are the stored frame size of the first real video stream, before
  rotation: a portrait phone clip is 1920x1080 with rotation 90.
* cover art (``disposition.attached_pic``) is not a video stream: it is neither chosen as
  "the" video stream nor counted in ``n_video_streams``.
* a still image is an image demuxer's input, a stream of one frame without any duration
  (an AVIF or HEIF image, whatever its codec), or an image-codec stream holding one picture:
  counted by ``nb_frames``, by an APNG's ``acTL`` chunk (ffprobe gives APNG neither count
  nor duration), or in Matroska (no count stored) as duration x frame rate.
* a video stream without a codec is ``unsupported_media`` when the container names one
  (a four-character code, a Matroska ``CodecID``) and ``corrupt_media`` when it names none.

Thresholds were measured with this host's ffprobe 5.1 (see the tests for the cases):

* probe score: real media scored 26 (MPEG-PS ``.mpg``, raw MJPEG), 50 (MPEG-TS, image2),
  51 (raw H.264/HEVC/MPEG-2 elementary streams, MP3, ADTS AAC), 98-100 (MP4, MKV, WebM,
  AVI, FLV, IVF). Random bytes named ``.m4v``/``.mjpeg``/``.aac`` were accepted at score
  1. FFmpeg itself keeps reading while the best score is below 25 (``AVPROBE_SCORE_RETRY``)
  and only settles for less at end of input, so below 25 is rejected as a bogus probe.
* truncation: in the MOV/MP4 family a stream's ``bit_rate`` is computed from the sample
  table (bytes of all samples / duration), so for a complete file the sum of
  ``bit_rate x duration / 8`` over the streams cannot exceed the file size. Measured
  ratios declared/size for complete files: 0.73-0.998 (0.998 for 3 MB of VBR noise, the
  least container overhead). A faststart MP4 cut at 50 % gives 1.94, at 75 % 1.29, at
  90 % 1.08, at 95 % 1.02. Reject above 1.05 when the excess is also over 4 KiB (rounding
  room for tiny files). Other containers are not checked: MPEG-PS declares 104857200 b/s
  (the "unknown" VBV maximum) for a 0.5 Mb/s stream and FLV declares the encoder's target
  rate, and Matroska/WebM streams carry no ``bit_rate`` at all.
* container structure: the rate check misses a faststart MP4 cut near its end (97 % gives
  1.02) and knows nothing of Matroska, whose cut files still probe with their full
  duration. :mod:`~edvmp_pipeline.domain.container_structure` checks the top-level MP4 boxes,
  the Matroska Segment size (and the RIFF, FLV, ASF and MXF equivalents) against the
  object's size: the same walk explains an MP4 whose ffprobe failed (moov cut off) and
  rejects one that probed but is cut short.
"""

from __future__ import annotations

import json
import math
import re
from fractions import Fraction
from typing import Any

from edvmp_pipeline.domain.container_structure import (
    ASF_MAGIC,
    EBML_MAGIC,
    FLV_MAGIC,
    MP4_OPENING_BOXES,
    MXF_MAGIC,
    RIFF_MAGIC,
    Reader,
    apng_frame_count,
    asf_truncation,
    bytes_reader,
    ebml_truncation,
    flv_truncation,
    matroska_video_codec_id,
    mxf_truncation,
    prefixed_reader,
    riff_truncation,
    truncation_reason,
    walk_mp4_boxes,
    webp_is_animated,
)
from edvmp_pipeline.domain.errors import (
    AccessDenied,
    MediaRejected,
    ObjectMissing,
    PipelineError,
    StoreUnreachable,
)
from edvmp_pipeline.domain.records import StreamRecord, VideoRecord

# The raw probe is evidence for API clients, not something to fill the catalog with.
MAX_RAW_PROBE_BYTES = 256 * 1024

MIN_PROBE_SCORE = 25
MAX_DIMENSION = 16384
TRUNCATION_RATIO = 1.05
TRUNCATION_MIN_EXCESS_BYTES = 4096

# The demuxer family whose stream bit rates come from the sample table (see module doc).
MOV_FAMILY_PREFIX = "mov,"

# MPEG-1/2 video: bit_rate_value 0x3FFFF (x 400 b/s) in the sequence header means VBR.
MPEG_VIDEO_CODECS = frozenset({"mpeg1video", "mpeg2video"})
MPEG_VIDEO_VBR_BIT_RATE = 0x3FFFF * 400

# Image demuxers: ffprobe names single-image inputs ``image2`` or ``<codec>_pipe``.
STILL_IMAGE_FORMATS = frozenset({"image2", "image2pipe"})
# Codecs that hold one picture per frame; with one frame (or no duration) they are stills.
IMAGE_CODECS = frozenset(
    {
        "png", "apng", "mjpeg", "jpeg2000", "jpegls", "jpegxl", "bmp", "gif", "webp",
        "tiff", "ppm", "pgm", "pgmyuv", "pbm", "pam", "targa", "sgi", "dpx", "exr", "qoi",
        "pcx", "xbm", "xpm", "xwd", "sunrast", "hdr", "psd", "svg", "dds", "ico",
    }
)  # fmt: skip

APNG_UNKNOWN_FRAMES = 2  # "more than one": the acTL chunk exists but could not be read

_IMAGE_MAGIC: tuple[tuple[bytes, str], ...] = (
    (b"\x89PNG\r\n\x1a\n", "PNG image"),
    (b"\xff\xd8\xff", "JPEG image"),
    (b"GIF87a", "GIF image"),
    (b"GIF89a", "GIF image"),
    (b"II*\x00", "TIFF image"),
    (b"MM\x00*", "TIFF image"),
)
_DOCUMENT_MAGIC: tuple[tuple[bytes, str], ...] = (
    (b"%PDF-", "a PDF document"),
    (b"PK\x03\x04", "a ZIP archive"),
    (b"\x1f\x8b", "a gzip file"),
)
# Media containers ffprobe knows: if it still failed, the data after the header is bad.
_CONTAINER_MAGIC: tuple[tuple[bytes, str], ...] = (
    (b"\x1a\x45\xdf\xa3", "Matroska/WebM header"),
    (b"RIFF", "RIFF (AVI/WAV) header"),
    (b"FLV", "FLV header"),
    (b"OggS", "Ogg header"),
    (b"ID3", "ID3 (MP3) header"),
    (b"\x00\x00\x01\xba", "MPEG-PS header"),
    (b"\x30\x26\xb2\x75", "ASF/WMV header"),
)

# A codec tag that is a real four-character code; ffprobe spells a zero or binary tag
# "[0][0][0][0]" (Matroska codec IDs are not shown as tags at all).
_FOURCC = re.compile(r"[A-Za-z0-9][A-Za-z0-9 ._-]{3}")

_ADDRESS_PREFIX = re.compile(r"^\[[^\]]*@ 0x[0-9a-f]+\]\s*")
_URL_QUERY = re.compile(r"(https?://[^\s?]+)\?[^\s:]*")


# ------------------------------------------------------------------------------ helpers


def _to_float(value: Any) -> float | None:
    if value is None:
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None  # ffprobe uses "N/A" and friends for unknown values
    return number if math.isfinite(number) else None


def _to_int(value: Any) -> int | None:
    number = _to_float(value)
    return None if number is None else int(number)


def _rate(value: Any) -> float | None:
    """``"30000/1001"`` → 29.97…; ``"0/0"``, ``"0/1"`` and junk → None."""
    if not isinstance(value, str) or not value:
        return None
    try:
        num, _, den = value.partition("/")
        rate = Fraction(int(num), int(den or 1))
    except (ValueError, ZeroDivisionError):
        return None
    return float(rate) if rate > 0 else None


def _clock_duration(value: Any) -> float | None:
    """Matroska's ``DURATION`` tag, ``HH:MM:SS.nnnnnnnnn`` → seconds."""
    if not isinstance(value, str):
        return None
    match = re.fullmatch(r"(\d+):(\d{2}):(\d{2}(?:\.\d+)?)", value.strip())
    if not match:
        return None
    hours, minutes, seconds = match.groups()
    return int(hours) * 3600 + int(minutes) * 60 + float(seconds)


def _is_attached_pic(stream: dict[str, Any]) -> bool:
    return bool((stream.get("disposition") or {}).get("attached_pic"))


def _display_matrix(text: Any) -> list[int] | None:
    """The nine integers of ffprobe's ``displaymatrix`` text (three lines ``0000000N: a b
    c``), or None when it is not that."""
    if not isinstance(text, str):
        return None
    values: list[int] = []
    for line in text.strip().splitlines():
        _, _, row = line.partition(":")
        try:
            values += [int(v) for v in row.split()]
        except ValueError:
            return None
    return values if len(values) == 9 else None


def _mirrored_rotation_cw(matrix: list[int]) -> int | None:
    """For a display matrix that mirrors the picture, the clockwise turn that brings the
    picture's top where the matrix puts it; None when the matrix does not mirror.

    ffprobe's ``rotation`` follows the picture's *right* edge, so a plain left-right mirror
    (``a = -1``) reads as a 180° turn, and a top-bottom one as none: a player that turns
    the picture by it shows it upside down. Following the top edge leaves only a
    left-right mirror unaccounted for. Row-vector convention of ``libavutil/display.h``:
    a point (p, q) goes to (a·p + c·q, b·p + d·q), y pointing down, so the top direction
    (0, -1) goes to (-c, -d).
    """
    a, b, _, c, d = matrix[:5]
    if a * d - b * c >= 0:
        return None
    if c == 0 and d == 0:
        return None
    return round(math.degrees(math.atan2(-c, d))) % 360


def _rotation_cw(stream: dict[str, Any]) -> int:
    """Display rotation in whole degrees clockwise, in [0, 360); 0 when none is stored."""
    for side_data in stream.get("side_data_list") or []:
        if side_data.get("side_data_type") == "Display Matrix":
            matrix = _display_matrix(side_data.get("displaymatrix"))
            if matrix is not None and matrix[0] * matrix[4] == matrix[1] * matrix[3]:
                # A degenerate (e.g. all-zero) matrix has no angle: ffprobe prints its NaN
                # as -9223372036854775808, which is no rotation at all.
                continue
            mirrored = _mirrored_rotation_cw(matrix) if matrix is not None else None
            if mirrored is not None:
                return mirrored
            ccw = _to_float(side_data.get("rotation"))
            if ccw is not None and abs(ccw) <= 360:
                # The display matrix angle is counter-clockwise: -90 means turn right.
                return round(-ccw) % 360
    clockwise = _to_float((stream.get("tags") or {}).get("rotate"))
    if clockwise is not None:
        return round(clockwise) % 360  # legacy tag (ffprobe < 5): already clockwise
    return 0


def _matroska_statistic(stream: dict[str, Any], name: str) -> Any:
    """A Matroska statistics tag of the stream (``DURATION``, ``BPS``): mkvmerge writes
    them with no language (``BPS``) or, in older versions, with one, which ffprobe appends
    to the name (``BPS-eng``)."""
    tags = stream.get("tags") or {}
    if name in tags:
        return tags[name]
    prefix = name + "-"
    return next((v for k, v in tags.items() if str(k).startswith(prefix)), None)


def _stream_duration(stream: dict[str, Any]) -> float | None:
    duration = _to_float(stream.get("duration"))
    if duration is None:
        duration = _clock_duration(_matroska_statistic(stream, "DURATION"))
    return duration


def _stream_bit_rate(stream: dict[str, Any]) -> int | None:
    """The stream's bit rate in bit/s, None when unknown.

    An MPEG-1/2 video sequence header whose 18-bit ``bit_rate_value`` is all ones means
    "variable bit rate", and ffprobe passes it on as 104857200 b/s, whatever the container
    measured (an intact MPEG-1 MP4 then "declares" 100x its size). Matroska streams carry
    no bit rate of their own; mkvmerge's ``BPS`` statistics tag is used instead.
    """
    bit_rate = _to_int(stream.get("bit_rate"))
    if bit_rate == MPEG_VIDEO_VBR_BIT_RATE and stream.get("codec_name") in MPEG_VIDEO_CODECS:
        return None
    if bit_rate is None:
        bit_rate = _to_int(_matroska_statistic(stream, "BPS"))
    return bit_rate


def _stream_fps(stream: dict[str, Any]) -> float | None:
    # avg_frame_rate is the true mean (VFR phone clips); r_frame_rate is the base rate
    # ffprobe guesses, used only when the container gives no average ("0/0").
    return _rate(stream.get("avg_frame_rate")) or _rate(stream.get("r_frame_rate"))


def _human_bytes(n: float) -> str:
    if n >= 1e9:
        return f"{n / 1e9:.2f} GB"
    if n >= 1e6:
        return f"{n / 1e6:.1f} MB"
    if n >= 1e3:
        return f"{n / 1e3:.0f} kB"
    return f"{int(n)} bytes"


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def stream_record(stream: dict[str, Any]) -> StreamRecord:
    """One ffprobe stream object → :class:`StreamRecord` (fields a type lacks stay None)."""
    codec_type = str(stream.get("codec_type") or "unknown")
    tags = stream.get("tags") or {}
    is_video = codec_type == "video"
    is_audio = codec_type == "audio"
    return StreamRecord(
        stream_index=int(stream.get("index", 0)),
        codec_type=codec_type,
        codec_name=stream.get("codec_name"),
        codec_long_name=stream.get("codec_long_name"),
        profile=stream.get("profile"),
        bit_rate=_stream_bit_rate(stream),
        duration_s=_stream_duration(stream),
        language=tags.get("language"),
        width=_to_int(stream.get("width")) if is_video else None,
        height=_to_int(stream.get("height")) if is_video else None,
        pix_fmt=stream.get("pix_fmt") if is_video else None,
        fps=_stream_fps(stream) if is_video else None,
        bits_per_raw_sample=_to_int(stream.get("bits_per_raw_sample")),
        rotation=_rotation_cw(stream) if is_video else None,
        channels=_to_int(stream.get("channels")) if is_audio else None,
        channel_layout=stream.get("channel_layout") if is_audio else None,
        sample_rate_hz=_to_int(stream.get("sample_rate")) if is_audio else None,
    )


# --------------------------------------------------------------------------- rejections


def _corrupt(reason: str) -> MediaRejected:
    return MediaRejected(reason, error_class="corrupt_media")


def _unsupported(reason: str) -> MediaRejected:
    return MediaRejected(reason, error_class="unsupported_media")


def _empty() -> MediaRejected:
    return MediaRejected("empty object: 0 bytes", error_class="empty_object")


def _no_video_reason(streams: list[dict[str, Any]], format_name: str) -> str:
    audio = [s for s in streams if s.get("codec_type") == "audio"]
    covers = [s for s in streams if s.get("codec_type") == "video" and _is_attached_pic(s)]
    cover_note = ", cover art only" if covers else ""
    if audio:
        codecs = sorted({str(s.get("codec_name") or "unknown codec") for s in audio})
        others: dict[str, int] = {}
        for s in streams:
            kind = str(s.get("codec_type") or "unknown")
            if kind not in ("audio", "video"):
                others[kind] = others.get(kind, 0) + 1
        other_note = "".join(
            f", {_plural(n, f'{kind} stream')}" for kind, n in sorted(others.items())
        )
        return (
            f"no video stream: audio-only file ({'/'.join(codecs)}, "
            f"{_plural(len(audio), 'audio stream')}{other_note}{cover_note})"
        )
    kinds: dict[str, int] = {}
    for s in streams:
        kind = "cover picture" if _is_attached_pic(s) else str(s.get("codec_type") or "unknown")
        kinds[kind] = kinds.get(kind, 0) + 1
    if not kinds:
        return f"no video stream: ffprobe found no streams at all ({format_name})"
    listed = ", ".join(_plural(n, f"{kind} stream") for kind, n in sorted(kinds.items()))
    return f"no video stream: only {listed} ({format_name})"


def _image_frames(
    format_name: str, video: dict[str, Any], duration_s: float | None, read: Reader
) -> int | None:
    """How many pictures an image-codec video stream holds, when that can be told."""
    frames = _to_int(video.get("nb_frames"))
    if frames is not None:
        return frames
    if format_name == "apng":
        # The apng demuxer reports neither count nor duration, and takes only files with an
        # acTL chunk before the image data: without the count at hand it is animated.
        return apng_frame_count(read) or APNG_UNKNOWN_FRAMES
    # Matroska stores no frame count: a stream lasting one frame's time is one picture.
    duration = _stream_duration(video) or duration_s
    fps = _stream_fps(video)
    if duration is not None and fps:
        return round(duration * fps)
    return None


def _is_still_image(
    format_name: str, video: dict[str, Any], duration_s: float | None, read: Reader
) -> bool:
    names = set(format_name.split(","))
    if names & STILL_IMAGE_FORMATS or any(n.endswith("_pipe") for n in names):
        return True
    if _to_int(video.get("nb_frames")) == 1 and duration_s is None:
        # One picture lasting no time, in whatever codec: an AVIF (AV1) or HEIF (HEVC)
        # image is an ISO-BMFF file with one item, which ffprobe shows as such a stream.
        return True
    if video.get("codec_name") in IMAGE_CODECS:
        frames = _image_frames(format_name, video, duration_s, read)
        # A GIF or PNG with one frame is a picture; an animated one is a (silent) clip.
        return (frames is not None and frames <= 1) or (frames is None and duration_s is None)
    return False


def _check_truncation(
    format_name: str, streams: list[dict[str, Any]], format_duration: float | None, size: int
) -> None:
    if not format_name.startswith(MOV_FAMILY_PREFIX):
        return  # only MOV/MP4 stream bit rates are measured from the index (module doc)
    declared = 0.0
    for stream in streams:
        if _is_attached_pic(stream):
            continue
        bit_rate = _stream_bit_rate(stream)
        duration = _stream_duration(stream) or format_duration
        if bit_rate and duration:
            declared += bit_rate * duration / 8
    excess = declared - size
    if declared > size * TRUNCATION_RATIO and excess > TRUNCATION_MIN_EXCESS_BYTES:
        missing = 100 * excess / declared
        raise _corrupt(
            f"truncated file: streams declare {_human_bytes(declared)} but object holds "
            f"{_human_bytes(size)} (about {missing:.0f}% of the media data is missing)"
        )


# ------------------------------------------------------------------------------ public


def normalise_probe(
    probe: dict[str, Any],
    *,
    size_bytes: int,
    leading_bytes: bytes = b"",
    read: Reader | None = None,
) -> VideoRecord:
    """Normalise ffprobe JSON (``-show_format -show_streams``) into a :class:`VideoRecord`.

    ``size_bytes`` is the object's real size (from the store, not from ffprobe);
    ``leading_bytes`` its first bytes and ``read(offset, length)`` a way to read a few more
    anywhere in it: with them the container structure is checked against the size (without
    ``read``, only as far as the leading bytes show it).

    Raises :class:`MediaRejected` when the object is not a usable video: ``empty_object``
    for 0 bytes; ``corrupt_media`` for a bogus probe (score below 25), a video stream
    without codec or with an absurd frame size, or a truncated MOV/MP4/Matroska/WebM; and
    ``unsupported_media`` for audio-only files and still images.
    """
    if size_bytes == 0:
        raise _empty()
    fmt: dict[str, Any] = probe.get("format") or {}
    streams: list[dict[str, Any]] = list(probe.get("streams") or [])
    format_name = str(fmt.get("format_name") or "unknown")
    probe_score = _to_int(fmt.get("probe_score"))

    if probe_score is not None and probe_score < MIN_PROBE_SCORE:
        guessed = ", ".join(
            f"{s.get('codec_type')} {s.get('codec_name') or '?'}"
            + (f" {s.get('width')}x{s.get('height')}" if s.get("codec_type") == "video" else "")
            for s in streams
        )
        raise _corrupt(
            f"unrecognised or corrupt data: ffprobe guessed {format_name} with probe score "
            f"{probe_score}/100 (real media scores >= {MIN_PROBE_SCORE})"
            + (f"; bogus streams: {guessed}" if guessed else "")
        )

    videos = [s for s in streams if s.get("codec_type") == "video" and not _is_attached_pic(s)]
    audios = [s for s in streams if s.get("codec_type") == "audio"]
    subtitles = [s for s in streams if s.get("codec_type") == "subtitle"]
    if not videos:
        raise _unsupported(_no_video_reason(streams, format_name))
    video = videos[0]

    format_duration = _to_float(fmt.get("duration"))
    duration_s = format_duration
    if duration_s is None:
        duration_s = _stream_duration(video)
    if duration_s is None:
        durations = [d for d in map(_stream_duration, streams) if d is not None]
        duration_s = max(durations) if durations else None

    structure = prefixed_reader(leading_bytes, read or bytes_reader(leading_bytes))
    codec = video.get("codec_name")
    if not codec:
        tag = str(video.get("codec_tag_string") or "none")
        # A well-formed container naming a codec this ffprobe does not know (ProRes RAW
        # 'aprn', VVC 'vvc1' / 'V_MPEGI/ISO/VVC'): the bytes are fine, the codec is not
        # ours. Matroska names codecs by string ID, which ffprobe does not show.
        if _FOURCC.fullmatch(tag):
            raise _unsupported(f"unsupported video codec: ffprobe does not know codec tag '{tag}'")
        if leading_bytes.startswith(EBML_MAGIC):
            codec_id = matroska_video_codec_id(structure, size_bytes)
            if codec_id is not None:
                raise _unsupported(
                    f"unsupported video codec: ffprobe does not know Matroska codec '{codec_id}'"
                )
        raise _corrupt(f"corrupt video stream: ffprobe identified no codec (codec tag {tag})")
    width, height = _to_int(video.get("width")), _to_int(video.get("height"))
    animated_webp = webp_is_animated(structure)
    if animated_webp and not (width and height):
        # FFmpeg before 8.0 has no decoder for WebP animation frames: it shows 0x0.
        raise _unsupported(
            "unsupported video codec: animated WebP, which this ffprobe cannot decode"
        )
    if not animated_webp and _is_still_image(format_name, video, duration_s, structure):
        raise _unsupported(f"still image ({codec}), not a video")
    if not width or not height or width > MAX_DIMENSION or height > MAX_DIMENSION:
        raise _corrupt(
            f"corrupt video stream: absurd frame size {width or 0}x{height or 0} ({codec}); "
            f"expected 1..{MAX_DIMENSION} on each side"
        )
    _check_truncation(format_name, streams, format_duration, size_bytes)
    # After the rate check: it needs no reads, and names how much media data is missing.
    cut = truncation_reason(structure, size_bytes, leading_bytes)
    if cut is not None:
        raise _corrupt(cut)

    audio = audios[0] if audios else None
    return VideoRecord(
        format_name=format_name,
        duration_s=duration_s,
        bit_rate=_to_int(fmt.get("bit_rate")),
        video_codec=codec,
        width=width,
        height=height,
        fps=_stream_fps(video),
        pix_fmt=video.get("pix_fmt"),
        rotation=_rotation_cw(video),
        audio_codec=audio.get("codec_name") if audio else None,
        audio_channels=_to_int(audio.get("channels")) if audio else None,
        sample_rate_hz=_to_int(audio.get("sample_rate")) if audio else None,
        n_video_streams=len(videos),
        n_audio_streams=len(audios),
        n_subtitle_streams=len(subtitles),
        probe_score=probe_score,
        format_long_name=fmt.get("format_long_name"),
        tags={str(k): str(v) for k, v in (fmt.get("tags") or {}).items()},
        streams=tuple(stream_record(s) for s in streams),
        ffprobe_json=raw_probe_json(fmt, streams),
    )


def raw_probe_json(fmt: dict[str, Any], streams: list[dict[str, Any]]) -> str | None:
    """ffprobe's ``format`` and ``streams`` as compact JSON, or None past
    :data:`MAX_RAW_PROBE_BYTES` (a file can carry megabytes of tags; the normalised record
    and its tags are kept either way)."""
    text = json.dumps(
        {"format": fmt, "streams": streams}, ensure_ascii=False, separators=(",", ":")
    )
    return text if len(text.encode("utf-8")) <= MAX_RAW_PROBE_BYTES else None


def ffprobe_messages(stderr: str, *, limit: int = 200) -> str:
    """ffprobe's distinct error lines, without ``[demuxer @ 0x…]`` prefixes, the input name
    or presigned URL query strings (they carry signatures), joined by ``; ``."""
    seen: list[str] = []
    for raw in stderr.splitlines():
        line = _ADDRESS_PREFIX.sub("", raw.strip())
        if not line:
            continue
        # "<input>: <message>": the input is a local path or a URL; keep the message.
        if ": " in line and ("/" in line.split(": ", 1)[0] or line.startswith("file:")):
            line = line.rsplit(": ", 1)[-1]
        line = _URL_QUERY.sub(r"\1?…", line)
        if line not in seen:
            seen.append(line)
    text = "; ".join(seen)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _looks_like_text(data: bytes) -> bool:
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    if not data:
        return False
    # The sample may end inside a multi-byte UTF-8 character: drop up to 3 trailing bytes.
    for cut in range(4):
        try:
            text = data[: len(data) - cut].decode("utf-8")
        except UnicodeDecodeError:
            continue
        return bool(text) and all(ch.isprintable() or ch in "\t\n\r\f\v" for ch in text)
    return False


def _mp4_failure(read: Reader, size_bytes: int, detail: str) -> MediaRejected:
    """ISO-BMFF opening boxes present but ffprobe failed: walk the top-level boxes."""
    walk = walk_mp4_boxes(read, size_bytes)
    for box in walk.boxes:
        if box.open_ended:
            # "Runs to end of file": the writer never went back to fix sizes or add moov.
            return _corrupt(
                f"corrupt MP4: moov atom not found ('{box.kind}' box is open-ended: the "
                f"recording was never finalised)"
            )
        if box.end > size_bytes:
            return _corrupt(
                f"truncated file: moov atom not found ('{box.kind}' box needs {box.end:,} "
                f"bytes, object holds {size_bytes:,})"
            )
        if box.kind == "moov":
            return _corrupt(f"corrupt MP4: moov atom present but unreadable ({detail})")
    if walk.complete:
        seen = ", ".join(box.kind for box in walk.boxes)
        return _corrupt(
            f"corrupt MP4: moov atom not found (boxes {seen} are complete; the index was "
            f"never written or was removed)"
        )
    return _corrupt(f"corrupt MP4: moov atom not found ({detail})")


_REFUSED_INPUT = re.compile(
    r"\[(?P<format>\w+) @ [^\]]*\] Format not on whitelist"
    r"|Protocol '(?P<protocol>[\w.+-]+)' not on whitelist"
)


def classify_probe_failure(
    stderr: str, *, size_bytes: int, leading_bytes: bytes, read: Reader | None = None
) -> MediaRejected:
    """Explain a non-zero ffprobe exit from the object's size and leading bytes.

    ffprobe prints the same "moov atom not found … Invalid data found when processing
    input" for an empty file, random bytes, a text file and a cut MP4 when the name ends
    in ``.mp4``, so the message is only quoted, never used to decide. ``read(offset,
    length)``, when given, lets the MP4 box walk and the Matroska size check look past the
    leading bytes. Returns (does not raise) the :class:`MediaRejected` to raise. Transport
    errors (HTTP 404, refused connections) are :func:`classify_transport_failure`'s
    business; call it first.
    """
    if size_bytes == 0:
        return _empty()
    # ffprobe runs with an allow-list of demuxers and protocols (adapters.ffmpeg_inputs):
    # a playlist or reference file that would make it open other inputs is refused there.
    refused = _REFUSED_INPUT.search(stderr)
    if refused is not None:
        what = refused.group("format") or refused.group("protocol")
        return _unsupported(
            f"not a video: {what} data that names other inputs to read (refused: edvmp reads "
            "the upload itself only)"
        )
    detail = f"ffprobe: {ffprobe_messages(stderr) or 'no message'}"
    head = leading_bytes
    if not head:
        return _corrupt(f"unrecognised or corrupt data ({detail}; first bytes not available)")
    structure = prefixed_reader(head, read or bytes_reader(head))
    if head[4:8] in MP4_OPENING_BOXES:
        return _mp4_failure(structure, size_bytes, detail)
    structure_checks = (
        (EBML_MAGIC, ebml_truncation),
        (RIFF_MAGIC, riff_truncation),
        (FLV_MAGIC, flv_truncation),
        (ASF_MAGIC, asf_truncation),
        (MXF_MAGIC, mxf_truncation),
    )
    for magic, check in structure_checks:
        if head.startswith(magic):
            cut = check(structure, size_bytes)
            if cut is not None:
                return _corrupt(cut)
    for magic, what in _IMAGE_MAGIC:
        if head.startswith(magic):
            return _unsupported(f"not a video: {what} data ({detail})")
    for magic, what in _DOCUMENT_MAGIC:
        if head.startswith(magic):
            return _unsupported(f"not a video: looks like {what}")
    if _looks_like_text(head):
        return _unsupported("not a video: looks like a text file")
    for magic, what in _CONTAINER_MAGIC:
        if head.startswith(magic):
            return _corrupt(f"unrecognised or corrupt data ({what} but {detail})")
    first = head[:8].hex(" ")
    return _corrupt(
        f"unrecognised or corrupt data (no known signature, first bytes {first}; {detail})"
    )


# ffprobe stderr fragments (lower case) that mean the store or the path failed, not the media.
_TRANSPORT_PATTERNS: tuple[tuple[str, type[PipelineError], str], ...] = (
    ("server returned 404", ObjectMissing, "object missing: the store answered 404 Not Found"),
    ("no such file or directory", ObjectMissing, "object missing: no such file"),
    ("server returned 403", AccessDenied,
     "access denied: the store answered 403 Forbidden (expired or badly signed URL?)"),
    ("server returned 401", AccessDenied, "access denied: the store answered 401"),
    ("permission denied", AccessDenied, "access denied: permission denied reading the object"),
    ("server returned 5", StoreUnreachable, "store error: the store answered a 5xx error"),
    ("connection timed out", StoreUnreachable, "store unreachable: read timed out"),
    ("connection refused", StoreUnreachable, "store unreachable: connection refused"),
    ("connection reset", StoreUnreachable, "store unreachable: connection reset"),
    ("network is unreachable", StoreUnreachable, "store unreachable: network is unreachable"),
    ("no route to host", StoreUnreachable, "store unreachable: no route to host"),
    ("failed to resolve", StoreUnreachable, "store unreachable: host name did not resolve"),
    ("name or service not known", StoreUnreachable,
     "store unreachable: host name did not resolve"),
)  # fmt: skip


def classify_transport_failure(stderr: str) -> PipelineError | None:
    """The store/path error behind a failed ffprobe, or None when the failure is the media's.

    A presigned URL that expired answers 403, a deleted object 404, a stalled server
    trips ``-rw_timeout`` ("Connection timed out"): these are not properties of the bytes
    and must not be recorded as corrupt media.
    """
    lowered = stderr.lower()
    for needle, error_type, reason in _TRANSPORT_PATTERNS:
        if needle in lowered:
            return error_type(f"{reason} ({ffprobe_messages(stderr)})")
    return None
