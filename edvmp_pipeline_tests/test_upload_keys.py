"""Upload key rules (review issue 10, item 12): keys a server would store under another name
are refused at the door, before any network call, with one line and exit 2."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from edvmp_pipeline.domain.object_keys import InvalidObjectKey, validate_object_key
from edvmp_pipeline_tests.cli_support import run_edvmp


@pytest.mark.parametrize(
    "key",
    ["clip.mp4", "a/b c/動画.mp4", "x" * 1024, "a.b/..c/d..mp4", "...mp4", "a/.hidden"],
)
def test_acceptable_keys_are_returned_unchanged(key: str) -> None:
    assert validate_object_key(key) == key


@pytest.mark.parametrize(
    ("key", "message"),
    [
        ("", "empty"),
        ("a//b.mp4", "empty segment ('//'); the store would keep another key; use 'a/b.mp4'"),
        ("/a.mp4", "must not start with '/'; use 'a.mp4'"),
        ("a/b/", "must not end with '/'"),
        ("a/./b.mp4", "'.' or '..' segment; the store would keep another key; use 'a/b.mp4'"),
        ("a/../b.mp4", "'.' or '..' segment"),
        ("..", "'.' or '..' segment"),
        ("a\nb.mp4", "control character U+000A"),
        ("a\x1b[2Jb.mp4", "control character U+001B"),
        ("a\u2028b.mp4", "control character U+2028"),
        ("x" * 1025, "1025 bytes of UTF-8, at most 1024 allowed"),
        ("é" * 513, "1026 bytes of UTF-8"),
        ("bad\udcffname", "not valid UTF-8"),
        # SeaweedFS stores a backslash as '/': the job id would name a key that never exists.
        ("a\\b.mp4", "backslash; the store would keep another key ('\\' as '/'); use 'a/b.mp4'"),
    ],
)
def test_refused_keys_say_why_in_one_line(key: str, message: str) -> None:
    with pytest.raises(InvalidObjectKey) as caught:
        validate_object_key(key)
    assert message in caught.value.reason
    assert "\n" not in caught.value.reason and len(caught.value.reason) < 200


def test_no_fix_is_suggested_for_dot_dot() -> None:
    with pytest.raises(InvalidObjectKey) as caught:
        validate_object_key("a/../b.mp4")
    assert "use " not in caught.value.reason


@pytest.mark.parametrize(
    ("key", "message"),
    [
        ("a//b.mp4", "edvmp: error: invalid object key 'a//b.mp4': empty segment ('//')"),
        ("v/./clip.mp4", "edvmp: error: invalid object key 'v/./clip.mp4': '.' or '..' segment"),
        ("v/", "edvmp: error: invalid object key 'v/': must not end with '/'"),
        ("C:\\v\\clip.mp4", "edvmp: error: invalid object key 'C:\\\\v\\\\clip.mp4': backslash"),
    ],
)
def test_upload_refuses_the_key_before_any_network_call(
    tmp_path: Path, key: str, message: str
) -> None:
    clip = tmp_path / "clip.mp4"
    clip.write_bytes(b"\x00\x00\x00\x18ftypmp42")
    # Nothing listens on port 9: a key checked only after contacting the store would fail
    # with "S3 endpoint unreachable" instead.
    env = {
        **os.environ,
        "EDVMP_HOME": str(tmp_path / "home"),
        "EDVMP_S3_ENDPOINT_URL": "http://127.0.0.1:9",
        "AWS_ACCESS_KEY_ID": "x",
        "AWS_SECRET_ACCESS_KEY": "y",
    }
    done = run_edvmp("upload", str(clip), "--key", key, env=env, timeout=60)
    assert done.returncode == 2, (done.stdout, done.stderr)
    assert done.stdout == ""
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(message), done.stderr
