"""Unit tests for the failure classifier, fed with real failure messages.

Every message classified here is produced at test time by the real thing: ffprobe on bad
files and on a local HTTP server, botocore parsing real HTTP error responses from a loopback
server (and its Stubber), real Python exceptions, and Dagster's own crash messages (one from
a real run whose step process is SIGKILLed, the rest taken from the installed source).
Nothing leaves 127.0.0.1.
"""

from __future__ import annotations

import contextlib
import errno
import http.server
import importlib
import inspect
import json
import os
import random
import re
import shutil
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import boto3
import botocore.exceptions
import dagster as dg
import pytest
import urllib3
from botocore.config import Config
from botocore.stub import Stubber

from edvmp_pipeline.domain import errors
from edvmp_pipeline.domain.failure_classes import (
    ALL_CLASSES,
    CLASSES_BY_NAME,
    RULES,
    classify_failure,
    fingerprint,
    get_failure_class,
    normalize_message,
)

REPO = Path(__file__).resolve().parents[1]
FFPROBE = shutil.which("ffprobe") or "/usr/bin/ffprobe"
FFMPEG = shutil.which("ffmpeg") or "/usr/bin/ffmpeg"

# Fail fast: botocore's default retries would turn a 0.5 s test into many seconds.
NO_RETRY = Config(retries={"total_max_attempts": 1}, connect_timeout=0.5, read_timeout=0.5)


def classify_exc(exc: BaseException, **kwargs: str) -> str:
    """Classify an exception the way the failure sensor sees it: type name and str()."""
    return classify_failure(type(exc).__name__, str(exc), **kwargs).name


def raised(fn: Callable[[], object]) -> Exception:
    """Run ``fn`` and return the exception it raised."""
    try:
        fn()
    except Exception as exc:
        return exc
    raise AssertionError("expected an exception")


def ffprobe_stderr(target: str | Path, *extra: str, timeout: float = 20) -> str:
    """Run ffprobe the way the prober does and return its stderr (it must fail)."""
    proc = subprocess.run(
        [FFPROBE, "-v", "error", *extra, "-show_format", "-show_streams", "-of", "json", target],
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert proc.returncode != 0, proc.stdout
    return proc.stderr.strip()


def run_tool(tool: str, args: str, *paths: Path) -> str:
    """Run ``tool`` with space-separated ``args`` then ``paths``; return its stdout."""
    done = subprocess.run(
        [tool, *args.split(), *map(str, paths)], capture_output=True, text=True, check=True
    )
    return done.stdout


# --- fixtures: real bad media, a loopback HTTP/S3/Bedrock server ------------------------------


@pytest.fixture(scope="module")
def media(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Bad and odd inputs, made here: empty, random bytes, text, truncated MP4, still, audio."""
    d = tmp_path_factory.mktemp("media")
    good = d / "good.mp4"
    lavfi = "-v error -y -f lavfi -i testsrc2=size=160x120:rate=10"
    run_tool(FFMPEG, f"{lavfi} -t 1 -pix_fmt yuv420p", good)
    files = {"good": good}
    files["zero"] = d / "zero.mp4"
    files["zero"].write_bytes(b"")
    rnd = random.Random(4).randbytes(4096)
    files["random"] = d / "random.mp4"
    files["random"].write_bytes(rnd)
    files["random_bin"] = d / "random.bin"
    files["random_bin"].write_bytes(rnd)
    files["text"] = d / "notes.mp4"
    files["text"].write_text("this is not a video\n")
    # ffmpeg writes the moov index at the end, so cutting the file loses it.
    files["truncated"] = d / "truncated.mp4"
    files["truncated"].write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    files["still"] = d / "still.png"
    run_tool(FFMPEG, "-v error -y -f lavfi -i testsrc2=size=160x120 -frames:v 1", files["still"])
    files["audio"] = d / "tone.wav"
    subprocess.run(
        [FFMPEG, "-v", "error", "-y", "-f", "lavfi", "-i", "sine=d=1", str(files["audio"])],
        check=True,
    )
    return files


S3_ERRORS = {
    # path marker: (HTTP status, S3 error code, the message AWS S3 sends with it)
    "nosuchkey": (404, "NoSuchKey", "The specified key does not exist."),
    "denied": (403, "AccessDenied", "Access Denied"),
    "badkeyid": (
        403,
        "InvalidAccessKeyId",
        "The AWS Access Key Id you provided does not exist in our records.",
    ),
    "badsig": (
        403,
        "SignatureDoesNotMatch",
        "The request signature we calculated does not match the signature you provided."
        " Check your key and signing method.",
    ),
    "slowdown": (503, "SlowDown", "Please reduce your request rate."),
    "nobucket": (404, "NoSuchBucket", "The specified bucket does not exist"),
    "precondition": (
        412,
        "PreconditionFailed",
        "At least one of the pre-conditions you specified did not hold",
    ),
}

BEDROCK_ERRORS = {
    # error type: (HTTP status, the message Bedrock sends with it)
    "ValidationException": (400, "The provided model identifier is invalid."),
    "AccessDeniedException": (
        403,
        "You don't have access to the model with the specified model ID.",
    ),
    "ThrottlingException": (429, "Too many requests, please wait before trying again."),
}


class _Handler(http.server.BaseHTTPRequestHandler):
    """Answers like S3 (XML errors) or Bedrock (JSON errors), chosen by a marker in the path."""

    protocol_version = "HTTP/1.1"

    def _reply(self, status: int, body: bytes, headers: dict[str, str], send_body: bool) -> None:
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)) if send_body else "0")
        self.end_headers()
        if send_body:
            self.wfile.write(body)

    def _answer(self, send_body: bool = True) -> None:
        if "stall" in self.path:
            time.sleep(3)
            return
        for code, (status, message) in BEDROCK_ERRORS.items():
            if code in self.path:
                # Bedrock is rest-json: the error type travels in a header.
                body = json.dumps({"message": message}).encode()
                headers = {"Content-Type": "application/json", "x-amzn-ErrorType": code}
                self._reply(status, body, headers, send_body)
                return
        for marker, (status, code, message) in S3_ERRORS.items():
            if marker in self.path:
                body = (
                    '<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>'
                    f"{code}</Code><Message>{message}</Message>"
                    "<RequestId>4442587FB7D0A2F9</RequestId></Error>"
                ).encode()
                self._reply(status, body, {"Content-Type": "application/xml"}, send_body)
                return
        for status in (403, 404, 503):
            if f"/http{status}/" in self.path:
                self.send_error(status)
                return
        self._reply(200, b"{}", {"Content-Type": "application/json"}, send_body)

    def do_GET(self) -> None:
        self._answer()

    def do_HEAD(self) -> None:
        self._answer(send_body=False)

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self._answer()

    def log_message(self, format: str, *args: object) -> None:  # quiet test output
        pass


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    """A loopback HTTP server; yields its base URL."""
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    srv.daemon_threads = True
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{srv.server_port}"
    srv.shutdown()
    srv.server_close()


@pytest.fixture(scope="module")
def resetting_server() -> Iterator[str]:
    """A loopback server that reads the request and answers with a TCP reset."""
    listener = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            conn.recv(65536)
            # Linger 0 makes close() send RST instead of FIN.
            conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            conn.close()

    threading.Thread(target=serve, daemon=True).start()
    yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    stop.set()
    listener.close()


@pytest.fixture
def closed_port() -> int:
    """A loopback port nothing listens on."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _session() -> boto3.session.Session:
    return boto3.session.Session(
        aws_access_key_id="AKIDEXAMPLE", aws_secret_access_key="secret", region_name="us-east-1"
    )


def s3_client(endpoint: str) -> Any:
    """An S3 client against a loopback endpoint, without retries."""
    return _session().client("s3", endpoint_url=endpoint, config=NO_RETRY)


# --- the table itself -------------------------------------------------------------------------


def test_classes_are_complete_and_consistent() -> None:
    names = [c.name for c in ALL_CLASSES]
    assert len(names) == len(set(names))
    required = {
        "corrupt_media",
        "unsupported_media",
        "empty_object",
        "probe_timeout",
        "object_missing",
        "access_denied",
        "throttled",
        "store_unreachable",
        "summarizer_error",
        "resource_exhausted",
        "config_error",
        "unknown",
    }
    assert required <= set(names)
    retryable = {c.name for c in ALL_CLASSES if c.retryable}
    assert retryable == {
        "throttled",
        "store_unreachable",
        "probe_timeout",
        "resource_exhausted",
        "summarizer_unavailable",
    }
    for c in ALL_CLASSES:
        assert (c.max_redrives > 0) == c.retryable, c.name
        assert c.runbook == f"runbooks/{c.name}.md"
        assert (REPO / c.runbook).is_file(), c.runbook
        assert c.action and "\n" not in c.action and c.summary
    assert {r.failure_class for r in RULES} <= set(names)
    assert get_failure_class("throttled") is CLASSES_BY_NAME["throttled"]
    with pytest.raises(KeyError):
        get_failure_class("no_such_class")


def test_nothing_to_go_on_is_unknown() -> None:
    assert classify_failure(None, "").name == "unknown"
    assert classify_failure("ValueError", "invalid literal for int() with base 10: 'x'").name == (
        "unknown"
    )


# --- media: real ffprobe ----------------------------------------------------------------------


@pytest.mark.parametrize("name", ["zero", "random", "random_bin", "text", "truncated"])
def test_ffprobe_on_bad_files_is_corrupt_media(media: dict[str, Path], name: str) -> None:
    stderr = ffprobe_stderr(media[name])
    # With no .mp4 name to go on, FFmpeg guesses a demuxer from the bytes (mp3 for these
    # random ones) and fails in that demuxer's words instead.
    if media[name].suffix == ".mp4":
        assert "Invalid data found when processing input" in stderr
    assert classify_failure(None, stderr).name == "corrupt_media", stderr
    # The error the prober raises carries the same text.
    exc = errors.MediaRejected(stderr)
    assert classify_exc(exc) == "corrupt_media"


def test_empty_object_needs_the_size_not_the_message(media: dict[str, Path]) -> None:
    # ffprobe says the same about a zero-byte file as about a truncated one (see
    # ARCHITECTURE.md): only the prober, which knows the size, can say "empty".
    zero, truncated = ffprobe_stderr(media["zero"]), ffprobe_stderr(media["truncated"])
    assert classify_failure(None, zero).name == "corrupt_media"
    assert normalize_message(zero) == normalize_message(truncated)
    size = media["zero"].stat().st_size
    exc = errors.MediaRejected(f"empty object: size {size} bytes", error_class="empty_object")
    assert classify_exc(exc) == "empty_object"
    assert classify_exc(exc, error_class_hint=exc.error_class) == "empty_object"
    # The hint wins over the ffprobe text it may come with.
    assert classify_failure(None, zero, error_class_hint="empty_object").name == "empty_object"


def test_unknown_container_is_unsupported(media: dict[str, Path]) -> None:
    stderr = ffprobe_stderr(media["good"], "-f", "no_such_format")
    assert "Unknown input format" in stderr
    assert classify_failure(None, stderr).name == "unsupported_media"


@pytest.mark.parametrize("name", ["still", "audio"])
def test_no_video_stream_is_unsupported(media: dict[str, Path], name: str) -> None:
    # A PNG and a WAV probe fine; the prober rejects them for what their streams are.
    entries = "stream=codec_type,codec_name:format=format_name"
    info = json.loads(run_tool(FFPROBE, f"-v error -show_entries {entries} -of json", media[name]))
    streams = [f"{s['codec_type']}/{s['codec_name']}" for s in info["streams"]]
    fmt = info["format"]["format_name"]
    reason = (
        f"still image ({fmt}: {', '.join(streams)})"
        if fmt.endswith("_pipe")
        else f"no video stream ({fmt}: {', '.join(streams)})"
    )
    exc = errors.MediaRejected(reason, error_class="unsupported_media")
    assert classify_exc(exc) == "unsupported_media"
    assert classify_exc(exc, error_class_hint=exc.error_class) == "unsupported_media"


def test_ffprobe_over_http(server: str, resetting_server: str, closed_port: int) -> None:
    # The prober reads presigned URLs; these are ffprobe's own words for each HTTP outcome.
    cases = {
        f"{server}/http404/a.mp4": "object_missing",
        f"{server}/http403/a.mp4": "access_denied",
        f"{server}/http503/a.mp4": "store_unreachable",
        f"http://127.0.0.1:{closed_port}/a.mp4": "store_unreachable",
        f"{resetting_server}/a.mp4": "store_unreachable",
    }
    for url, expected in cases.items():
        stderr = ffprobe_stderr(url)
        assert classify_failure(None, stderr).name == expected, stderr
    stalled = ffprobe_stderr(f"{server}/stall/a.mp4", "-rw_timeout", "500000")
    assert "timed out" in stalled
    assert classify_failure(None, stalled).name == "store_unreachable"


def test_ffprobe_killed_by_timeout_is_probe_timeout(tmp_path: Path) -> None:
    # A FIFO with no writer blocks ffprobe at open(), like a store that never answers.
    fifo = tmp_path / "stalled.mp4"
    os.mkfifo(fifo)
    exc = raised(lambda: subprocess.run([FFPROBE, "-v", "error", str(fifo)], timeout=0.3))
    assert isinstance(exc, subprocess.TimeoutExpired)
    assert classify_exc(exc) == "probe_timeout"
    assert classify_exc(errors.ProbeTimeout(str(exc))) == "probe_timeout"


# --- object store: real botocore --------------------------------------------------------------


@pytest.mark.parametrize(
    ("marker", "expected_get", "expected_head"),
    [
        ("nosuchkey", "object_missing", "object_missing"),
        ("denied", "access_denied", "access_denied"),
        ("badkeyid", "access_denied", "access_denied"),
        ("badsig", "access_denied", "access_denied"),
        ("slowdown", "throttled", "throttled"),
        # HEAD has no body: botocore only sees the status, "(404) ... Not Found".
        ("nobucket", "config_error", "object_missing"),
        # GET If-Match on the listed ETag: the version was replaced since it was listed.
        ("precondition", "object_missing", "object_missing"),
    ],
)
def test_s3_client_errors(server: str, marker: str, expected_get: str, expected_head: str) -> None:
    s3 = s3_client(server)
    get = raised(lambda: s3.get_object(Bucket="videos", Key=f"{marker}/clip.mp4", IfMatch="e"))
    head = raised(lambda: s3.head_object(Bucket="videos", Key=f"{marker}/clip.mp4"))
    assert isinstance(get, botocore.exceptions.ClientError)
    assert isinstance(head, botocore.exceptions.ClientError)
    assert get.response["Error"]["Code"] == S3_ERRORS[marker][1]
    assert classify_exc(get) == expected_get, str(get)
    assert classify_exc(head) == expected_head, str(head)


def test_s3_errors_from_stubber() -> None:
    s3 = _session().client("s3")
    stubber = Stubber(s3)
    stubber.add_client_error("head_object", "404", "Not Found", http_status_code=404)
    stubber.add_client_error("get_object", "NoSuchKey", "The specified key does not exist.", 404)
    stubber.add_client_error("get_object", "AccessDenied", "Access Denied", 403)
    stubber.add_client_error("get_object", "SlowDown", "Please reduce your request rate.", 503)
    with stubber:
        head = raised(lambda: s3.head_object(Bucket="b", Key="k"))
        missing = raised(lambda: s3.get_object(Bucket="b", Key="k"))
        denied = raised(lambda: s3.get_object(Bucket="b", Key="k"))
        slow = raised(lambda: s3.get_object(Bucket="b", Key="k"))
    assert str(head) == "An error occurred (404) when calling the HeadObject operation: Not Found"
    assert classify_exc(head) == "object_missing"
    assert classify_exc(missing) == "object_missing"
    assert classify_exc(denied) == "access_denied"
    assert classify_exc(slow) == "throttled"


def test_dynamodb_throttling_is_throttled() -> None:
    ddb = _session().client("dynamodb")
    stubber = Stubber(ddb)
    stubber.add_client_error("put_item", "ThrottlingException", "Rate exceeded", 400)
    stubber.add_client_error(
        "put_item",
        "ProvisionedThroughputExceededException",
        "The level of configured provisioned throughput for the table was exceeded.",
        400,
    )
    with stubber:
        for _ in range(2):
            exc = raised(lambda: ddb.put_item(TableName="t", Item={"k": {"S": "v"}}))
            assert classify_exc(exc) == "throttled", str(exc)


def test_unreachable_store(server: str, resetting_server: str, closed_port: int) -> None:
    refused = raised(
        lambda: s3_client(f"http://127.0.0.1:{closed_port}").head_object(Bucket="b", Key="k")
    )
    assert isinstance(refused, botocore.exceptions.EndpointConnectionError)
    assert str(refused).startswith("Could not connect to the endpoint URL")
    read_timeout = raised(lambda: s3_client(server).get_object(Bucket="b", Key="stall"))
    assert isinstance(read_timeout, botocore.exceptions.ReadTimeoutError)
    reset = raised(lambda: s3_client(resetting_server).head_object(Bucket="b", Key="k"))
    assert isinstance(reset, botocore.exceptions.ConnectionClosedError)
    assert "Connection reset" in repr(reset.__context__)
    new_conn = raised(
        lambda: urllib3.PoolManager().request(
            "GET", f"http://127.0.0.1:{closed_port}/", retries=False
        )
    )
    assert isinstance(new_conn, urllib3.exceptions.NewConnectionError)
    refused_socket = raised(lambda: socket.create_connection(("127.0.0.1", closed_port)))
    assert isinstance(refused_socket, ConnectionRefusedError)
    for exc in (refused, read_timeout, reset, new_conn, refused_socket):
        assert classify_exc(exc) == "store_unreachable", (type(exc), str(exc))
        assert classify_exc(errors.StoreUnreachable(str(exc))) == "store_unreachable"
    # The chained cause as a traceback shows it ("... Connection reset by peer").
    assert classify_failure(None, str(reset.__context__)).name == "store_unreachable"


def test_connect_timeout() -> None:
    # A listener that never accepts, with its backlog filled, leaves further SYNs
    # unanswered: the client's connect times out.
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    port = listener.getsockname()[1]
    fillers = []
    try:
        for _ in range(4):
            s = socket.socket()
            s.setblocking(False)
            with contextlib.suppress(BlockingIOError):
                s.connect(("127.0.0.1", port))
            fillers.append(s)
        exc = raised(lambda: s3_client(f"http://127.0.0.1:{port}").head_object(Bucket="b", Key="k"))
    finally:
        for s in fillers:
            s.close()
        listener.close()
    # Kernels differ in how they treat a full backlog; both outcomes are real timeouts.
    assert isinstance(
        exc, botocore.exceptions.ConnectTimeoutError | botocore.exceptions.ReadTimeoutError
    )
    assert classify_exc(exc) == "store_unreachable"
    built = botocore.exceptions.ConnectTimeoutError(endpoint_url=f"http://127.0.0.1:{port}/b/k")
    assert classify_exc(built) == "store_unreachable"


def test_missing_region_and_credentials(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for var in ("AWS_REGION", "AWS_DEFAULT_REGION", "AWS_PROFILE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    no_region = raised(lambda: boto3.session.Session().client("dynamodb"))
    assert isinstance(no_region, botocore.exceptions.NoRegionError)
    assert classify_exc(no_region) == "config_error"
    # resources/s3_errors.py reports missing credentials as AccessDenied; so does the table.
    assert classify_exc(botocore.exceptions.NoCredentialsError()) == "access_denied"
    exc = errors.ConfigError("bucket 'videos' does not exist")
    assert classify_exc(exc) == "config_error"


# --- summarizer: real botocore against a Bedrock-shaped endpoint ------------------------------


@pytest.mark.parametrize(
    ("code", "expected"),
    [
        ("ValidationException", "summarizer_error"),
        ("AccessDeniedException", "summarizer_error"),
        ("ThrottlingException", "throttled"),
    ],
)
def test_bedrock_errors(server: str, code: str, expected: str) -> None:
    client = _session().client("bedrock-runtime", endpoint_url=server, config=NO_RETRY)
    exc = raised(
        lambda: client.converse(
            modelId=f"model-{code}", messages=[{"role": "user", "content": [{"text": "hi"}]}]
        )
    )
    assert isinstance(exc, botocore.exceptions.ClientError)
    assert exc.response["Error"]["Code"] == code
    assert classify_exc(exc) == expected, str(exc)
    # Wrapped as summarizer_error, throttling is still recognised (and stays retryable).
    wrapped = classify_failure(type(exc).__name__, str(exc), error_class_hint="summarizer_error")
    assert wrapped.name == expected
    assert wrapped.retryable is (expected == "throttled")


def test_bedrock_unreachable_is_summarizer_unavailable(closed_port: int) -> None:
    client = _session().client(
        "bedrock-runtime", endpoint_url=f"http://127.0.0.1:{closed_port}", config=NO_RETRY
    )
    exc = raised(
        lambda: client.converse(
            modelId="m", messages=[{"role": "user", "content": [{"text": "x"}]}]
        )
    )
    assert isinstance(exc, botocore.exceptions.EndpointConnectionError)
    # The model endpoint, not the object store: the store runbook would send you astray.
    assert classify_exc(exc) == "summarizer_unavailable"


# --- local files and processes: real Python exceptions ----------------------------------------


def test_local_file_errors(tmp_path: Path) -> None:
    missing = raised(lambda: (tmp_path / "videos" / "gone.mp4").open("rb"))
    assert isinstance(missing, FileNotFoundError)
    assert classify_exc(missing) == "object_missing"
    assert classify_exc(errors.ObjectMissing(str(missing))) == "object_missing"

    no_ffprobe = raised(lambda: subprocess.run(["ffprobe", "-version"], env={"PATH": "/none"}))
    assert isinstance(no_ffprobe, FileNotFoundError)
    assert classify_exc(no_ffprobe) == "config_error"

    full = raised(lambda: Path("/dev/full").write_text("x"))
    assert isinstance(full, OSError) and full.errno == errno.ENOSPC
    assert classify_exc(full) == "resource_exhausted"


def test_permission_error(tmp_path: Path) -> None:
    locked = tmp_path / "locked.mp4"
    locked.write_bytes(b"x")
    locked.chmod(0)
    # Root reads anything, so open it from a child that drops to nobody when it is root.
    code = (
        "import json, os, sys\n"
        "if os.geteuid() == 0:\n"
        "    os.setgid(65534); os.setuid(65534)\n"
        "try:\n"
        "    open(sys.argv[1], 'rb')\n"
        "except OSError as e:\n"
        "    print(json.dumps([type(e).__name__, str(e)]))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, str(locked)], capture_output=True, text=True, check=True
    )
    type_name, message = json.loads(out.stdout)
    assert type_name == "PermissionError"
    assert classify_failure(type_name, message).name == "access_denied"


def test_memory_and_killed_processes() -> None:
    oom = raised(lambda: bytearray(1 << 62))
    assert isinstance(oom, MemoryError) and str(oom) == ""
    assert classify_exc(oom) == "resource_exhausted"

    sigkill = raised(lambda: subprocess.run(["sh", "-c", "kill -9 $$"], check=True))
    assert isinstance(sigkill, subprocess.CalledProcessError) and sigkill.returncode == -9
    assert classify_exc(sigkill) == "resource_exhausted"

    status137 = raised(lambda: subprocess.run(["sh", "-c", "exit 137"], check=True))
    assert classify_exc(status137) == "resource_exhausted"

    shell = subprocess.run(
        ["bash", "-c", 'sh -c "kill -9 \\$\\$"; true'], capture_output=True, text=True
    )
    assert "Killed" in shell.stderr
    assert classify_failure(None, shell.stderr).name == "resource_exhausted"


# --- Dagster's own messages -------------------------------------------------------------------


@dg.op
def _killed_op() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


@dg.job(executor_def=dg.multiprocess_executor)
def _killed_job() -> None:
    _killed_op()


def test_dagster_step_process_killed(tmp_path: Path) -> None:
    """A real run whose step process dies of SIGKILL, as the OOM killer would do it."""
    with dg.DagsterInstance.local_temp(str(tmp_path)) as instance:
        result = dg.execute_job(
            dg.reconstructable(_killed_job), instance=instance, raise_on_error=False
        )
        assert not result.success
        seen: list[tuple[str | None, str]] = []
        for event in result.all_events:
            error = getattr(event.event_specific_data, "error", None)
            if event.event_type_value == "ENGINE_EVENT" and "child process" in (
                event.message or ""
            ):
                seen.append((None, event.message or ""))
            if error is not None and (event.is_step_failure or event.is_run_failure):
                seen.append((error.cls_name, error.message))
    messages = "\n".join(m for _, m in seen)
    assert "was terminated by signal 9 (SIGKILL)" in messages
    assert "ChildProcessCrashException" in messages
    assert len(seen) >= 3
    for cls_name, message in seen:
        assert classify_failure(cls_name, message).name == "resource_exhausted", message


def test_dagster_crash_explanations() -> None:
    from dagster._utils import get_run_crash_explanation

    run_id = "33e7c571-06be-4138-8751-263bd95a36c5"
    for prefix in (
        "Multiprocess executor: child process for step video_metadata",
        f"Run execution process for {run_id}",
    ):
        for exit_code in (-9, -15, 1, 137):
            message = get_run_crash_explanation(prefix=prefix, exit_code=exit_code)
            assert classify_failure(None, message).name == "resource_exhausted", message


def _source(module_name: str) -> str:
    return inspect.getsource(importlib.import_module(module_name))


def test_dagster_run_worker_messages_from_source() -> None:
    # These need a daemon, a gRPC server or a cluster to happen for real; the strings are
    # checked against the installed Dagster source, then assembled as Dagster does.
    from dagster._core.launcher import CheckRunHealthResult, WorkerStatus

    run_id = "33e7c571-06be-4138-8751-263bd95a36c5"
    api = _source("dagster._core.execution.api")
    monitoring = _source("dagster._daemon.monitoring.run_monitoring")
    grpc = _source("dagster._grpc.server")
    assert '"Execution was interrupted unexpectedly. "' in api
    assert '"No user initiated termination request was found, treating as failure."' in api
    assert '" This most frequently happens when the run worker unexpectedly stops"' in api
    assert 'f"Detected run worker status {check_health_result}. Marking run"' in monitoring
    assert 'f"GRPC server: Subprocess for {run_id} terminated unexpectedly with "' in grpc
    messages = [
        "Execution was interrupted unexpectedly. "
        "No user initiated termination request was found, treating as failure.",
        f"edvmp_job ({run_id}) started a new run worker while the run was already in state"
        " STARTED. This most frequently happens when the run worker unexpectedly stops and is"
        " restarted by the cluster. Marking the run as failed.",
        f"Detected run worker status {CheckRunHealthResult(WorkerStatus.FAILED)}. Marking run"
        f" {run_id} as failed.",
        f"GRPC server: Subprocess for {run_id} terminated unexpectedly with exit code -9",
    ]
    for message in messages:
        assert classify_failure(None, message).name == "resource_exhausted", message


# --- hints from PipelineError -----------------------------------------------------------------


def _pipeline_error_classes() -> list[type[errors.PipelineError]]:
    found, todo = [], [errors.PipelineError]
    while todo:
        for sub in todo.pop().__subclasses__():
            found.append(sub)
            todo.append(sub)
    return found


def test_pipeline_errors_classify_by_type_and_by_hint() -> None:
    for cls in _pipeline_error_classes():
        exc = cls("something went wrong")
        assert classify_exc(exc) == cls.error_class, cls.__name__
        assert classify_exc(exc, error_class_hint=exc.error_class) == cls.error_class


def test_hint_rules(media: dict[str, Path]) -> None:
    stderr = ffprobe_stderr(media["truncated"])
    # A known hint wins over the message.
    assert classify_failure(None, stderr, error_class_hint="object_missing").name == (
        "object_missing"
    )
    # The PipelineError default ("unknown") and names we do not know are ignored.
    for hint in ("unknown", "no_such_class", ""):
        assert classify_failure(None, stderr, error_class_hint=hint).name == "corrupt_media"


# --- fingerprints -----------------------------------------------------------------------------


def test_fingerprint_groups_the_same_failure_across_objects(
    media: dict[str, Path], tmp_path: Path
) -> None:
    a = tmp_path / "incoming" / "2026" / "11" / "cam-01_clip.mp4"
    b = tmp_path / "other" / "tmpk2x9d_upload.mp4"
    for p in (a, b):
        p.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(media["truncated"], p)
    stderr_a, stderr_b = ffprobe_stderr(a), ffprobe_stderr(b)
    assert stderr_a != stderr_b  # different keys and different heap addresses
    assert "moov atom not found" in stderr_a
    assert fingerprint("corrupt_media", stderr_a) == fingerprint("corrupt_media", stderr_b)
    # Same class, another kind of message: no moov line for a file with no MP4 extension.
    other_kind = ffprobe_stderr(media["random_bin"])
    assert fingerprint("corrupt_media", other_kind) != fingerprint("corrupt_media", stderr_a)
    # Same message, another class.
    assert fingerprint("unknown", stderr_a) != fingerprint("corrupt_media", stderr_a)


def test_fingerprint_with_keys_containing_spaces(media: dict[str, Path], tmp_path: Path) -> None:
    spaced = tmp_path / "my videos" / "holiday clip, part 2.mp4"
    plain = tmp_path / "x.mp4"
    spaced.parent.mkdir()
    for p in (spaced, plain):
        shutil.copy(media["truncated"], p)
    s1, s2 = ffprobe_stderr(spaced), ffprobe_stderr(plain)
    # Without knowing the key the commas defeat normalisation; the caller redacts it.
    assert fingerprint("corrupt_media", s1, redact=[str(spaced)]) == fingerprint(
        "corrupt_media", s2, redact=[str(plain)]
    )


def test_fingerprint_real_exceptions_across_objects(tmp_path: Path, server: str) -> None:
    # Missing files at different paths.
    m1 = raised(lambda: (tmp_path / "a" / "one.mp4").open("rb"))
    m2 = raised(lambda: (tmp_path / "b" / "c" / "two.mov").open("rb"))
    assert fingerprint("object_missing", str(m1)) == fingerprint("object_missing", str(m2))
    # Unreachable endpoints on different ports and keys.
    ports = []
    for _ in range(2):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            ports.append(s.getsockname()[1])
    e1, e2 = (
        raised(lambda p=p, k=k: s3_client(f"http://127.0.0.1:{p}").head_object(Bucket="v", Key=k))
        for p, k in zip(ports, ("a/b.mp4", "c d/e f.mkv"), strict=True)
    )
    assert str(e1) != str(e2)
    assert fingerprint("store_unreachable", str(e1)) == fingerprint("store_unreachable", str(e2))
    # Timeouts on different files with different limits.
    fifos = [tmp_path / "p1.mp4", tmp_path / "sub-p2.mp4"]
    outs = []
    for fifo, limit in zip(fifos, (0.2, 0.3), strict=True):
        os.mkfifo(fifo)
        outs.append(raised(lambda f=fifo, t=limit: subprocess.run([FFPROBE, str(f)], timeout=t)))
    assert fingerprint("probe_timeout", str(outs[0])) == fingerprint("probe_timeout", str(outs[1]))
    # The retry count botocore reports does not split a group.
    slow_once = raised(lambda: s3_client(server).get_object(Bucket="v", Key="slowdown/a.mp4"))
    retried = _session().client(
        "s3", endpoint_url=server, config=Config(retries={"total_max_attempts": 2})
    )
    slow_twice = raised(lambda: retried.get_object(Bucket="v", Key="slowdown/b.mp4"))
    assert str(slow_once) != str(slow_twice)
    assert fingerprint("throttled", str(slow_once)) == fingerprint("throttled", str(slow_twice))
    # A different kind of message in the same class stays apart.
    assert fingerprint("store_unreachable", str(e1)) != fingerprint(
        "store_unreachable",
        str(raised(lambda: s3_client(server).get_object(Bucket="v", Key="stall"))),
    )


def test_normalisation_of_etags_ids_and_times(media: dict[str, Path]) -> None:
    import hashlib

    etags = [
        hashlib.md5(media[n].read_bytes(), usedforsecurity=False).hexdigest()
        for n in ("good", "truncated")
    ]
    etags.append(f"{etags[0]}-12")  # multipart
    stamps = [time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t)) for t in (0, 1.8e9)]
    forms = {
        normalize_message(f'version "{etag}" of {key} changed at {stamp} (size {size})')
        for etag, key, stamp, size in zip(
            etags,
            ("a.mp4", "b/c.mov", "d-e/f.mkv"),
            [*stamps, stamps[0]],
            (0, 12639, 99),
            strict=True,
        )
    }
    assert len(forms) == 1, forms


def test_fingerprint_is_stable_across_processes() -> None:
    code = (
        "from edvmp_pipeline.domain.failure_classes import fingerprint\n"
        "print(fingerprint('corrupt_media', 'x.mp4: Invalid data found when processing input'))"
    )
    outs = {
        subprocess.run(
            [sys.executable, "-c", code],
            capture_output=True,
            text=True,
            check=True,
            cwd=REPO,
            env={**os.environ, "PYTHONHASHSEED": seed},
        ).stdout.strip()
        for seed in ("1", "2")
    }
    assert len(outs) == 1
    (value,) = outs
    assert len(value) == 16 and int(value, 16) >= 0


# --- agreement with the modules that raise PipelineErrors -------------------------------------
# The hint wins when the sensor has it; these check that the message alone, as the raising
# code words it, lands in the same class (e.g. for failures recorded without metadata).


def test_prober_rejections_agree(media: dict[str, Path], tmp_path: Path) -> None:
    prober_mod = pytest.importorskip("edvmp_pipeline.adapters.prober")
    prober = prober_mod.FfprobeProber()
    rejected: dict[str, errors.PipelineError] = {}
    for name in ("zero", "random", "random_bin", "text", "truncated", "still", "audio"):
        path = media[name]
        exc = raised(lambda p=path: prober.probe(str(p), size_bytes=p.stat().st_size))
        assert isinstance(exc, errors.PipelineError), exc
        rejected[name] = exc
        assert classify_exc(exc) == exc.error_class, str(exc)
    # Random files: FFmpeg guesses a demuxer per file and fails in a few different ways.
    # Files failing the same way share a fingerprint (their leading bytes and offsets differ);
    # different ways get different fingerprints.
    by_way: dict[str, set[str]] = {}
    prints: dict[str, set[str]] = {}
    for seed in range(5, 17):
        path = tmp_path / f"random{seed}.bin"
        path.write_bytes(random.Random(seed).randbytes(4096))
        assert classify_failure(None, ffprobe_stderr(path)).name == "corrupt_media"
        exc = raised(lambda p=path: prober.probe(str(p), size_bytes=4096))
        assert isinstance(exc, errors.PipelineError)
        assert classify_exc(exc) == exc.error_class == "corrupt_media", str(exc)
        # The ffprobe part of the message with its numbers masked names the way it failed.
        way = re.sub(r"\d+", "N", str(exc).partition("ffprobe:")[2])
        by_way.setdefault(way, set()).add(str(exc))
        prints.setdefault(way, set()).add(fingerprint(exc.error_class, str(exc)))
    assert any(len(messages) > 1 for messages in by_way.values()), by_way
    assert all(len(p) == 1 for p in prints.values()), prints
    assert len({next(iter(p)) for p in prints.values()}) == len(prints)


def test_s3_translation_agrees(server: str) -> None:
    s3_errors = pytest.importorskip("edvmp_pipeline.adapters.s3_errors")
    s3 = s3_client(server)
    for marker in S3_ERRORS:
        exc = raised(lambda m=marker: s3.get_object(Bucket="videos", Key=f"{m}/a.mp4", IfMatch="e"))
        translated = s3_errors.translate_s3_error(exc, what=f"s3://videos/{marker}/a.mp4")
        assert classify_exc(translated) == translated.error_class, str(translated)


def test_bedrock_summarizer_errors_agree(
    media: dict[str, Path], server: str, closed_port: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    summarizers = pytest.importorskip("edvmp_pipeline.adapters.summarizers")
    prober_mod = pytest.importorskip("edvmp_pipeline.adapters.prober")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "secret")
    good = media["good"]
    record = prober_mod.FfprobeProber().probe(str(good), size_bytes=good.stat().st_size)
    cases = {
        (server, "model-ValidationException"): "summarizer_error",
        (server, "model-AccessDeniedException"): "summarizer_error",
        (server, "model-ThrottlingException"): "throttled",
        (f"http://127.0.0.1:{closed_port}", "model-x"): "summarizer_unavailable",
    }
    for (endpoint, model_id), expected in cases.items():
        summarizer = summarizers.BedrockSummarizer(
            model_id=model_id, endpoint_url=endpoint, max_attempts=2
        ).with_retry_hooks(sleep=lambda _s: None)
        exc = raised(lambda s=summarizer: s.summarize(record, "videos/a.mp4"))
        assert isinstance(exc, errors.PipelineError), exc
        got = classify_exc(exc, error_class_hint=exc.error_class)
        assert got == expected, str(exc)
        assert get_failure_class(got).retryable == exc.retryable, str(exc)
        assert classify_exc(exc) == expected, str(exc)
