"""A deterministic, network-free summary of a video record.

This is the default summarizer: it needs no credentials and the same record always gives the
same text, byte for byte, so summaries can be compared across runs and in tests. It only
states facts present in the record; anything unknown is left out rather than guessed.
"""

from __future__ import annotations

import json
import re

from edvmp_pipeline.domain.records import StreamRecord, VideoRecord

# ffprobe codec names → the names people use. Unknown codecs are shown as ffprobe names them.
VIDEO_CODEC_NAMES: dict[str, str] = {
    "h264": "H.264",
    "hevc": "HEVC (H.265)",
    "h265": "HEVC (H.265)",
    "vvc": "VVC (H.266)",
    "vp8": "VP8",
    "vp9": "VP9",
    "av1": "AV1",
    "mpeg4": "MPEG-4 Part 2",
    "mpeg2video": "MPEG-2",
    "mpeg1video": "MPEG-1",
    "h263": "H.263",
    "mjpeg": "Motion JPEG",
    "prores": "ProRes",
    "dnxhd": "DNxHD",
    "theora": "Theora",
    "ffv1": "FFV1",
    "vc1": "VC-1",
    "wmv3": "WMV 9",
    "png": "PNG",
    "gif": "GIF",
    "rawvideo": "raw",
}

AUDIO_CODEC_NAMES: dict[str, str] = {
    "aac": "AAC",
    "opus": "Opus",
    "mp3": "MP3",
    "mp2": "MP2",
    "vorbis": "Vorbis",
    "flac": "FLAC",
    "alac": "ALAC",
    "ac3": "AC-3",
    "eac3": "E-AC-3",
    "dts": "DTS",
    "truehd": "Dolby TrueHD",
    "amr_nb": "AMR-NB",
    "amr_wb": "AMR-WB",
    "wmav2": "WMA",
}

# Layout names worth repeating as is; "(side)"/"(wide)" variants are folded into them.
_KNOWN_LAYOUTS = {"mono", "stereo", "2.1", "3.0", "quad", "4.0", "4.1", "5.0", "5.1", "6.1", "7.1"}
_CHANNELS_TO_LAYOUT = {1: "mono", 2: "stereo", 6: "5.1", 8: "7.1"}

# yuv420p10le, gbrp12be, p010le ... : the trailing digits before the endianness are the depth.
_PIX_FMT_DEPTH = re.compile(r"p0?(\d{2})(?:le|be)$")

# Initial letters whose spoken name starts with a vowel sound ("an H.264", "an MP3").
_VOWEL_SOUND_LETTERS = set("AEFHILMNORSX")


def video_codec_name(codec: str | None) -> str | None:
    """Display name of an ffprobe video codec name (``hevc`` → ``HEVC (H.265)``)."""
    if not codec:
        return None
    return VIDEO_CODEC_NAMES.get(codec.lower(), codec)


def audio_codec_name(codec: str | None) -> str | None:
    """Display name of an ffprobe audio codec name (``aac`` → ``AAC``, ``pcm_s16le`` → PCM)."""
    if not codec:
        return None
    lowered = codec.lower()
    if lowered.startswith("pcm_"):
        # pcm_s16le, pcm_f32le ...: the bit depth is what a reader cares about.
        match = re.search(r"(\d+)", lowered)
        return f"{match.group(1)}-bit PCM" if match else "PCM"
    return AUDIO_CODEC_NAMES.get(lowered, codec)


def format_duration(seconds: float) -> str:
    """Duration as an adjective: ``12.4-second``, ``2 min 05 s``, ``1 h 02 min``."""
    if seconds < 1:
        text = f"{seconds:.2f}".rstrip("0").rstrip(".") or "0"
        return f"{text}-second"
    if round(seconds, 1) < 60:
        text = f"{seconds:.1f}".removesuffix(".0")
        return f"{text}-second"
    total_s = round(seconds)
    if total_s < 3600:
        minutes, secs = divmod(total_s, 60)
        return f"{minutes} min {secs:02d} s"
    hours, minutes = divmod(round(seconds / 60), 60)
    return f"{hours} h {minutes:02d} min"


def format_sample_rate(hz: int) -> str:
    """``48000`` → ``48 kHz``, ``44100`` → ``44.1 kHz``."""
    text = f"{hz / 1000:.3f}".rstrip("0").rstrip(".")
    return f"{text} kHz"


def format_fps(fps: float) -> str:
    """``29.97002997`` → ``29.97``, ``30.0`` → ``30``."""
    return f"{fps:.2f}".rstrip("0").rstrip(".")


def bit_depth(pix_fmt: str | None, stream: StreamRecord | None = None) -> int | None:
    """Bits per sample from the pixel format name, else from the stream's raw sample size."""
    if pix_fmt:
        match = _PIX_FMT_DEPTH.search(pix_fmt)
        if match:
            return int(match.group(1))
    if stream is not None and stream.bits_per_raw_sample:
        return stream.bits_per_raw_sample
    return None


def channel_layout_name(channels: int | None, layout: str | None = None) -> str | None:
    """``stereo``, ``mono``, ``5.1`` ... from the layout name or the channel count."""
    if layout:
        base = layout.split("(", 1)[0].strip().lower()
        if base in _KNOWN_LAYOUTS:
            return base
    if channels:
        return _CHANNELS_TO_LAYOUT.get(channels, f"{channels}-channel")
    return None


def _article(phrase: str) -> str:
    """``a`` or ``an`` for the spoken form of ``phrase``'s first word."""
    word = phrase.split(" ", 1)[0]
    digits = re.match(r"\d+", word)
    if digits:
        # "an 8-second", "an 11-second", "an 18 min", "an 80-second"
        number = digits.group(0)
        return "an" if number.startswith("8") or int(number) in (11, 18) else "a"
    if len(word) >= 2 and word[0].isupper() and not word[1].islower():
        # Initialisms are read letter by letter: "an H.264", "an MP3", "a VP9".
        return "an" if word[0] in _VOWEL_SOUND_LETTERS else "a"
    return "an" if word[:1].lower() in "aeiou" else "a"


def _plural(count: int, noun: str) -> str:
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"


def _first_stream(record: VideoRecord, codec_type: str) -> StreamRecord | None:
    for stream in record.streams:
        if stream.codec_type == codec_type:
            return stream
    return None


def _audio_description(record: VideoRecord, *, with_noun: bool) -> str:
    """``stereo AAC audio at 48 kHz`` (``with_noun``) or ``stereo AAC at 48 kHz``."""
    stream = _first_stream(record, "audio")
    layout = channel_layout_name(
        record.audio_channels if record.audio_channels else (stream and stream.channels),
        stream.channel_layout if stream else None,
    )
    parts = [p for p in (layout, audio_codec_name(record.audio_codec)) if p]
    if with_noun or not parts:
        parts.append("audio")
    text = " ".join(parts)
    if record.sample_rate_hz:
        text += f" at {format_sample_rate(record.sample_rate_hz)}"
    return text


def _safe_key(object_key: str) -> str:
    # json.dumps quotes the key and escapes quotes and control characters, so an odd key
    # (newlines, quotes) cannot break the sentence or the one-line form of the summary.
    return json.dumps(object_key, ensure_ascii=False)


def offline_summary(record: VideoRecord, object_key: str | None = None) -> str:
    """A readable, deterministic sentence or two describing ``record``.

    Example: ``A 12.4-second 1920×1080 H.264 video at 29.97 fps, rotated 90°, with stereo AAC
    audio at 48 kHz and 1 subtitle track.`` With ``object_key`` the sentence starts with the
    quoted key (``"a/b.mp4" is a 12.4-second ...``). No network, no clock, no randomness.
    """
    video_stream = _first_stream(record, "video")
    has_video = record.n_video_streams > 0

    # The noun phrase: duration, frame size, bit depth, codec.
    words: list[str] = []
    if record.duration_s is not None and record.duration_s >= 0:
        words.append(format_duration(record.duration_s))
    if has_video:
        if record.width and record.height:
            words.append(f"{record.width}×{record.height}")
        depth = bit_depth(record.pix_fmt, video_stream)
        if depth and depth > 8:
            words.append(f"{depth}-bit")
        codec = video_codec_name(record.video_codec)
        if codec:
            words.append(codec)
        words.append("video")
    else:
        words.append("audio-only file" if record.n_audio_streams else "file with no video stream")
    head = " ".join(words)
    if record.duration_s is None:
        head += " of unknown duration"
    if has_video and record.fps:
        head += f" at {format_fps(record.fps)} fps"

    clauses = [head]
    if has_video and record.rotation:
        clauses.append(f"rotated {record.rotation}°")

    # What it comes with: audio, then subtitles.
    if record.n_audio_streams == 0:
        extras = "no audio" if has_video else ""
    elif record.n_audio_streams == 1:
        extras = _audio_description(record, with_noun=True)
    else:
        first = _audio_description(record, with_noun=False)
        extras = f"{record.n_audio_streams} audio tracks ({first} first)"
    if record.n_subtitle_streams:
        subtitles = _plural(record.n_subtitle_streams, "subtitle track")
        extras = f"{extras} and {subtitles}" if extras else subtitles
    body = ", ".join(clauses)
    if extras:
        # "…fps, rotated 90°, with …" but "An audio-only file with …" (no list to separate).
        body += f"{', ' if has_video else ' '}with {extras}"
    if object_key is not None:
        sentence = f"{_safe_key(object_key)} is {_article(body)} {body}."
    else:
        article = _article(body)
        sentence = f"{article[0].upper()}{article[1:]} {body}."

    if record.n_video_streams > 1:
        sentence += (
            f" It has {record.n_video_streams} video streams; the figures are for the first."
        )
    return sentence
