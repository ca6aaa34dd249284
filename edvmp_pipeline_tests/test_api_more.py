"""The jobs API as still other clients use it: a real ``edvmp serve`` (uvicorn) over the local S3
stack (SeaweedFS), no Dagster. What they send that the other API tests do not: a compressed
request body (``Content-Encoding: gzip``), two ``Content-Type`` headers, ``Expect:
100-continue`` with a body the server will refuse, a body cut off by a client that goes away,
a path with an encoded ``/``; what they rely on: no cache keeps a token or an upload URL, and
the OpenAPI schema says which fields every answer carries and which statuses ``/healthz`` and
``/metrics`` answer. Raw sockets where an HTTP library would tidy the request up."""

from __future__ import annotations

import gzip
import socket
import sqlite3
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlparse

import httpx
import pytest
from botocore.client import BaseClient

from edvmp_pipeline.catalog.store import Catalog
from edvmp_pipeline.devtools.stack import StackSettings
from edvmp_pipeline.domain.records import ObjectVersion
from edvmp_pipeline_tests.api_support import api_env, serving
from edvmp_pipeline_tests.s3_server import create_test_bucket, delete_test_bucket

pytestmark = pytest.mark.timeout(120)

SECRET = "test-secret-" + "m" * 40
PASSWORDS = {"erin": "erin's long passphrase"}
BODY = b'{"filename": "a.mp4"}'


@dataclass
class Api:
    url: str
    log: Path
    token: str = ""
    home: Path | None = None

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    def raw(
        self,
        request: bytes,
        *,
        close_after: float | None = None,
        wait: float = 5,
        head_only: bool = False,
    ) -> bytes:
        """Send ``request`` as bytes on a fresh connection and return what comes back: up to
        the end of the first final (not 1xx) answer, or what came before the server closed or
        was quiet for ``wait`` s. ``close_after``: close the connection that many seconds
        after sending, reading nothing; ``head_only``: the answer has no body (HEAD)."""
        parsed = urlparse(self.url)
        with socket.create_connection((parsed.hostname, parsed.port), timeout=wait) as sock:
            sock.sendall(request)
            if close_after is not None:
                time.sleep(close_after)
                return b""
            out = b""
            try:
                while not _complete(out, head_only) and (chunk := sock.recv(65536)):
                    out += chunk
            except TimeoutError:
                pass
            return out

    def post(
        self, path: str, headers: list[tuple[str, str]], body: bytes = b"", wait: float = 5
    ) -> bytes:
        lines = [f"POST {path} HTTP/1.1", "Host: 127.0.0.1", f"Authorization: Bearer {self.token}"]
        lines += [f"{name}: {value}" for name, value in headers]
        return self.raw(("\r\n".join(lines) + "\r\n\r\n").encode() + body, wait=wait)


def _complete(answer: bytes, head_only: bool) -> bool:
    """Whether ``answer`` holds a final (not 1xx) response with its whole body."""
    while answer.startswith(b"HTTP/1.1 1") and b"\r\n\r\n" in answer:
        answer = answer.split(b"\r\n\r\n", 1)[1]  # an interim answer (100 Continue)
    head, sep, body = answer.partition(b"\r\n\r\n")
    if not sep:
        return False
    if head_only:
        return True
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return len(body) >= int(value)
    return False


def status_of(answer: bytes) -> int:
    """The status of the final answer in ``answer`` (after any 100 Continue)."""
    while answer.startswith(b"HTTP/1.1 100 ") and b"\r\n\r\n" in answer:
        answer = answer.split(b"\r\n\r\n", 1)[1]
    return int(answer.split(b"\r\n", 1)[0].split(b" ")[1])


@pytest.fixture(scope="module")
def api(
    s3_stack: StackSettings, s3_client: BaseClient, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Api]:
    tmp = tmp_path_factory.mktemp("api-more")
    bucket = create_test_bucket(s3_client, "apimore")
    home, env = api_env(
        tmp,
        s3_stack.env(),
        bucket,
        secret=SECRET,
        passwords=PASSWORDS,
        # A hash seed under which a set {"GET", "HEAD"} iterates as HEAD, GET (see
        # test_allow_lists_the_methods_in_one_order).
        extra={"PYTHONHASHSEED": "3"},
    )
    log = tmp / "serve.log"
    try:
        with serving(env, log) as url:
            r = httpx.post(
                f"{url}/auth/login", json={"username": "erin", "password": PASSWORDS["erin"]}
            )
            assert r.status_code == 200, r.text
            yield Api(url=url, log=log, token=r.json()["access_token"], home=home)
    finally:
        text = log.read_text(encoding="utf-8", errors="replace")
        delete_test_bucket(s3_client, bucket)
        assert "Traceback" not in text, text[-3000:]


def one_line_detail(r: httpx.Response) -> str:
    body = r.json()
    assert isinstance(body.get("detail"), str) and body["detail"], r.text
    assert "\n" not in body["detail"], r.text
    return body["detail"]


# -- how the body is to be read ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("coding", "body"),
    [
        ("gzip", gzip.compress(BODY)),  # before: 422 "body: not UTF-8 text (byte 1)"
        ("br", BODY),  # before: 201, the coding ignored and the bytes read as plain JSON
        ("gzip, identity", gzip.compress(BODY)),
    ],
    ids=["gzip", "br", "gzip-identity"],
)
def test_a_compressed_request_body_is_415_naming_the_coding(
    api: Api, coding: str, body: bytes
) -> None:
    headers = {**api.auth, "Content-Type": "application/json", "Content-Encoding": coding}
    for path in ("/jobs", "/auth/login"):
        r = httpx.post(f"{api.url}{path}", content=body, headers=headers)
        assert r.status_code == 415, (path, r.text)
        assert r.headers["accept-encoding"] == "identity"
        detail = one_line_detail(r)
        assert "Content-Encoding" in detail and coding.split(",")[0] in detail, detail
    plain = {**headers, "Content-Encoding": "identity"}
    assert httpx.post(f"{api.url}/jobs", content=BODY, headers=plain).status_code == 201


@pytest.mark.parametrize(
    "content_types",
    [
        ["application/json", "text/plain"],  # before: 201 (the first one counted)
        ["text/plain", "application/json"],  # before: 415 naming text/plain
        ["application/json", "application/json"],
    ],
)
def test_two_content_type_headers_are_415(api: Api, content_types: list[str]) -> None:
    headers = [("Content-Type", t) for t in content_types]
    answer = api.post("/jobs", [*headers, ("Content-Length", str(len(BODY)))], BODY)
    assert status_of(answer) == 415, answer
    assert b"2 Content-Type headers" in answer, answer


def test_a_charset_given_twice_is_415(api: Api) -> None:
    # Before: 201, the first charset read and the second ignored.
    headers = {**api.auth, "Content-Type": "application/json; charset=utf-8; charset=latin-1"}
    r = httpx.post(f"{api.url}/jobs", content=BODY, headers=headers)
    assert r.status_code == 415, r.text
    assert "charset more than once" in one_line_detail(r)


def test_expect_100_continue_hears_the_refusal_before_sending_the_body(api: Api) -> None:
    # curl and .NET send "Expect: 100-continue" and wait for the go-ahead before the body.
    # Before: "100 Continue" for a body the server was going to refuse (the type was checked
    # only once the body had been read).
    answer = api.post(
        "/jobs",
        [("Content-Type", "text/plain"), ("Content-Length", "4096"), ("Expect", "100-continue")],
    )
    assert b"100 Continue" not in answer, answer
    assert status_of(answer) == 415 and b"text/plain" in answer, answer
    # A body the server will take still gets the go-ahead, then its answer.
    answer = api.post(
        "/jobs",
        [
            ("Content-Type", "application/json"),
            ("Content-Length", str(len(BODY))),
            ("Expect", "100-continue"),
        ],
        wait=1,
    )
    assert answer.startswith(b"HTTP/1.1 100 Continue"), answer
    answer = api.post(
        "/jobs",
        [("Content-Type", "application/json"), ("Content-Length", str(len(BODY)))],
        BODY,
    )
    assert status_of(answer) == 201, answer


def _counted(api: Api, needle: str) -> float:
    for line in httpx.get(f"{api.url}/metrics").text.splitlines():
        if line.startswith("edvmp_api_requests_total{") and needle in line:
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_a_client_that_disconnects_mid_body_is_not_a_server_error(api: Api) -> None:
    # Before: starlette.requests.ClientDisconnect escaped the app ("Exception in ASGI
    # application" and a traceback in the server log), and the request was counted as a 500,
    # so an error-rate alert fired for clients on flaky networks.
    server_error = 'method="POST",route="/jobs",status="500"'
    gone = 'method="POST",route="/jobs",status="499"'
    before = _counted(api, gone)
    head = (
        f"POST /jobs HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {api.token}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(BODY) + 40}\r\n\r\n"
    )
    api.raw(head.encode() + BODY, close_after=0.3)
    deadline = time.monotonic() + 10
    while _counted(api, gone) == before and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _counted(api, gone) >= before + 1
    assert _counted(api, server_error) == 0
    log = api.log.read_text(encoding="utf-8", errors="replace")
    assert "Traceback" not in log and "ClientDisconnect" not in log, log[-3000:]


# -- paths -------------------------------------------------------------------------------------


def test_an_encoded_slash_is_not_a_path_separator(api: Api) -> None:
    # Before: Starlette routed on the decoded path, so /jobs/<id>%2Fresult was the result
    # route (a proxy filtering on the path as sent sees one segment) and /auth%2Flogin logged
    # in. RFC 3986 2.2: an encoded reserved character is data, not a delimiter.
    job = httpx.post(f"{api.url}/jobs", json={"filename": "p.mp4"}, headers=api.auth).json()
    jid = job["job_id"]
    for method, path in (
        ("GET", f"/jobs/{jid}%2Fresult"),
        ("GET", f"/jobs/{jid}%2fresult"),
        ("HEAD", f"/jobs/{jid}%2Fresult"),
        ("POST", "/auth%2Flogin"),
    ):
        request = (
            f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {api.token}"
            f"\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{{}}"
        )
        answer = api.raw(request.encode(), head_only=method == "HEAD")
        assert status_of(answer) == 404, (path, answer)
        if method != "HEAD":
            assert b"%2F" in answer or b"%2f" in answer, answer
    # Other encoded characters are decoded as before: %35 is "5".
    r = httpx.get(f"{api.url}/jobs/%{ord(jid[0]):X}{jid[1:]}/result", headers=api.auth)
    assert r.status_code == 409, r.text


def test_allow_lists_the_methods_in_one_order(api: Api) -> None:
    # Before: Starlette's own routes joined a set, so /docs said "HEAD, GET" or "GET, HEAD"
    # depending on the server process's hash seed (and the API routes "GET, HEAD").
    for path in ("/docs", "/openapi.json", "/healthz", "/history"):
        r = httpx.post(f"{api.url}{path}", headers=api.auth)
        assert r.status_code == 405, (path, r.text)
        assert r.headers["allow"] == "GET, HEAD", (path, r.headers["allow"])
        assert one_line_detail(r).endswith("(allowed: GET, HEAD)"), r.text


# -- caching and the schema --------------------------------------------------------------------


def test_tokens_and_upload_urls_are_not_cacheable(api: Api) -> None:
    # RFC 6749 5.1: a token response carries "Cache-Control: no-store"; the presigned URL is
    # a credential for its key until it expires. Before: neither said so.
    login = httpx.post(
        f"{api.url}/auth/login", json={"username": "erin", "password": PASSWORDS["erin"]}
    )
    job = httpx.post(f"{api.url}/jobs", json={"filename": "c.mp4"}, headers=api.auth)
    for r in (login, job):
        assert r.status_code in (200, 201), r.text
        assert r.headers["cache-control"] == "no-store", r.headers
        assert r.headers["pragma"] == "no-cache", r.headers


def _schema(api: Api, name: str) -> dict:
    return httpx.get(f"{api.url}/openapi.json").json()["components"]["schemas"][name]


def test_the_schema_requires_every_field_the_server_always_sends(api: Api) -> None:
    # Before: token_type, upload_method, upload_headers and analysis had defaults, so the
    # schema left them out of "required" and generated clients typed them as optional; the
    # status was any string, the times strings of no format.
    login = httpx.post(
        f"{api.url}/auth/login", json={"username": "erin", "password": PASSWORDS["erin"]}
    ).json()
    created = httpx.post(f"{api.url}/jobs", json={"filename": "s.mp4"}, headers=api.auth).json()
    job = httpx.get(f"{api.url}/jobs/{created['job_id']}", headers=api.auth).json()
    history = httpx.get(f"{api.url}/history?limit=1", headers=api.auth).json()
    for name, body in (
        ("TokenResponse", login),
        ("CreateJobResponse", created),
        ("JobResponse", job),
        ("JobResponse", history["items"][0]),
        ("HistoryResponse", history),
    ):
        schema = _schema(api, name)
        assert set(body) == set(schema["properties"]), (name, sorted(body))
        assert set(schema["required"]) == set(body), (name, schema["required"])
    result = _schema(api, "ResultResponse")
    assert set(result["required"]) == set(result["properties"]), result["required"]
    statuses = _schema(api, "JobResponse")["properties"]["status"]["enum"]
    assert set(statuses) == {
        "AWAITING_UPLOAD",
        "SUBMITTED",
        "PROCESSING",
        "SUCCEEDED",
        "FAILED",
        "EXPIRED",
    }
    assert job["status"] in statuses
    assert _schema(api, "TokenResponse")["properties"]["token_type"]["const"] == "bearer"
    for field in ("created_at", "updated_at"):
        assert _schema(api, "JobResponse")["properties"][field]["format"] == "date-time"
        assert datetime.fromisoformat(job[field]).tzinfo is not None


def test_healthz_and_metrics_declare_what_they_answer(api: Api) -> None:
    # Before: a query parameter on /healthz or /metrics was a 422 neither declared, /metrics'
    # 200 declared no content type and /healthz's 200 no schema.
    paths = httpx.get(f"{api.url}/openapi.json").json()["paths"]
    for path in ("/healthz", "/metrics"):
        r = httpx.get(f"{api.url}{path}?cachebuster=1")
        assert r.status_code == 422, r.text
        assert "cachebuster" in one_line_detail(r)
        assert "422" in paths[path]["get"]["responses"], path
    ok = paths["/metrics"]["get"]["responses"]["200"]["content"]
    r = httpx.get(f"{api.url}/metrics")
    assert r.headers["content-type"].split(";")[0] in ok, (r.headers["content-type"], ok)
    health = paths["/healthz"]["get"]["responses"]["200"]["content"]["application/json"]
    ref = health["schema"]["$ref"].rsplit("/", 1)[1]
    got = httpx.get(f"{api.url}/healthz").json()
    assert set(_schema(api, ref)["required"]) == set(got) == {"status"}, got


# --- a job whose upload never comes ---------------------------------------------------------


def _age_job(api: Api, job_id: str, expired_for: timedelta) -> None:
    """Move a job's clock on: its URL expired ``expired_for`` ago."""
    assert api.home is not None
    state = Catalog(api.home / "catalog").state
    expires = datetime.now(UTC) - expired_for
    con = sqlite3.connect(state.path)
    with con:
        con.execute(
            "UPDATE upload_jobs SET url_expires_at = ?, created_at = ? WHERE job_id = ?",
            [
                int(expires.timestamp() * 1e6),
                int((expires - timedelta(minutes=15)).timestamp() * 1e6),
                job_id,
            ],
        )
    con.close()


def _new_job(api: Api, filename: str) -> str:
    r = httpx.post(f"{api.url}/jobs", headers=api.auth, json={"filename": filename})
    assert r.status_code == 201, r.text
    return r.json()["job_id"]


def test_a_job_whose_upload_never_came_ends_expired(api: Api) -> None:
    # A client polling "until SUCCEEDED or FAILED" must get an end state, not wait for ever.
    job = _new_job(api, "never.mp4")
    _age_job(api, job, timedelta(hours=2))
    r = httpx.get(f"{api.url}/jobs/{job}", headers=api.auth)
    assert r.status_code == 200, r.text
    body = r.json()
    assert (body["status"], body["error_code"]) == ("EXPIRED", "upload_expired")
    assert "expired at" in body["error_message"] and "new job" in body["error_message"]
    r = httpx.get(f"{api.url}/jobs/{job}/result", headers=api.auth)
    assert r.status_code == 409 and "EXPIRED" in one_line_detail(r)
    history = httpx.get(f"{api.url}/history", headers=api.auth).json()["items"]
    assert {j["job_id"]: j["status"] for j in history}[job] == "EXPIRED"
    schema = httpx.get(f"{api.url}/openapi.json").json()
    assert (
        "EXPIRED" in schema["components"]["schemas"]["JobResponse"]["properties"]["status"]["enum"]
    )


def test_a_job_is_not_expired_while_a_late_upload_can_still_land(
    api: Api, s3_client: BaseClient
) -> None:
    job = _new_job(api, "late.mp4")
    # Its URL expired ten minutes ago: a large PUT begun in time may still be under way.
    _age_job(api, job, timedelta(minutes=10))
    body = httpx.get(f"{api.url}/jobs/{job}", headers=api.auth).json()
    assert (body["status"], body["error_code"]) == ("AWAITING_UPLOAD", None)

    # Past the grace, but the upload did land and was registered: the job shows it.
    late = _new_job(api, "landed.mp4")
    _age_job(api, late, timedelta(hours=2))
    view = httpx.get(f"{api.url}/jobs/{late}", headers=api.auth).json()
    assert api.home is not None
    Catalog(api.home / "catalog").register(
        [("landed~1", ObjectVersion(f"s3://{view['s3_bucket']}", view["s3_key"], "e1", 10, None))],
        registered_by="test",
    )
    body = httpx.get(f"{api.url}/jobs/{late}", headers=api.auth).json()
    assert (body["status"], body["error_code"]) == ("SUBMITTED", None)
