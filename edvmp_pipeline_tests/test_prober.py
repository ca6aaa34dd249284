"""Integration tests: the real ffprobe on every generated corpus case, over files and HTTP."""

from __future__ import annotations

import functools
import http.server
import os
import shutil
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from edvmp_pipeline.adapters.prober import FfprobeProber, read_leading_bytes
from edvmp_pipeline.domain.errors import (
    ConfigError,
    MediaRejected,
    ObjectMissing,
    ProbeTimeout,
    StoreUnreachable,
)
from edvmp_pipeline.domain.records import VideoRecord
from edvmp_pipeline_tests.media_factory import BAD_CASES, GOOD_CASES, MediaCase, MediaCorpus

PROBER = FfprobeProber()


def case(media_corpus: MediaCorpus, name: str) -> MediaCase:
    if name in media_corpus.skipped:
        pytest.skip(media_corpus.skipped[name])
    return media_corpus[name]


def probe_file(
    path: Path, prober: FfprobeProber = PROBER, *, leading_bytes: bytes = b""
) -> VideoRecord:
    return prober.probe(str(path), size_bytes=path.stat().st_size, leading_bytes=leading_bytes)


@pytest.mark.parametrize("name", sorted(GOOD_CASES))
def test_good_media_exact_values(media_corpus: MediaCorpus, name: str) -> None:
    path, expected = case(media_corpus, name)
    record = probe_file(path)
    for field, value in expected.items():
        actual = getattr(record, field)
        if field == "duration_s":
            # AAC priming and Matroska's millisecond timestamps move it by up to ~25 ms.
            assert actual == pytest.approx(value, abs=0.05), field
        elif isinstance(value, float):
            assert actual == pytest.approx(value, rel=1e-12), field
        else:
            assert actual == value, field
    assert record.probe_score == 100
    assert len(record.streams) == (
        record.n_video_streams + record.n_audio_streams + record.n_subtitle_streams
    )


@pytest.mark.parametrize("name", sorted(BAD_CASES))
def test_bad_media_is_rejected(media_corpus: MediaCorpus, name: str) -> None:
    path, expected = case(media_corpus, name)
    with pytest.raises(MediaRejected) as info:
        probe_file(path)
    error = info.value
    assert error.error_class == expected["error_class"], error.reason
    assert expected["reason_contains"] in error.reason
    assert not error.retryable
    assert "\n" not in error.reason


def test_stream_details(media_corpus: MediaCorpus) -> None:
    two = probe_file(case(media_corpus, "two_audio_mp4").path)
    second = two.streams[2]
    assert (second.codec_type, second.codec_name, second.channels, second.sample_rate_hz) == (
        "audio",
        "aac",
        1,
        44100,
    )
    hevc = probe_file(case(media_corpus, "hevc10_mp4").path)
    assert hevc.streams[0].profile == "Main 10"
    subs = probe_file(case(media_corpus, "subtitles_mkv").path)
    assert [s.codec_name for s in subs.streams if s.codec_type == "subtitle"] == ["subrip"] * 2
    mp4_subs = probe_file(case(media_corpus, "subtitles_mp4").path)
    assert mp4_subs.streams[2].codec_name == "mov_text"
    rotated = probe_file(case(media_corpus, "rotated_mp4").path)
    # Stored frame, not the displayed one: the portrait clip keeps its landscape coded size.
    assert (rotated.width, rotated.height, rotated.streams[0].rotation) == (160, 120, 90)


def test_leading_bytes_given_or_read(media_corpus: MediaCorpus) -> None:
    path = case(media_corpus, "truncated_mp4").path
    head = read_leading_bytes(path)
    assert len(head) == 64 and head[4:8] == b"ftyp"
    with pytest.raises(MediaRejected) as given:
        probe_file(path, leading_bytes=head)
    with pytest.raises(MediaRejected) as read:
        probe_file(path)
    assert given.value.reason == read.value.reason


def test_awkward_local_names(media_corpus: MediaCorpus, tmp_path: Path) -> None:
    # Object keys become folder paths: a colon must not be read as a protocol, nor a
    # leading dash as an option.
    src = case(media_corpus, "video_only_mp4").path
    for name in ["http:odd name.mp4", "-i.mp4", "ünï cödé,[1].mp4"]:
        target = tmp_path / name
        shutil.copy(src, target)
        assert probe_file(target).video_codec == "h264"
        relative = os.path.relpath(target)
        assert PROBER.probe(relative, size_bytes=target.stat().st_size).width == 160


def test_missing_local_file(tmp_path: Path) -> None:
    with pytest.raises(ObjectMissing):
        PROBER.probe(str(tmp_path / "gone.mp4"), size_bytes=10)


def test_probe_timeout_kills_ffprobe(tmp_path: Path) -> None:
    fifo = tmp_path / "stalled.mp4"
    os.mkfifo(fifo)  # ffprobe blocks opening a FIFO that has no writer
    prober = FfprobeProber(timeout_s=0.3)
    started = time.monotonic()
    with pytest.raises(ProbeTimeout) as info:
        prober.probe(str(fifo), size_bytes=1)
    assert time.monotonic() - started < 3
    assert info.value.reason == "probe timeout: ffprobe did not finish in 0.3 s"
    assert info.value.retryable


def test_ffprobe_missing_is_config_error(media_corpus: MediaCorpus, tmp_path: Path) -> None:
    path = case(media_corpus, "video_only_mp4").path
    with pytest.raises(ConfigError) as info:
        probe_file(path, FfprobeProber(ffprobe_path=str(tmp_path / "no-ffprobe")))
    assert "cannot run ffprobe" in info.value.reason
    assert "ffprobe_path" in info.value.reason


def test_command_line() -> None:
    url = "https://s3.local/b/k.mp4?X-Amz-Signature=s"
    cmd = FfprobeProber(rw_timeout_s=2.5).command(url)
    assert cmd[cmd.index("-rw_timeout") + 1] == "2500000"
    assert cmd[-2:] == ["-i", url]
    local = PROBER.command("/data/a:b.mp4")
    assert "-rw_timeout" not in local and local[-2:] == ["-i", "file:/data/a:b.mp4"]


# ------------------------------------------------------------------------ over HTTP


class _Handler(http.server.SimpleHTTPRequestHandler):
    def do_GET(self) -> None:
        if self.path.startswith("/forbidden"):
            self.send_error(403, "Forbidden")
            return
        super().do_GET()

    def log_message(self, format: str, *args: object) -> None:
        pass  # keep test output clean


@pytest.fixture(scope="module")
def http_base(media_corpus: MediaCorpus) -> Iterator[str]:
    """A loopback HTTP server over the corpus folder (stands in for a presigned GET URL)."""
    folder = next(iter(media_corpus.values())).path.parent
    handler = functools.partial(_Handler, directory=str(folder))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_http_probe(media_corpus: MediaCorpus, http_base: str) -> None:
    for name in ["ntsc_mp4", "h264_aac_mp4"]:  # index at the front and at the end
        path, expected = case(media_corpus, name)
        record = PROBER.probe(f"{http_base}/{path.name}?sig=x", size_bytes=path.stat().st_size)
        assert (record.fps, record.width) == (expected["fps"], expected["width"])


def test_http_corrupt_cases(media_corpus: MediaCorpus, http_base: str) -> None:
    for name in ["truncated_faststart_mp4", "truncated_mp4", "text_mp4"]:
        path, expected = case(media_corpus, name)
        url = f"{http_base}/{path.name}"
        head = path.read_bytes()[:64]  # what the object store reads with a Range GET
        with pytest.raises(MediaRejected) as info:
            PROBER.probe(url, size_bytes=path.stat().st_size, leading_bytes=head)
        assert info.value.error_class == expected["error_class"]
        assert expected["reason_contains"] in info.value.reason


def test_http_transport_errors(http_base: str) -> None:
    with pytest.raises(ObjectMissing):
        PROBER.probe(f"{http_base}/nope.mp4?X-Amz-Signature=s", size_bytes=10)
    with pytest.raises(Exception) as info:
        PROBER.probe(f"{http_base}/forbidden.mp4?X-Amz-Signature=secret", size_bytes=10)
    assert info.value.error_class == "access_denied"  # type: ignore[attr-defined]
    assert "secret" not in str(info.value)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        closed_port = sock.getsockname()[1]  # bound but not listening: refused
        with pytest.raises(StoreUnreachable) as refused:
            PROBER.probe(f"http://127.0.0.1:{closed_port}/x.mp4", size_bytes=10)
    assert refused.value.retryable


def test_http_stalled_server_hits_rw_timeout() -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)  # accepts the TCP connection, never answers
        port = listener.getsockname()[1]
        prober = FfprobeProber(rw_timeout_s=0.3, timeout_s=10)
        started = time.monotonic()
        with pytest.raises(StoreUnreachable) as info:
            prober.probe(f"http://127.0.0.1:{port}/x.mp4", size_bytes=10)
    assert time.monotonic() - started < 5
    assert "timed out" in info.value.reason
