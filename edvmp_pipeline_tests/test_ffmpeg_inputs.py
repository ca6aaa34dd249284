"""ffprobe and ffmpeg read the upload itself only: playlists and reference files that name
other inputs (files outside the folder, URLs on the pipeline's network) are refused."""

from __future__ import annotations

import functools
import http.server
import json
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import ClassVar

import pytest

from edvmp_pipeline.adapters.analyzer import probe_streams
from edvmp_pipeline.adapters.ffmpeg_inputs import (
    allowed_demuxers,
    demuxing_formats,
    input_options,
)
from edvmp_pipeline.adapters.prober import FfprobeProber
from edvmp_pipeline.domain.errors import MediaRejected

LISTING = """File formats:
 D. = Demuxing supported
 .E = Muxing supported
 --
 D  concat          Virtual concatenation script
 DE hls             Apple HTTP Live Streaming
 D  mov,mp4,m4a,3gp,3g2,mj2 QuickTime / MOV
 DE matroska,webm   Matroska / WebM
  E mp4             MP4 (MPEG-4 Part 14)
 DE video4linux2,v4l2 Video4Linux2 output device
"""
DEVICES = """Devices:
 D. = Demuxing supported
 .E = Muxing supported
 --
 DE video4linux2,v4l2 Video4Linux2 output device
  E sdl,sdl2        SDL2 output device
"""


def test_the_allow_list_keeps_containers_and_drops_indirect_formats_and_devices() -> None:
    assert demuxing_formats(DEVICES) == {"video4linux2", "v4l2"}
    assert allowed_demuxers(LISTING, DEVICES) == [
        "3g2", "3gp", "m4a", "matroska", "mj2", "mov", "mp4", "webm",
    ]  # fmt: skip


def test_the_options_confine_protocols_to_the_target_kind() -> None:
    local = input_options("ffprobe", "/data/clip.mp4")
    assert local[:2] == ["-protocol_whitelist", "file"]
    remote = input_options("ffprobe", "https://s3.local/b/clip.mp4?X-Amz-Signature=s")
    assert remote[:2] == ["-protocol_whitelist", "http,https,tcp,tls"]
    allow = local[local.index("-format_whitelist") + 1].split(",")
    # This ffprobe's own list: the usual containers stay, the indirect formats do not.
    assert {"mov", "matroska", "mpegts", "avi", "ivf"} <= set(allow)
    assert not {"hls", "concat", "dash", "sdp", "lavfi"} & set(allow)


@pytest.fixture(scope="module")
def outside_clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real MPEG-TS clip, outside any folder that is ingested."""
    path = tmp_path_factory.mktemp("outside") / "secret.ts"
    subprocess.run(
        ["ffmpeg", "-v", "error", "-f", "lavfi", "-i", "testsrc=duration=1:size=64x48:rate=5",
         "-c:v", "mpeg2video", str(path)],
        check=True,
    )  # fmt: skip
    return path


def _playlist(target: str) -> bytes:
    return f"#EXTM3U\n#EXT-X-TARGETDURATION:1\n#EXTINF:1,\n{target}\n#EXT-X-ENDLIST\n".encode()


@pytest.mark.parametrize(
    ("name", "content", "refused"),
    [
        ("playlist.mp4", _playlist, "hls"),
        ("list.mp4", lambda t: f"ffconcat version 1.0\nfile '{t}'\n".encode(), "concat"),
    ],
)
def test_a_local_reference_file_is_refused_not_followed(
    tmp_path: Path, outside_clip: Path, name: str, content, refused: str
) -> None:
    upload = tmp_path / name
    upload.write_bytes(content(str(outside_clip)))
    # What plain ffprobe does with it: reads the file outside the folder as the "video".
    plain = subprocess.run(
        ["ffprobe", "-v", "error", "-print_format", "json", "-show_format", "-safe", "0",
         "-i", f"file:{upload}"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    if refused == "hls":
        assert json.loads(plain.stdout)["format"]["format_name"] == "hls"
    with pytest.raises(MediaRejected) as info:
        FfprobeProber().probe(str(upload), size_bytes=upload.stat().st_size)
    assert info.value.error_class == "unsupported_media"
    assert info.value.reason.startswith(f"not a video: {refused} data that names other inputs")
    with pytest.raises(MediaRejected):
        probe_streams(str(upload), timeout_s=30)  # the analysis reads the same way


class _Recorder(http.server.SimpleHTTPRequestHandler):
    requested: ClassVar[list[str]] = []

    def do_GET(self) -> None:
        self.requested.append(self.path.split("?")[0])
        super().do_GET()

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def web(tmp_path: Path, outside_clip: Path) -> Iterator[tuple[str, list[str]]]:
    """A loopback server standing in for the store, and for a service on its network."""
    (tmp_path / "segment.ts").write_bytes(outside_clip.read_bytes())
    requested: ClassVar[list[str]] = []
    handler = functools.partial(
        type("Handler", (_Recorder,), {"requested": requested}), directory=str(tmp_path)
    )
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    (tmp_path / "evil.mp4").write_bytes(_playlist(f"{base}/segment.ts"))
    try:
        yield base, requested
    finally:
        server.shutdown()
        server.server_close()


def test_a_presigned_playlist_never_makes_ffprobe_fetch_what_it_names(
    web: tuple[str, list[str]], tmp_path: Path
) -> None:
    base, requested = web
    upload = tmp_path / "evil.mp4"
    with pytest.raises(MediaRejected) as info:
        FfprobeProber().probe(
            f"{base}/evil.mp4?X-Amz-Signature=s",
            size_bytes=upload.stat().st_size,
            leading_bytes=upload.read_bytes()[:64],
        )
    assert info.value.error_class == "unsupported_media"
    assert "/evil.mp4" in requested and "/segment.ts" not in requested
