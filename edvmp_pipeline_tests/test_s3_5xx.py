"""S3 5xx and dropped connections are transient (review issue 10, item 5).

With the store shutting down, HeadObject answered 500 InternalError: the adapter reported it
as an ``unknown`` permanent failure (no in-step retry) while the incident classifier called
it ``store_unreachable``. Here the adapter's mapping is checked on real botocore exceptions,
against the classifier on the same messages, and end to end: ``process_batch`` against a
loopback HTTP server that answers like an S3 store in trouble.
"""

from __future__ import annotations

import http.server
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import botocore.exceptions
import pytest
import urllib3.exceptions
from botocore.exceptions import ClientError

from edvmp_pipeline.adapters.object_store import ObjectStoreResource, ProbeTarget, RangeReader
from edvmp_pipeline.adapters.prober import FfprobeProber
from edvmp_pipeline.adapters.s3_errors import translate_s3_error
from edvmp_pipeline.catalog.store import Catalog
from edvmp_pipeline.domain.errors import PipelineError, StoreUnreachable
from edvmp_pipeline.domain.failure_classes import (
    IN_STEP_RETRYABLE,
    classify_failure,
    get_failure_class,
)
from edvmp_pipeline.domain.partition_keys import partition_key_for
from edvmp_pipeline.domain.records import ObjectVersion
from edvmp_pipeline.services.processing import RetrySettings, process_batch

WHAT = "s3://videos/clips/a.mp4"
ETAG = "0123456789abcdef0123456789abcdef"


def client_error(code: str, status: int, operation: str = "GetObject") -> ClientError:
    """The ClientError botocore raises for an S3 error answer (HEAD answers carry no body,
    so botocore uses the status as the code)."""
    response = {
        "Error": {"Code": code, "Message": "We encountered an internal error."},
        "ResponseMetadata": {"HTTPStatusCode": status},
    }
    return ClientError(response, operation)  # type: ignore[arg-type]


def assert_agree(error: PipelineError, expected: str) -> None:
    """The adapter's class, its retryability and the incident classifier all say the same."""
    assert error.error_class == expected, error.reason
    assert error.retryable is get_failure_class(expected).retryable
    # Without the hint (message and type only) and with it, as the incident sensor sees it.
    assert classify_failure(type(error).__name__, str(error)).name == expected, str(error)
    hinted = classify_failure(type(error).__name__, str(error), error_class_hint=expected)
    assert hinted.name == expected


SERVER_ERRORS = [
    ("InternalError", 500, "HeadObject"),
    ("InternalError", 500, "GetObject"),
    ("500", 500, "HeadObject"),
    ("BadGateway", 502, "GetObject"),
    ("502", 502, "HeadObject"),
    ("ServiceUnavailable", 503, "GetObject"),
    ("GatewayTimeout", 504, "GetObject"),
    ("504", 504, "HeadObject"),
    # A proxy or server that names no S3 code: the status decides.
    ("InternalServerError", 500, "GetObject"),
]


@pytest.mark.parametrize(("code", "status", "operation"), SERVER_ERRORS)
def test_server_errors_are_store_unreachable(code: str, status: int, operation: str) -> None:
    exc = client_error(code, status, operation)
    error = translate_s3_error(exc, what=WHAT)
    assert isinstance(error, StoreUnreachable)
    assert error.error_class in IN_STEP_RETRYABLE
    assert_agree(error, "store_unreachable")
    assert str(status) in error.reason and WHAT in error.reason
    # The raw botocore exception, as a run failure records it, is classified alike.
    assert classify_failure(type(exc).__name__, str(exc)).name == "store_unreachable", str(exc)


@pytest.mark.parametrize(
    ("code", "status", "operation"),
    [("SlowDown", 503, "GetObject"), ("SlowDown", 503, "HeadObject"), ("503", 503, "HeadObject")],
)
def test_slow_down_stays_throttled(code: str, status: int, operation: str) -> None:
    # A bodiless 503 on HEAD is S3's SlowDown far more often than an outage; both classes are
    # retried in the step, throttled with more redrives.
    error = translate_s3_error(client_error(code, status, operation), what=WHAT)
    assert error.error_class in IN_STEP_RETRYABLE
    assert_agree(error, "throttled")


def test_client_errors_stay_permanent() -> None:
    for code, status, expected in [
        ("NoSuchKey", 404, "object_missing"),
        ("404", 404, "object_missing"),
        ("AccessDenied", 403, "access_denied"),
        ("NoSuchBucket", 404, "config_error"),
    ]:
        error = translate_s3_error(client_error(code, status), what=WHAT)
        assert not error.retryable
        assert_agree(error, expected)


def connection_errors() -> list[Exception]:
    url = "http://127.0.0.1:9/videos/clips/a.mp4"
    reset = ConnectionResetError(104, "Connection reset by peer")
    return [
        botocore.exceptions.EndpointConnectionError(endpoint_url=url),
        botocore.exceptions.ConnectionClosedError(endpoint_url=url),
        botocore.exceptions.ReadTimeoutError(endpoint_url=url),
        botocore.exceptions.ConnectTimeoutError(endpoint_url=url),
        urllib3.exceptions.ProtocolError("Connection aborted.", reset),
        botocore.exceptions.ResponseStreamingError(
            error=urllib3.exceptions.ProtocolError("Connection broken: IncompleteRead")
        ),
        reset,
        ConnectionRefusedError(111, "Connection refused"),
    ]


@pytest.mark.parametrize("exc", connection_errors(), ids=lambda e: type(e).__name__)
def test_connection_errors_are_store_unreachable(exc: Exception) -> None:
    error = translate_s3_error(exc, what=WHAT)
    assert isinstance(error, StoreUnreachable)
    assert_agree(error, "store_unreachable")


def test_configuration_errors_are_not_called_unreachable() -> None:
    # Before: every BotoCoreError was "store error" (retryable); a missing region never heals.
    error = translate_s3_error(botocore.exceptions.NoRegionError(), what=WHAT)
    assert_agree(error, "config_error")
    error = translate_s3_error(botocore.exceptions.NoCredentialsError(), what=WHAT)
    assert_agree(error, "access_denied")


# --- end to end: process_batch against a failing store ---------------------------------------


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    path = tmp_path_factory.mktemp("clip") / "clip.mp4"
    subprocess.run(
        [
            "ffmpeg", "-v", "error", "-y",
            "-f", "lavfi", "-i", "testsrc2=size=160x120:rate=10:duration=1",
            "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", str(path),
        ],
        check=True,
    )  # fmt: skip
    return path.read_bytes()


@dataclass
class FlakyStore:
    """What the loopback store serves and how many requests it failed."""

    body: bytes = b""
    down: bool = True  # answer every request with 500 InternalError, else serve ``body``
    up_before_attempt: int = 0  # the in-step attempt before which the store comes back
    seen: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def should_fail(self, method: str) -> bool:
        with self.lock:
            self.seen.append(method)
            return self.down


def _handler(store: FlakyStore) -> type[http.server.BaseHTTPRequestHandler]:
    class Handler(http.server.BaseHTTPRequestHandler):
        """An S3 GET/HEAD of one object (ranges included), or 500 InternalError."""

        protocol_version = "HTTP/1.1"

        def _answer(self, send_body: bool) -> None:
            if store.should_fail(self.command):
                body = (
                    b'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>InternalError'
                    b"</Code><Message>We encountered an internal error. Please try again."
                    b"</Message></Error>"
                )
                self.send_response(500)
                self.send_header("Content-Type", "application/xml")
                self.send_header("Content-Length", str(len(body)) if send_body else "0")
                self.end_headers()
                if send_body:
                    self.wfile.write(body)
                return
            data, status = store.body, 200
            first, last = 0, len(data) - 1
            wanted = self.headers.get("Range", "")
            if wanted.startswith("bytes="):
                start, _, end = wanted[len("bytes=") :].partition("-")
                first = int(start)
                last = min(int(end), len(data) - 1) if end else len(data) - 1
                status = 206
            chunk = data[first : last + 1]
            self.send_response(status)
            self.send_header("ETag", f'"{ETAG}"')
            self.send_header("Accept-Ranges", "bytes")
            self.send_header("Last-Modified", "Mon, 01 Jan 2024 00:00:00 GMT")
            if status == 206:
                self.send_header("Content-Range", f"bytes {first}-{last}/{len(data)}")
            self.send_header("Content-Length", str(len(chunk) if send_body else len(data)))
            self.end_headers()
            if send_body:
                self.wfile.write(chunk)

        def do_GET(self) -> None:
            self._answer(send_body=True)

        def do_HEAD(self) -> None:
            self._answer(send_body=False)

        def log_message(self, format: str, *args: object) -> None:  # quiet test output
            pass

    return Handler


@pytest.fixture
def flaky_store(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[FlakyStore, str]]:
    """A loopback S3-like server; yields its state and base URL."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "secret")
    state = FlakyStore()
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _handler(state))
    srv.daemon_threads = True
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    try:
        yield state, f"http://127.0.0.1:{srv.server_port}"
    finally:
        srv.shutdown()
        srv.server_close()


@pytest.fixture
def probe_calls(monkeypatch: pytest.MonkeyPatch, flaky_store: tuple[FlakyStore, str]) -> list[str]:
    """One entry per ``probe_target`` call (one per in-step attempt); the store comes back
    just before attempt number ``up_before_attempt``."""
    calls: list[str] = []
    real = ObjectStoreResource.probe_target
    state, _ = flaky_store

    def counting(self: ObjectStoreResource, version: ObjectVersion) -> ProbeTarget:
        calls.append(version.object_key)
        if len(calls) == state.up_before_attempt:
            state.down = False
        return real(self, version)

    monkeypatch.setattr(ObjectStoreResource, "probe_target", counting)
    return calls


def run_one(tmp_path: Path, endpoint: str, size: int, attempts: int):
    version = ObjectVersion("s3://videos", "clips/a.mp4", ETAG, size)
    pk = partition_key_for(version.source, version.object_key, version.etag)
    catalog = Catalog(tmp_path / "catalog").ensure()
    catalog.register([(pk, version)], registered_by="test")
    outcome = process_batch(
        [pk],
        catalog=catalog,
        store=ObjectStoreResource(endpoint_url=endpoint, region="us-east-1"),
        prober=FfprobeProber(rw_timeout_s=5),
        run_id="run-5xx",
        workers=1,
        retry=RetrySettings(attempts=attempts, base_delay_s=0.01, max_delay_s=0.02),
    )
    return pk, catalog, outcome


def test_a_store_answering_500_is_retried_then_failed_as_store_unreachable(
    tmp_path: Path, flaky_store: tuple[FlakyStore, str], probe_calls: list[str], clip: bytes
) -> None:
    state, endpoint = flaky_store
    state.body = clip
    pk, catalog, outcome = run_one(tmp_path, endpoint, len(clip), attempts=3)
    assert outcome.succeeded == []
    [failure] = outcome.failed
    assert (failure.error_class, failure.retryable) == ("store_unreachable", True)
    assert "500" in failure.reason, failure.reason
    assert probe_calls == ["clips/a.mp4"] * 3  # every in-step attempt was made
    assert state.seen and set(state.seen) == {"HEAD"}
    job = catalog.job_states([pk])[pk]
    assert (job.status, job.error_class) == ("FAILED", "store_unreachable")
    # The incident sensor's view: the reason and the class the error carried agree.
    by_message = classify_failure("StoreUnreachable", failure.reason)
    assert by_message.name == "store_unreachable"
    hinted = classify_failure(
        "StoreUnreachable", failure.reason, error_class_hint="store_unreachable"
    )
    assert hinted.name == "store_unreachable"


def test_range_reads_of_a_failing_store_are_store_unreachable(
    flaky_store: tuple[FlakyStore, str], clip: bytes
) -> None:
    # The container structure check reads box headers with ranged GETs of the same URL.
    state, endpoint = flaky_store
    state.body = clip
    url = f"{endpoint}/videos/clips/a.mp4?X-Amz-Signature=secret"
    with RangeReader(url, timeout_s=5) as read, pytest.raises(StoreUnreachable) as info:
        read(100, 16)
    assert info.value.retryable and "HTTP 500" in info.value.reason
    assert "secret" not in info.value.reason  # the signature never lands in a message
    assert_agree(info.value, "store_unreachable")
    state.down = False
    with RangeReader(url, timeout_s=5) as read:
        assert read(100, 16) == clip[100:116]
        assert read(len(clip) - 4, 16) == clip[-4:]
        assert read(len(clip) + 10, 16) == b""


def test_a_store_that_recovers_within_the_step_succeeds(
    tmp_path: Path, flaky_store: tuple[FlakyStore, str], probe_calls: list[str], clip: bytes
) -> None:
    state, endpoint = flaky_store
    # botocore's own retries of the first HeadObject all get 500; the step tries again.
    state.body, state.up_before_attempt = clip, 2
    pk, catalog, outcome = run_one(tmp_path, endpoint, len(clip), attempts=3)
    assert outcome.failed == []
    [(done, _, record)] = outcome.succeeded
    assert done == pk and (record.width, record.height) == (160, 120)
    assert probe_calls == ["clips/a.mp4"] * 2
    assert state.seen.count("HEAD") > 2  # failed ones (botocore retried them) and the good one
    assert catalog.job_states([pk])[pk].error_class is None
