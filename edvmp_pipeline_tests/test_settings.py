"""Numeric ``EDVMP_*`` settings: refused at start-up with the variable named, never at run time."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest

from edvmp_pipeline.catalog.store import Catalog
from edvmp_pipeline.definitions import build_resources
from edvmp_pipeline.domain.errors import ConfigError
from edvmp_pipeline.settings import MAX_SECONDS, env_float, env_int
from edvmp_pipeline_tests.cli_support import run_edvmp

NAME = "EDVMP_TEST_SECONDS"


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ("nan", "EDVMP_TEST_SECONDS='nan' must be a finite number"),
        ("NaN", "EDVMP_TEST_SECONDS='NaN' must be a finite number"),
        ("-nan", "EDVMP_TEST_SECONDS='-nan' must be a finite number"),
        ("inf", "EDVMP_TEST_SECONDS='inf' must be a finite number"),
        (" Infinity ", "EDVMP_TEST_SECONDS=' Infinity ' must be a finite number"),
        ("-inf", "EDVMP_TEST_SECONDS='-inf' must be a finite number"),
        # Finite, but past what Python's timers can wait for: it would fail every probe.
        ("1e300", f"EDVMP_TEST_SECONDS='1e300' must be at most {MAX_SECONDS:g}"),
        ("0", "EDVMP_TEST_SECONDS='0' must be greater than 0"),
        ("-5", "EDVMP_TEST_SECONDS='-5' must be greater than 0"),
        ("soon", "EDVMP_TEST_SECONDS='soon' is not a number"),
    ],
)
def test_env_float_refuses_what_is_no_duration(
    raw: str, message: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(NAME, raw)
    with pytest.raises(ConfigError) as info:
        env_float(NAME, 60.0)
    assert str(info.value) == message


def test_env_float_reads_finite_durations(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(NAME, raising=False)
    assert env_float(NAME, 60.0) == 60.0
    monkeypatch.setenv(NAME, "  ")
    assert env_float(NAME, 60.0) == 60.0
    monkeypatch.setenv(NAME, "2.5")
    assert env_float(NAME, 60.0) == 2.5
    monkeypatch.setenv(NAME, str(MAX_SECONDS))
    assert env_float(NAME, 60.0) == MAX_SECONDS
    monkeypatch.setenv(NAME, "10")
    with pytest.raises(ConfigError, match=r"must be at most 5$"):
        env_float(NAME, 1.0, maximum=5.0)


def test_env_int_has_no_nan_or_infinity(monkeypatch: pytest.MonkeyPatch) -> None:
    for raw in ("nan", "inf", "1e3"):
        monkeypatch.setenv(NAME, raw)
        with pytest.raises(ConfigError, match="is not a whole number"):
            env_int(NAME, 3)


@pytest.mark.parametrize("raw", ["nan", "inf"])
def test_probe_timeout_is_refused_when_the_resources_are_built(
    raw: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("EDVMP_PROBE_TIMEOUT_S", raw)
    with pytest.raises(ConfigError) as info:
        build_resources()
    assert str(info.value) == f"EDVMP_PROBE_TIMEOUT_S='{raw}' must be a finite number"


def test_ingest_with_a_nan_probe_timeout_exits_2_and_fails_nothing(
    library: Path, home: Path
) -> None:
    env = {**os.environ, "EDVMP_HOME": str(home), "EDVMP_PROBE_TIMEOUT_S": "nan"}
    done = run_edvmp("ingest", str(library), env=env)
    assert done.returncode == 2, done.stdout + done.stderr
    assert (
        done.stderr.strip() == "edvmp: error: EDVMP_PROBE_TIMEOUT_S='nan' must be a finite number"
    )
    # Before, every version was probed with the NaN timeout and FAILED as `unknown`; now
    # none is touched (at most registered, PENDING for the next ingest).
    _, rows = Catalog(home / "catalog").query("SELECT count(*) FROM jobs WHERE status != 'PENDING'")
    assert rows == [(0,)]


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("EDVMP_S3_ENDPOINT_URL", "notaurl", "is not an http(s) URL"),
        ("EDVMP_S3_ENDPOINT_URL", "ftp://127.0.0.1:21", "is not an http(s) URL"),
        ("EDVMP_S3_ENDPOINT_URL", "http://127.0.0.1:99999", "is not an http(s) URL"),
        ("EDVMP_BUCKET", "Bad_Bucket!", "is not a valid S3 bucket name"),
        ("EDVMP_BUCKET", "ab", "is not a valid S3 bucket name"),
        ("EDVMP_PREFIX", "/abs/", "must not start with '/'"),
        ("EDVMP_PREFIX", "a//b/", "contain '//'"),
        ("EDVMP_PREFIX", "in\ncoming/", "control characters"),
    ],
)
def test_store_settings_are_refused_before_any_client_is_built(
    name: str, value: str, message: str, tmp_path: Path
) -> None:
    """`edvmp serve` refused them only per request (a 500 for a bad endpoint, a 422 blaming
    the client's filename for a bad prefix); the object sensor and `edvmp upload` read them
    the same way."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("EDVMP_", "DAGSTER_HOME"))}
    env |= {"EDVMP_HOME": str(tmp_path / "home"), name: value}
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = str(sock.getsockname()[1])
    done = run_edvmp("serve", "--dev", "--port", port, env=env, timeout=60)
    assert done.returncode == 2, done.stdout + done.stderr
    (line,) = done.stderr.strip().splitlines()
    assert line.startswith(f"edvmp: error: {name}=") and message in line, line
    clip = tmp_path / "clip.mp4"
    clip.write_bytes(b"\0" * 16)
    done = run_edvmp("upload", str(clip), env=env, timeout=60)
    assert done.returncode == 2 and message in done.stderr, done.stdout + done.stderr


def test_good_store_settings_pass(monkeypatch: pytest.MonkeyPatch) -> None:
    from edvmp_pipeline.settings import s3_endpoint_url, uploads_bucket, uploads_prefix

    monkeypatch.setenv("EDVMP_S3_ENDPOINT_URL", "http://127.0.0.1:8333")
    monkeypatch.setenv("EDVMP_BUCKET", "media.uploads-1")
    monkeypatch.setenv("EDVMP_PREFIX", "incoming/2026/")
    assert (s3_endpoint_url(), uploads_bucket(), uploads_prefix()) == (
        "http://127.0.0.1:8333", "media.uploads-1", "incoming/2026/",
    )  # fmt: skip
    monkeypatch.delenv("EDVMP_S3_ENDPOINT_URL")
    monkeypatch.delenv("EDVMP_BUCKET")
    assert (s3_endpoint_url(), uploads_bucket()) == (None, "uploads")
