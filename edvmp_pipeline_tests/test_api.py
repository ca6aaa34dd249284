"""The jobs API end to end: a real ``edvmp serve`` (uvicorn) on 127.0.0.1, the local S3 stack
(SeaweedFS) and ``dagster dev`` (webserver + daemon running the object sensor). A client logs
in, asks for an upload, PUTs the bytes to the presigned URL, polls the job and reads its
result and history, exactly as a partner tool would; plus auth failures, expired and forged
tokens, refused input (wrong JSON types, bodies over the size limit), the signed size and
type, and schemathesis over the OpenAPI schema. What a real server cannot be made to send (a
malformed Content-Length, an endless body) is driven into the app in-process."""

from __future__ import annotations

import asyncio
import os
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import jwt
import pytest
import schemathesis
from botocore.client import BaseClient
from hypothesis import HealthCheck, given, settings

from edvmp_pipeline.api.app import ApiConfig, create_app
from edvmp_pipeline.api.auth import Authenticator, User, hash_password
from edvmp_pipeline.api.body_limit import MAX_BODY_BYTES
from edvmp_pipeline.catalog.store import Catalog
from edvmp_pipeline.devtools.sample_media import generate_samples
from edvmp_pipeline.devtools.stack import StackSettings
from edvmp_pipeline.services.api_jobs import UploadSettings
from edvmp_pipeline_tests.api_support import EDVMP, api_env, serving
from edvmp_pipeline_tests.dagster_dev import DagsterDev, free_port, start_dagster_dev
from edvmp_pipeline_tests.media_factory import ffmpeg_available
from edvmp_pipeline_tests.s3_server import create_test_bucket, delete_test_bucket

pytestmark = [
    pytest.mark.skipif(not ffmpeg_available(), reason="ffmpeg/ffprobe not installed"),
    pytest.mark.timeout(300),
]

SECRET = "test-secret-" + "x" * 40
MAX_UPLOAD = 10 * 1024 * 1024
PASSWORDS = {"alice": "correct horse battery staple", "bob": "hunter2-but-longer"}
STATUSES = {"AWAITING_UPLOAD", "SUBMITTED", "PROCESSING", "SUCCEEDED", "FAILED"}


@dataclass
class Server:
    url: str
    home: Path
    samples: Path
    dev: DagsterDev | None
    log: Path
    tokens: dict[str, str] = field(default_factory=dict)

    def token(self, user: str = "alice") -> str:
        if user in self.tokens:
            return self.tokens[user]
        response = httpx.post(
            f"{self.url}/auth/login", json={"username": user, "password": PASSWORDS[user]}
        )
        assert response.status_code == 200, response.text
        self.tokens[user] = response.json()["access_token"]
        return self.tokens[user]

    def headers(self, user: str = "alice") -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token(user)}"}


@pytest.fixture(scope="module")
def server(
    s3_stack: StackSettings, s3_client: BaseClient, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    tmp = tmp_path_factory.mktemp("api")
    bucket = create_test_bucket(s3_client, "api")
    home, env = api_env(
        tmp,
        s3_stack.env(),
        bucket,
        secret=SECRET,
        passwords=PASSWORDS,
        extra={"EDVMP_API_MAX_UPLOAD_BYTES": str(MAX_UPLOAD)},
    )
    dev = start_dagster_dev(env, tmp / "dagster-dev.log")
    samples = tmp / "samples"
    generate_samples(samples)
    log = tmp / "serve.log"
    try:
        with serving(env, log) as url:
            dev.wait_until_ready()
            yield Server(url=url, home=home, samples=samples, dev=dev, log=log)
    finally:
        dev.stop()
        delete_test_bucket(s3_client, bucket)


def create(server: Server, body: dict, user: str = "alice") -> httpx.Response:
    return httpx.post(f"{server.url}/jobs", json=body, headers=server.headers(user))


def put(job: dict, path: Path, **overrides: object) -> httpx.Response:
    data = overrides.pop("content", path.read_bytes())
    headers = {**job["upload_headers"], **overrides.pop("headers", {})}  # type: ignore[dict-item]
    return httpx.put(job["upload_url"], content=data, headers=headers, timeout=30)


def wait_final(server: Server, job_id: str, timeout: float = 120) -> tuple[dict, list[str]]:
    seen: list[str] = []
    headers = server.headers()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        response = httpx.get(f"{server.url}/jobs/{job_id}", headers=headers)
        assert response.status_code == 200, response.text
        body = response.json()
        if not seen or seen[-1] != body["status"]:
            seen.append(body["status"])
        if body["status"] in ("SUCCEEDED", "FAILED"):
            return body, seen
        time.sleep(0.25)
    assert server.dev is not None
    raise AssertionError(f"job {job_id} still {seen} after {timeout}s\n{server.dev.log_tail()}")


def test_login_upload_poll_result_history(server: Server) -> None:
    headers = server.headers()
    clip = server.samples / "marketing" / "launch_teaser.mp4"
    response = create(server, {"filename": "launch teaser.mp4", "size_bytes": clip.stat().st_size})
    assert response.status_code == 201, response.text
    job = response.json()
    assert set(job) >= {"job_id", "s3_bucket", "s3_key", "upload_url", "expires_in"}
    assert job["s3_key"] == f"api/{job['job_id']}/launch teaser.mp4"
    assert job["upload_headers"]["Content-Type"] == "video/mp4"  # guessed, then signed

    before = httpx.get(f"{server.url}/jobs/{job['job_id']}", headers=headers).json()
    assert before["status"] == "AWAITING_UPLOAD"
    assert before["error_code"] is None and before["s3_key"] == job["s3_key"]
    not_yet = httpx.get(f"{server.url}/jobs/{job['job_id']}/result", headers=headers)
    assert not_yet.status_code == 409 and "AWAITING_UPLOAD" in not_yet.json()["detail"]

    assert put(job, clip).status_code == 200
    final, seen = wait_final(server, job["job_id"])
    assert final["status"] == "SUCCEEDED", final
    assert set(seen) <= STATUSES and seen[0] == "AWAITING_UPLOAD"
    assert final["updated_at"] >= final["created_at"]

    result = httpx.get(f"{server.url}/jobs/{job['job_id']}/result", headers=headers)
    assert result.status_code == 200, result.text
    body = result.json()
    metadata = body["metadata"]
    assert (metadata["width"], metadata["height"], metadata["object_key"]) == (
        640,
        360,
        job["s3_key"],
    )
    assert metadata["size_bytes"] == clip.stat().st_size
    assert [s["codec_type"] for s in metadata["streams"]] == ["video", "audio"]
    raw = metadata["ffprobe"]
    assert raw["format"]["format_name"].startswith("mov,mp4")
    assert {s["codec_type"] for s in raw["streams"]} == {"video", "audio"}
    assert body["summary"]["summary"] and body["summary"]["summarizer"] == "offline"
    assert {c["rule_id"] for c in body["checks"]} >= {"has_audio"}
    assert all(isinstance(c["passed"], bool) for c in body["checks"])

    history = httpx.get(f"{server.url}/history", params={"limit": 200}, headers=headers).json()
    ids = [item["job_id"] for item in history["items"]]
    assert job["job_id"] in ids
    created = [item["created_at"] for item in history["items"]]
    assert created == sorted(created, reverse=True), "newest first"


def test_a_corrupt_upload_fails_with_its_class_and_incident(server: Server) -> None:
    headers = server.headers()
    job = create(server, {"filename": "cut.mp4"}).json()
    assert put(job, server.samples / "broken" / "upload_cut_short.mp4").status_code == 200
    final, _ = wait_final(server, job["job_id"])
    assert final["status"] == "FAILED"
    assert final["error_code"] == "corrupt_media"
    assert "moov atom not found" in final["error_message"]
    result = httpx.get(f"{server.url}/jobs/{job['job_id']}/result", headers=headers)
    assert result.status_code == 409 and "failed" in result.json()["detail"]

    deadline = time.monotonic() + 60
    while True:
        incidents = httpx.get(f"{server.url}/incidents", headers=headers).json()["items"]
        mine = [i for i in incidents if i["object_key"] == job["s3_key"]]
        if mine or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert mine and mine[0]["failure_class"] == "corrupt_media", incidents
    # bob's incidents are bob's: alice's corrupt upload is not among them.
    bobs = httpx.get(f"{server.url}/incidents", headers=server.headers("bob")).json()["items"]
    assert all(i["object_key"] != job["s3_key"] for i in bobs)


def test_the_size_and_type_are_part_of_the_signature(server: Server) -> None:
    clip = server.samples / "marketing" / "launch_teaser.mp4"
    job = create(server, {"filename": "a.mp4", "size_bytes": 1000}).json()
    assert job["upload_headers"]["Content-Length"] == "1000"
    # The client sends the real length of its (larger) file, as any HTTP client would.
    job["upload_headers"].pop("Content-Length")
    assert put(job, clip).status_code == 403, "a body of another length is refused"
    job = create(server, {"filename": "b.mp4", "content_type": "video/mp4"}).json()
    refused = put(job, clip, headers={"Content-Type": "text/html"})
    assert refused.status_code == 403, "another Content-Type is refused"
    view = httpx.get(f"{server.url}/jobs/{job['job_id']}", headers=server.headers()).json()
    assert view["status"] == "AWAITING_UPLOAD"


@pytest.mark.parametrize(
    "filename",
    ["فارسی\u200cنام.mp4", "family \U0001f468\u200d\U0001f469\u200d\U0001f467.mp4", "café.mp4"],
)
def test_names_that_need_joiners_are_kept(server: Server, filename: str) -> None:
    # Persian and emoji sequences need U+200C/U+200D: only the spoofing characters are refused.
    response = create(server, {"filename": filename})
    assert response.status_code == 201, response.text
    assert response.json()["s3_key"].endswith("/" + filename)


@pytest.mark.parametrize(
    ("body", "status", "needle"),
    [
        ({"filename": "../x.mp4"}, 422, "without '/'"),
        ({"filename": "notes.txt"}, 422, "would not be processed"),
        ({"filename": "a.mp4", "content_type": "text/html"}, 422, "not a video type"),
        ({"filename": "a.mp4", "content_type": "video/mp4\r\nX-Evil: 1"}, 422, "content_type"),
        ({"filename": "a.mp4", "size_bytes": MAX_UPLOAD + 1}, 413, "upload limit"),
        ({"filename": "a.mp4", "size_bytes": 0}, 422, "size_bytes"),
        ({"filename": ""}, 422, "filename"),
        ({"filename": "a\x1b[2J.mp4"}, 422, "unusable object key"),
        ({"filename": "clip\u202egpj.mp4"}, 422, "U+202E (RIGHT-TO-LEFT OVERRIDE)"),
        ({"filename": "clip\u200b.mp4"}, 422, "U+200B (ZERO WIDTH SPACE)"),
        ({"filename": "a.mp4", "owner": "bob"}, 422, "owner"),
        ({}, 422, "filename"),
    ],
)
def test_bad_job_requests_are_4xx_with_a_detail(
    server: Server, body: dict, status: int, needle: str
) -> None:
    response = create(server, body)
    assert response.status_code == status, response.text
    assert needle in response.json()["detail"]


@pytest.mark.parametrize("size", [True, False, "12", 12.5, 12.0, [12], {"n": 12}])
def test_json_types_are_not_coerced(server: Server, size: object) -> None:
    # Lax pydantic took true as the size 1 (a presigned PUT of one byte) and "12" as 12.
    response = create(server, {"filename": "a.mp4", "size_bytes": size})
    assert response.status_code == 422, response.text
    detail = response.json()["detail"]
    assert detail.startswith("size_bytes: ") and "\n" not in detail, detail


def test_a_proper_size_is_still_signed(server: Server) -> None:
    response = create(server, {"filename": "a.mp4", "size_bytes": 12})
    assert response.status_code == 201, response.text
    assert response.json()["upload_headers"]["Content-Length"] == "12"
    # null, as many clients send an optional field, means no size, as leaving it out does.
    response = create(server, {"filename": "a.mp4", "size_bytes": None})
    assert response.status_code == 201, response.text
    assert "Content-Length" not in response.json()["upload_headers"]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"filename": 12}, "filename"),
        ({"filename": "a.mp4", "content_type": 1}, "content_type"),
        ({"filename": ["a.mp4"]}, "filename"),
    ],
)
def test_job_strings_must_be_strings(server: Server, body: dict, field: str) -> None:
    response = create(server, body)
    assert response.status_code == 422, response.text
    assert response.json()["detail"].startswith(f"{field}: ")


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"username": 1, "password": PASSWORDS["alice"]}, "username"),
        ({"username": "alice", "password": True}, "password"),
        ({"username": "alice", "password": None}, "password"),
    ],
)
def test_login_fields_must_be_strings(server: Server, body: dict, field: str) -> None:
    response = httpx.post(f"{server.url}/auth/login", json=body)
    assert response.status_code == 422, response.text
    assert response.json()["detail"].startswith(f"{field}: ")


# -- the body size limit ---------------------------------------------------------------------

TOO_LARGE = {"detail": f"request body over {MAX_BODY_BYTES} bytes"}


def just_over(prefix: bytes = b"{") -> bytes:
    """A JSON-looking body one byte over the limit (its content never matters)."""
    return prefix + b" " * (MAX_BODY_BYTES + 1 - len(prefix))


@pytest.mark.parametrize(
    ("path", "auth", "body"),
    [
        ("/auth/login", False, just_over()),  # no token needed: the original 1 GB hole
        ("/jobs", True, just_over()),
        ("/jobs", False, just_over()),  # 413, not 401: refused before auth is checked
        ("/jobs", True, just_over(b"{not json")),  # 413, not 422: before JSON is parsed
        ("/jobs", True, b" " * (20 * 1024 * 1024)),  # the 20 MB body once read in full
    ],
)
def test_a_body_over_the_limit_is_413_before_auth_or_parsing(
    server: Server, path: str, auth: bool, body: bytes
) -> None:
    headers = {"Content-Type": "application/json", **(server.headers() if auth else {})}
    response = httpx.post(f"{server.url}{path}", content=body, headers=headers, timeout=30)
    assert response.status_code == 413, response.text
    assert response.json() == TOO_LARGE
    assert response.text.count("\n") == 0


def test_a_chunked_body_over_the_limit_is_413(server: Server) -> None:
    def chunks() -> Iterator[bytes]:  # no Content-Length: httpx sends it chunked
        yield b'{"filename": "a.mp4", "content_type": "'
        for _ in range(8):
            yield b"x" * (MAX_BODY_BYTES // 4)
        yield b'"}'

    for path, headers in (("/jobs", server.headers()), ("/auth/login", {})):
        response = httpx.post(
            f"{server.url}{path}",
            content=chunks(),
            headers={**headers, "Content-Type": "application/json"},
        )
        assert response.status_code == 413, (path, response.text)
        assert response.json() == TOO_LARGE


def test_bodies_under_the_limit_still_work(server: Server) -> None:
    login = {"username": "alice", "password": PASSWORDS["alice"]}

    def chunked_login() -> Iterator[bytes]:
        yield b'{"username": "alice", '
        yield f'"password": "{PASSWORDS["alice"]}"}}'.encode()

    response = httpx.post(
        f"{server.url}/auth/login",
        content=chunked_login(),
        headers={"Content-Type": "application/json"},
    )
    assert response.status_code == 200, response.text
    assert response.json()["token_type"] == "bearer"
    assert httpx.post(f"{server.url}/auth/login", json=login).status_code == 200
    assert create(server, {"filename": "small.mp4"}).status_code == 201
    # Exactly at the limit is let through, to the model's own length check (422, not 413).
    padded = b'{"username": "alice", "password": "' + b"p" * MAX_BODY_BYTES
    padded = padded[: MAX_BODY_BYTES - 2] + b'"}'
    response = httpx.post(
        f"{server.url}/auth/login", content=padded, headers={"Content-Type": "application/json"}
    )
    assert len(padded) == MAX_BODY_BYTES
    assert response.status_code == 422 and "password" in response.json()["detail"]


def in_process_app(tmp_path: Path) -> object:
    """The real app over a scratch catalog, for requests no HTTP server lets through."""

    def no_s3() -> object:
        raise AssertionError("a refused request must not reach S3")

    users = {"alice": User("alice", hash_password(PASSWORDS["alice"]))}
    return create_app(
        ApiConfig(
            catalog=Catalog(tmp_path / "catalog").ensure(),
            authenticator=Authenticator(users, SECRET, 3600),
            uploads=UploadSettings(
                bucket="uploads",
                prefix="",
                extensions=frozenset({".mp4"}),
                url_expiry_s=900,
                max_upload_bytes=MAX_UPLOAD,
            ),
            s3_client=no_s3,
        )
    )


def call_app(
    app: object, headers: list[tuple[bytes, bytes]], chunk: bytes, chunks: int | None
) -> tuple[list[dict], int]:
    """Drive one ``POST /auth/login`` through the ASGI app: ``chunks`` body chunks of
    ``chunk`` (``None``: without end). Returns the messages sent and the chunks read."""
    sent: list[dict] = []
    read = 0

    async def receive() -> dict:
        nonlocal read
        read += 1
        more = chunks is None or read < chunks
        return {"type": "http.request", "body": chunk, "more_body": more}

    async def send(message: dict) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/auth/login",
        "raw_path": b"/auth/login",
        "root_path": "",
        "query_string": b"",
        "headers": [(b"content-type", b"application/json"), *headers],
        "client": ("127.0.0.1", 1234),
        "server": ("127.0.0.1", 80),
    }
    asyncio.run(app(scope, receive, send))  # type: ignore[operator]
    return sent, read


def answer(sent: list[dict]) -> tuple[int, dict[bytes, bytes], bytes]:
    start, *bodies = sent
    assert start["type"] == "http.response.start"
    return start["status"], dict(start["headers"]), b"".join(m.get("body", b"") for m in bodies)


def test_an_endless_chunked_body_is_read_only_up_to_the_limit(tmp_path: Path) -> None:
    app = in_process_app(tmp_path)
    chunk = b" " * 4096
    sent, read = call_app(app, [(b"transfer-encoding", b"chunked")], chunk, None)
    status, headers, body = answer(sent)
    assert status == 413 and headers[b"connection"] == b"close"
    assert httpx.Response(413, content=body).json() == TOO_LARGE
    assert read == MAX_BODY_BYTES // len(chunk) + 1, "stops at the chunk that crosses the limit"


@pytest.mark.parametrize(
    "values",
    [[b"12abc"], [b"-1"], [b"+5"], [b"1_000"], [b""], [b"0x10"], [b"10", b"20"]],
)
def test_a_malformed_content_length_is_400(tmp_path: Path, values: list[bytes]) -> None:
    headers = [(b"content-length", v) for v in values]
    sent, read = call_app(in_process_app(tmp_path), headers, b"{}", 1)
    status, _, body = answer(sent)
    assert status == 400 and read == 0
    assert "Content-Length" in httpx.Response(400, content=body).json()["detail"]


def test_a_declared_length_over_the_limit_is_413_unread(tmp_path: Path) -> None:
    for declared in (MAX_BODY_BYTES + 1, 10**40):
        headers = [(b"content-length", str(declared).encode())]
        sent, read = call_app(in_process_app(tmp_path), headers, b"{}", 1)
        status, _, body = answer(sent)
        assert (status, read) == (413, 0)
        assert httpx.Response(413, content=body).json() == TOO_LARGE


def test_bad_queries_and_unknown_jobs(server: Server) -> None:
    headers = server.headers()
    for limit in (0, 201, "many"):
        r = httpx.get(f"{server.url}/history", params={"limit": limit}, headers=headers)
        assert r.status_code == 422, r.text
    assert httpx.get(f"{server.url}/jobs/{'0' * 32}", headers=headers).status_code == 404
    assert httpx.get(f"{server.url}/jobs/..%2Fetc", headers=headers).status_code == 404
    assert httpx.get(f"{server.url}/jobs/{'0' * 32}/result", headers=headers).status_code == 404
    raw = httpx.post(
        f"{server.url}/jobs",
        content=b"{not json",
        headers={**headers, "Content-Type": "application/json"},
    )
    assert raw.status_code == 422 and "detail" in raw.json()
    # Another user's job is not found (not "forbidden": its existence is not revealed).
    job = create(server, {"filename": "mine.mp4"}).json()
    other = httpx.get(f"{server.url}/jobs/{job['job_id']}", headers=server.headers("bob"))
    assert other.status_code == 404


def test_auth_failures(server: Server) -> None:
    protected = [
        ("POST", "/jobs"),
        ("GET", f"/jobs/{'0' * 32}"),
        ("GET", f"/jobs/{'0' * 32}/result"),
        ("GET", "/history"),
        ("GET", "/incidents"),
    ]
    now = int(time.time())
    claims = {"iss": "edvmp", "sub": "alice", "role": "user", "iat": now - 7200}
    forged = {
        "expired": jwt.encode({**claims, "exp": now - 10}, SECRET, algorithm="HS256"),
        "wrong key": jwt.encode({**claims, "exp": now + 600}, "y" * 40, algorithm="HS256"),
        "alg none": jwt.encode({**claims, "exp": now + 600}, None, algorithm="none"),
        "unknown user": jwt.encode(
            {**claims, "sub": "mallory", "exp": now + 600}, SECRET, algorithm="HS256"
        ),
        "garbage": "not.a.token",
    }
    for method, path in protected:
        r = httpx.request(method, f"{server.url}{path}", json={"filename": "a.mp4"})
        assert r.status_code == 401 and r.headers["WWW-Authenticate"] == "Bearer", path
        for name, token in forged.items():
            r = httpx.request(
                method,
                f"{server.url}{path}",
                json={"filename": "a.mp4"},
                headers={"Authorization": f"Bearer {token}"},
            )
            assert r.status_code == 401, (path, name, r.text)
            if name == "expired":
                assert "expired" in r.json()["detail"]
    for username, password in (("alice", "wrong"), ("mallory", "x"), ("ALICE", PASSWORDS["alice"])):
        r = httpx.post(
            f"{server.url}/auth/login", json={"username": username, "password": password}
        )
        assert r.status_code == 401, username
        assert r.json()["detail"] == "wrong username or password"
    good = httpx.post(
        f"{server.url}/auth/login", json={"username": "alice", "password": PASSWORDS["alice"]}
    ).json()
    assert good["token_type"] == "bearer" and good["expires_in"] == 3600
    assert httpx.get(f"{server.url}/healthz").json() == {"status": "ok"}
    assert httpx.get(f"{server.url}/metrics").status_code == 200


def _serve(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [EDVMP, "serve", "--port", str(free_port()), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_serve_refuses_to_start_without_a_secret_or_users(tmp_path: Path) -> None:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("EDVMP_", "DAGSTER_"))}
    base["EDVMP_HOME"] = str(tmp_path / "home")
    cases = {
        "EDVMP_API_SECRET is not set": {},
        "at least 32": {"EDVMP_API_SECRET": "short"},
        "EDVMP_API_USERS is not set": {"EDVMP_API_SECRET": SECRET},
        "no such file": {"EDVMP_API_SECRET": SECRET, "EDVMP_API_USERS": str(tmp_path / "no")},
    }
    bad_users = tmp_path / "bad.yaml"
    bad_users.write_text("users:\n  eve:\n    password_hash: plain-text\n", encoding="utf-8")
    cases["must be an argon2 hash"] = {
        "EDVMP_API_SECRET": SECRET,
        "EDVMP_API_USERS": str(bad_users),
    }
    for needle, extra in cases.items():
        done = _serve({**base, **extra})
        assert done.returncode == 2, (needle, done.stderr)
        assert needle in done.stderr and "Traceback" not in done.stderr
        assert len(done.stderr.strip().splitlines()) == 1, done.stderr


def test_hash_password_makes_a_hash_serve_accepts() -> None:
    done = subprocess.run(
        [EDVMP, "hash-password"], input="s3cret pass\n", capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    from argon2 import PasswordHasher

    assert PasswordHasher().verify(done.stdout.strip(), "s3cret pass")


# -- schemathesis: no generated request gets a 5xx -------------------------------------------
# Driven through schemathesis's Python API with Hypothesis directly: its pytest plugin
# (``schemathesis.pytest.from_fixture``) does not run under pytest 9 (``Function._nodeid``).


def test_no_generated_request_is_a_server_error(server: Server) -> None:
    schema = schemathesis.openapi.from_url(f"{server.url}/openapi.json")
    headers = server.headers()
    operations = [result.ok() for result in schema.get_all_operations()]
    labels = {op.label for op in operations}
    assert {"POST /jobs", "GET /jobs/{job_id}", "GET /history", "POST /auth/login"} <= labels
    errors: list[str] = []
    statuses: list[int] = []
    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(
            max_examples=25, deadline=None, database=None, suppress_health_check=list(HealthCheck)
        )
        def no_5xx(case) -> None:
            response = case.call(base_url=server.url, headers=headers)
            statuses.append(response.status_code)
            if response.status_code >= 500:
                errors.append(f"{case.method} {case.formatted_path}: {response.status_code} "
                              f"{response.text[:200]}")  # fmt: skip

        no_5xx()
    assert errors == [], errors[:5]
    assert len(statuses) >= 5 * len(operations), "schemathesis generated too few requests"
    assert {200, 401, 422} <= set(statuses), sorted(set(statuses))
