"""Unit tests for the pure ffprobe normalisation (real captured JSON + hand-written edges)."""

from __future__ import annotations

import copy
import struct
from typing import Any

import pytest

from edvmp_pipeline.domain.errors import (
    AccessDenied,
    MediaRejected,
    ObjectMissing,
    StoreUnreachable,
)
from edvmp_pipeline.domain.probe_normalise import (
    classify_probe_failure,
    classify_transport_failure,
    ffprobe_messages,
    normalise_probe,
)
from edvmp_pipeline_tests.media_factory import MP4_FORMAT, MediaCorpus, probe_json

MOOV_STDERR = (
    "[mov,mp4,m4a,3gp,3g2,mj2 @ 0x55e49fc1d1c0] moov atom not found\n"
    "file:/data/x.mp4: Invalid data found when processing input\n"
)


# ------------------------------------------------------------------------ JSON builders


def video_stream(index: int = 0, **overrides: Any) -> dict[str, Any]:
    stream: dict[str, Any] = {
        "index": index,
        "codec_name": "h264",
        "codec_long_name": "H.264 / AVC / MPEG-4 AVC / MPEG-4 part 10",
        "profile": "High",
        "codec_type": "video",
        "width": 1920,
        "height": 1080,
        "pix_fmt": "yuv420p",
        "r_frame_rate": "30/1",
        "avg_frame_rate": "30/1",
        "duration": "10.000000",
        "bit_rate": "4000000",
        "bits_per_raw_sample": "8",
        "nb_frames": "300",
        "disposition": {"default": 1, "attached_pic": 0},
        "tags": {"language": "und"},
    }
    stream.update(overrides)
    return stream


def audio_stream(index: int = 1, **overrides: Any) -> dict[str, Any]:
    stream: dict[str, Any] = {
        "index": index,
        "codec_name": "aac",
        "codec_type": "audio",
        "sample_rate": "48000",
        "channels": 2,
        "channel_layout": "stereo",
        "r_frame_rate": "0/0",
        "avg_frame_rate": "0/0",
        "duration": "10.000000",
        "bit_rate": "128000",
        "disposition": {"default": 1, "attached_pic": 0},
        "tags": {"language": "eng"},
    }
    stream.update(overrides)
    return stream


def probe_doc(*streams: dict[str, Any], **fmt: Any) -> dict[str, Any]:
    doc_format: dict[str, Any] = {
        "format_name": MP4_FORMAT,
        "format_long_name": "QuickTime / MOV",
        "duration": "10.000000",
        "size": "5200000",
        "bit_rate": "4160000",
        "probe_score": 100,
        "tags": {"major_brand": "isom", "minor_version": 512},
    }
    doc_format.update(fmt)
    return {"streams": list(streams), "format": doc_format}


SIZE = 5_200_000  # > (4 000 000 + 128 000) b/s x 10 s / 8 = 5 160 000 declared bytes


def reject(doc: dict[str, Any], size: int = SIZE) -> MediaRejected:
    with pytest.raises(MediaRejected) as info:
        normalise_probe(doc, size_bytes=size)
    return info.value


# ------------------------------------------------------------------- real ffprobe JSON


def real(media_corpus: MediaCorpus, name: str) -> tuple[dict[str, Any], int]:
    path = media_corpus[name].path
    return probe_json(path), path.stat().st_size


def test_real_mp4_json(media_corpus: MediaCorpus) -> None:
    doc, size = real(media_corpus, "h264_aac_mp4")
    record = normalise_probe(doc, size_bytes=size)
    assert record.format_name == "mov,mp4,m4a,3gp,3g2,mj2"
    assert (record.video_codec, record.width, record.height) == ("h264", 160, 120)
    assert record.fps == 30.0
    assert (record.audio_codec, record.audio_channels, record.sample_rate_hz) == ("aac", 2, 48000)
    assert record.probe_score == 100
    assert record.tags["major_brand"] == "isom"
    assert all(isinstance(v, str) for v in record.tags.values())
    assert [s.codec_type for s in record.streams] == ["video", "audio"]
    assert record.streams[1].channel_layout == "stereo"
    assert record.bit_rate and record.bit_rate > 0


def test_real_rotated_json_and_rotation_variants(media_corpus: MediaCorpus) -> None:
    doc, size = real(media_corpus, "rotated_mp4")
    video = doc["streams"][0]
    # The phone-style matrix: ffprobe says -90 (counter-clockwise), we store 90 clockwise.
    assert video["side_data_list"][0]["rotation"] == -90
    assert normalise_probe(doc, size_bytes=size).rotation == 90
    assert normalise_probe(doc, size_bytes=size).streams[0].rotation == 90

    for ccw, clockwise in [(90, 270), (180, 180), (-180, 180), (-270, 270), (0, 0)]:
        variant = copy.deepcopy(doc)
        variant["streams"][0]["side_data_list"][0]["rotation"] = ccw
        assert normalise_probe(variant, size_bytes=size).rotation == clockwise, ccw

    legacy = copy.deepcopy(doc)
    del legacy["streams"][0]["side_data_list"]
    legacy["streams"][0]["tags"]["rotate"] = "90"  # ffprobe < 5 style: clockwise already
    assert normalise_probe(legacy, size_bytes=size).rotation == 90
    legacy["streams"][0]["tags"]["rotate"] = "-90"
    assert normalise_probe(legacy, size_bytes=size).rotation == 270

    both = copy.deepcopy(doc)  # old ffprobe printed both; they agree, the matrix wins
    both["streams"][0]["tags"]["rotate"] = "90"
    assert normalise_probe(both, size_bytes=size).rotation == 90


def test_real_ntsc_and_mkv_json(media_corpus: MediaCorpus) -> None:
    doc, size = real(media_corpus, "ntsc_mp4")
    assert normalise_probe(doc, size_bytes=size).fps == pytest.approx(29.97002997, abs=1e-8)
    assert normalise_probe(doc, size_bytes=size).fps == 30000 / 1001

    doc, size = real(media_corpus, "subtitles_mkv")
    record = normalise_probe(doc, size_bytes=size)
    assert record.format_name == "matroska,webm"
    assert record.n_subtitle_streams == 2
    # Matroska streams carry no duration field, only a DURATION tag.
    assert "duration" not in doc["streams"][0]
    assert record.streams[0].duration_s == pytest.approx(1.023, abs=0.01)


def test_real_truncated_faststart_json(media_corpus: MediaCorpus) -> None:
    doc, size = real(media_corpus, "truncated_faststart_mp4")
    assert float(doc["format"]["duration"]) == pytest.approx(2.0, abs=0.05)  # "looks fine"
    error = reject(doc, size)
    assert error.error_class == "corrupt_media"
    assert error.reason.startswith("truncated file: streams declare ")
    # The same JSON with the full size is accepted: the size decides.
    assert normalise_probe(doc, size_bytes=size * 2).duration_s == pytest.approx(2.0, abs=0.05)


# --------------------------------------------------------------- hand-written edge cases


def test_fields_from_hand_written_json() -> None:
    record = normalise_probe(probe_doc(video_stream(), audio_stream()), size_bytes=SIZE)
    assert record.duration_s == 10.0
    assert record.bit_rate == 4160000
    assert record.tags == {"major_brand": "isom", "minor_version": "512"}
    video, audio = record.streams
    assert (video.width, video.height, video.bits_per_raw_sample, video.fps) == (1920, 1080, 8, 30)
    assert video.channels is None and audio.width is None and audio.rotation is None
    assert (audio.language, audio.channels, audio.sample_rate_hz) == ("eng", 2, 48000)
    assert record.as_row()["n_audio_streams"] == 1


def test_fps_falls_back_to_r_frame_rate() -> None:
    doc = probe_doc(video_stream(avg_frame_rate="0/0", r_frame_rate="25/1"))
    assert normalise_probe(doc, size_bytes=SIZE).fps == 25.0
    doc = probe_doc(video_stream(avg_frame_rate="0/0", r_frame_rate="0/0"))
    assert normalise_probe(doc, size_bytes=SIZE).fps is None
    doc = probe_doc(video_stream(avg_frame_rate="junk", r_frame_rate="24000/1001"))
    assert normalise_probe(doc, size_bytes=SIZE).fps == pytest.approx(23.976, abs=1e-3)


def test_missing_bit_rates_and_durations() -> None:
    video = video_stream()
    del video["bit_rate"], video["duration"]
    doc = probe_doc(video)
    del doc["format"]["bit_rate"], doc["format"]["duration"]
    record = normalise_probe(doc, size_bytes=1000)  # nothing declared: no truncation check
    assert record.bit_rate is None and record.duration_s is None
    assert record.audio_codec is None and record.n_audio_streams == 0

    doc = probe_doc(video_stream(duration="7.5"), audio_stream(duration="8.0"))
    del doc["format"]["duration"]
    assert normalise_probe(doc, size_bytes=SIZE).duration_s == 7.5  # the video stream's


def test_cover_art_is_not_the_video_stream() -> None:
    cover = video_stream(0, codec_name="mjpeg", width=600, height=600,
                         disposition={"attached_pic": 1}, nb_frames="1")  # fmt: skip
    doc = probe_doc(cover, video_stream(1, codec_name="hevc"), audio_stream(2))
    record = normalise_probe(doc, size_bytes=SIZE)
    assert (record.video_codec, record.width, record.n_video_streams) == ("hevc", 1920, 1)
    assert len(record.streams) == 3

    error = reject(probe_doc(audio_stream(0), cover, format_name="mp3"))
    assert error.error_class == "unsupported_media"
    assert error.reason == "no video stream: audio-only file (aac, 1 audio stream, cover art only)"


def test_no_video_reasons() -> None:
    error = reject(probe_doc(audio_stream(0, codec_name="mp3"), format_name="mp3"))
    assert error.reason == "no video stream: audio-only file (mp3, 1 audio stream)"
    error = reject(probe_doc(audio_stream(0), audio_stream(1, codec_name="ac3")))
    assert error.reason == "no video stream: audio-only file (aac/ac3, 2 audio streams)"
    error = reject(probe_doc(format_name="ffmetadata"))
    assert error.reason == "no video stream: ffprobe found no streams at all (ffmetadata)"
    error = reject(probe_doc({"index": 0, "codec_type": "subtitle", "codec_name": "subrip"}))
    assert error.reason.startswith("no video stream: only 1 subtitle stream")
    assert error.error_class == "unsupported_media"


@pytest.mark.parametrize(
    ("format_name", "overrides"),
    [
        ("png_pipe", {"codec_name": "png", "duration": None, "nb_frames": None}),
        ("image2", {"codec_name": "mjpeg", "duration": "0.040000"}),
        ("gif", {"codec_name": "gif", "nb_frames": "1", "duration": "0.1"}),
        (MP4_FORMAT, {"codec_name": "png", "nb_frames": "1"}),
    ],
)
def test_still_images(format_name: str, overrides: dict[str, Any]) -> None:
    stream = {k: v for k, v in video_stream(**overrides).items() if v is not None}
    doc = probe_doc(stream, format_name=format_name)
    if format_name == "png_pipe":
        del doc["format"]["duration"]
    error = reject(doc)
    assert error.error_class == "unsupported_media"
    assert error.reason == f"still image ({overrides['codec_name']}), not a video"


def test_animated_gif_and_mjpeg_video_are_videos() -> None:
    gif = probe_doc(video_stream(codec_name="gif", nb_frames="13"), format_name="gif")
    assert normalise_probe(gif, size_bytes=SIZE).video_codec == "gif"
    avi = probe_doc(video_stream(codec_name="mjpeg"), format_name="avi")
    assert normalise_probe(avi, size_bytes=SIZE).video_codec == "mjpeg"


def test_bogus_probe_of_random_bytes() -> None:
    # What ffprobe 5.1 printed for 64 KiB of random bytes named .m4v.
    stream = {"index": 0, "codec_name": "mpeg4", "codec_type": "video", "width": 0, "height": 0,
              "r_frame_rate": "25/1", "avg_frame_rate": "0/0"}  # fmt: skip
    doc = {"streams": [stream], "format": {"format_name": "m4v", "probe_score": 1}}
    error = reject(doc, 65536)
    assert error.error_class == "corrupt_media"
    assert "probe score 1/100" in error.reason and "video mpeg4 0x0" in error.reason
    # Score 26 is what a real MPEG-PS file scored: accepted.
    assert normalise_probe(probe_doc(video_stream(), format_name="mpeg", probe_score=26),
                           size_bytes=SIZE).probe_score == 26  # fmt: skip


@pytest.mark.parametrize(("width", "height"), [(0, 0), (1920, 0), (20000, 1080), (None, None)])
def test_absurd_dimensions(width: int | None, height: int | None) -> None:
    error = reject(probe_doc(video_stream(width=width, height=height)))
    assert error.error_class == "corrupt_media"
    assert "absurd frame size" in error.reason


def test_missing_codec() -> None:
    # No codec and no four-character code to name one: the stream header is damaged.
    stream = video_stream(codec_tag_string="[0][0][0][0]")
    del stream["codec_name"]
    error = reject(probe_doc(stream))
    assert error.error_class == "corrupt_media"
    assert error.reason == (
        "corrupt video stream: ffprobe identified no codec (codec tag [0][0][0][0])"
    )


def test_unknown_fourcc_is_unsupported_not_corrupt() -> None:
    # A real codec tag ffprobe cannot decode (ProRes RAW): the file is fine, the codec is not
    # one this ffprobe knows; "corrupt" would send the uploader to re-upload the same bytes.
    stream = video_stream(codec_tag_string="aprn")
    del stream["codec_name"]
    error = reject(probe_doc(stream))
    assert error.error_class == "unsupported_media"
    assert error.reason == "unsupported video codec: ffprobe does not know codec tag 'aprn'"


def test_truncation_threshold() -> None:
    doc = probe_doc(video_stream(), audio_stream())  # declares 5 160 000 bytes
    assert normalise_probe(doc, size_bytes=5_160_000).width == 1920  # exact: fine
    assert normalise_probe(doc, size_bytes=4_950_000).width == 1920  # 1.04: under 1.05
    error = reject(doc, 2_580_000)  # cut in half
    assert error.error_class == "corrupt_media"
    assert error.reason == (
        "truncated file: streams declare 5.2 MB but object holds 2.6 MB "
        "(about 50% of the media data is missing)"
    )
    # Tiny file: ratio over 1.05 but only 2 kB of excess stays under the rounding margin.
    small = probe_doc(video_stream(bit_rate="80000", duration="1.0"), duration="1.0")
    assert normalise_probe(small, size_bytes=8000).width == 1920
    # Non-MOV containers are never checked: their stream bit rates are not measured.
    mpeg = probe_doc(video_stream(bit_rate="104857200"), format_name="mpeg", probe_score=26)
    assert normalise_probe(mpeg, size_bytes=65536).video_codec == "h264"


def test_empty_object() -> None:
    error = reject(probe_doc(video_stream()), 0)
    assert (error.error_class, error.reason) == ("empty_object", "empty object: 0 bytes")


# ------------------------------------------------------------------ classify failures


def _box(kind: bytes, size: int, payload: bytes = b"") -> bytes:
    return struct.pack(">I4s", size, kind) + payload


FTYP = _box(b"ftyp", 32, b"isom\x00\x00\x02\x00isomiso2avc1mp41")


def classify(head: bytes, size: int | None = None, stderr: str = MOOV_STDERR) -> MediaRejected:
    return classify_probe_failure(stderr, size_bytes=len(head) if size is None else size,
                                  leading_bytes=head)  # fmt: skip


def test_classify_empty() -> None:
    error = classify(b"", 0)
    assert (error.error_class, error.reason) == ("empty_object", "empty object: 0 bytes")


def test_classify_text() -> None:
    text = "Meeting notes\n\t- ünïcödé".encode()
    for cut in (0, 1):  # the 64-byte sample may end inside the two-byte "é"
        error = classify(text[: len(text) - cut], 10_000)
        assert error.error_class == "unsupported_media"
        assert error.reason == "not a video: looks like a text file"
    assert classify(b"\xef\xbb\xbfhello\r\n", 100).error_class == "unsupported_media"
    # Control characters are not text.
    assert classify(b"hello\x00\x01\x02world", 100).error_class == "corrupt_media"


def test_classify_mp4_truncated_complete_and_open_ended() -> None:
    head = (FTYP + _box(b"free", 8) + _box(b"mdat", 116_000 - 40, b"\xde\x02\x00Lavc"))[:64]
    error = classify(head, 58_000)
    assert error.error_class == "corrupt_media"
    assert error.reason == (
        "truncated file: moov atom not found ('mdat' box needs 116,000 bytes, object holds 58,000)"
    )
    error = classify(head, 116_000)  # every box complete, the moov is simply absent
    assert error.error_class == "corrupt_media"
    assert "moov atom not found (boxes ftyp, free, mdat are complete" in error.reason
    error = classify(FTYP + _box(b"mdat", 0), 50_000)
    assert "open-ended" in error.reason and "never finalised" in error.reason
    # 64-bit mdat size (size field 1 + largesize).
    big = FTYP + struct.pack(">I4sQ", 1, b"mdat", 5_000_000_000)
    assert "needs 5,000,000,032 bytes" in classify(big, 2_000_000_000).reason
    # Only the ftyp is visible: still an MP4 failure, quoting ffprobe.
    error = classify(FTYP, 10_000)
    assert error.reason.startswith("corrupt MP4: moov atom not found (ffprobe: moov atom not found")


@pytest.mark.parametrize(
    ("head", "error_class", "reason_start"),
    [
        (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", "unsupported_media", "not a video: PNG image"),
        (b"\xff\xd8\xff\xe0\x00\x10JFIF", "unsupported_media", "not a video: JPEG image"),
        (b"GIF89a\x10\x00", "unsupported_media", "not a video: GIF image"),
        (b"%PDF-1.7\n%\xe2\xe3\xcf\xd3", "unsupported_media", "not a video: looks like a PDF"),
        (b"\x1a\x45\xdf\xa3\x9f\x42\x86\x81", "corrupt_media",
         "unrecognised or corrupt data (Matroska/WebM header but ffprobe:"),
        (bytes(range(200, 256)), "corrupt_media",
         "unrecognised or corrupt data (no known signature, first bytes c8 c9 ca cb"),
    ],
)  # fmt: skip
def test_classify_signatures(head: bytes, error_class: str, reason_start: str) -> None:
    error = classify(head, 100_000)
    assert error.error_class == error_class
    assert error.reason.startswith(reason_start), error.reason


def test_classify_without_leading_bytes() -> None:
    error = classify(b"", 100_000)
    assert error.error_class == "corrupt_media"
    assert error.reason.endswith("first bytes not available)")


def test_ffprobe_messages_strip_prefixes_and_presigned_queries() -> None:
    assert ffprobe_messages(MOOV_STDERR) == (
        "moov atom not found; Invalid data found when processing input"
    )
    stderr = (
        "https://s3.example/b/k.mp4?X-Amz-Credential=AK%2F1&X-Amz-Signature=abc: "
        "Server returned 404 Not Found\n"
    )
    assert ffprobe_messages(stderr) == "Server returned 404 Not Found"
    assert "Signature" not in ffprobe_messages("[http @ 0x1] GET https://h/k?X-Amz-Signature=s")


def test_classify_transport_failure() -> None:
    url = "https://s3.example/b/k.mp4?X-Amz-Signature=secret"
    cases = [
        (f"{url}: Server returned 404 Not Found", ObjectMissing),
        (f"{url}: Server returned 403 Forbidden (access denied)", AccessDenied),
        (f"{url}: Server returned 5XX Server Error reply", StoreUnreachable),
        (
            "[tcp @ 0x5] Connection to tcp://127.0.0.1:9 failed: Connection refused",
            StoreUnreachable,
        ),
        (f"{url}: Connection timed out", StoreUnreachable),
        ("file:/gone.mp4: No such file or directory", ObjectMissing),
    ]
    for stderr, expected in cases:
        error = classify_transport_failure(stderr)
        assert isinstance(error, expected), stderr
        assert "secret" not in error.reason
    assert classify_transport_failure(MOOV_STDERR) is None
    assert StoreUnreachable("x").retryable and not ObjectMissing("x").retryable
