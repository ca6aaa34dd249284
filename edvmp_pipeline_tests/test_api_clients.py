"""The jobs API as clients it never saw use it: a real ``edvmp serve`` (uvicorn) over the local
S3 stack (SeaweedFS), no Dagster (nothing here needs a run). What they send that the happy
path never does: form-encoded or text/plain JSON, non-UTF-8 or ambiguous JSON (duplicate keys,
NaN, numbers past int()'s digit limit, 20 000 nested arrays), HEAD on a GET route, a trailing
slash, a typo'd or repeated query parameter, a job id spelled in upper case or as a dashed
UUID, browser-style content types and line breaks in them; and the OpenAPI schema checked
against what the server actually answers (every status declared, every error ``{"detail":
str}``), since generated clients deserialise by that schema."""

from __future__ import annotations

import base64
from collections.abc import Iterator

import httpx
import pytest
from botocore.client import BaseClient

from edvmp_pipeline.devtools.stack import StackSettings
from edvmp_pipeline_tests.api_support import api_env, serving
from edvmp_pipeline_tests.s3_server import create_test_bucket, delete_test_bucket

pytestmark = pytest.mark.timeout(120)

SECRET = "test-secret-" + "c" * 40
PASSWORDS = {"carol": "carol's long passphrase", "dave": "dave's other passphrase"}


@pytest.fixture(scope="module")
def api(
    s3_stack: StackSettings, s3_client: BaseClient, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    tmp = tmp_path_factory.mktemp("api-clients")
    bucket = create_test_bucket(s3_client, "apicl")
    _, env = api_env(tmp, s3_stack.env(), bucket, secret=SECRET, passwords=PASSWORDS)
    log = tmp / "serve.log"
    try:
        with serving(env, log) as url:
            yield url
    finally:
        text = log.read_text(encoding="utf-8", errors="replace")
        delete_test_bucket(s3_client, bucket)
        assert "Traceback" not in text, text[-3000:]


_tokens: dict[str, str] = {}


def auth(api: str, user: str = "carol") -> dict[str, str]:
    if user not in _tokens:
        r = httpx.post(f"{api}/auth/login", json={"username": user, "password": PASSWORDS[user]})
        assert r.status_code == 200, r.text
        _tokens[user] = r.json()["access_token"]
    return {"Authorization": f"Bearer {_tokens[user]}"}


def one_line_detail(r: httpx.Response) -> str:
    body = r.json()
    assert isinstance(body.get("detail"), str), r.text
    assert "\n" not in body["detail"] and body["detail"], r.text
    return body["detail"]


# -- request bodies that are not plain UTF-8 JSON objects ------------------------------------


@pytest.mark.parametrize(
    ("content_type", "needle"),
    [
        ("text/plain", "text/plain"),
        ("application/x-www-form-urlencoded", "application/x-www-form-urlencoded"),
        (None, "no Content-Type"),
        ("application/json; charset=latin-1", "UTF-8"),
    ],
)
def test_a_body_that_is_not_declared_as_json_is_415_naming_the_type(
    api: str, content_type: str | None, needle: str
) -> None:
    # Before: 422 "body: Input should be a valid dictionary or object" for a body that *is*
    # an object (FastAPI hands the raw bytes to the model), or a bare 400 for the charset.
    headers = {**auth(api), **({"Content-Type": content_type} if content_type else {})}
    for path, body in (
        ("/jobs", b'{"filename": "a.mp4"}'),
        ("/auth/login", b'{"username": "carol", "password": "x"}'),
    ):
        r = httpx.post(f"{api}{path}", content=body, headers=headers)
        assert r.status_code == 415, (path, r.text)
        detail = one_line_detail(r)
        assert needle in detail and "application/json" in detail, detail


def test_json_variants_clients_send_are_accepted(api: str) -> None:
    ok = b'{"filename": "a.mp4"}'
    for content_type, body in (
        ("application/json; charset=utf-8", ok),
        ("Application/JSON; Charset=UTF-8", ok),
        ("application/vnd.edvmp+json", ok),
        ("application/json", b"\xef\xbb\xbf" + ok),  # a UTF-8 byte order mark (Windows tools)
    ):
        headers = {**auth(api), "Content-Type": content_type}
        r = httpx.post(f"{api}/jobs", content=body, headers=headers)
        assert r.status_code == 201, (content_type, r.text)


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        (b'{"filename": "a.mp4", "filename": "b.txt"}', "duplicate key 'filename'"),
        (b'{"filename": "a.txt", "filename": "b.mp4"}', "duplicate key 'filename'"),
        (b'{"filename": "\xff\xfe.mp4"}', "not UTF-8"),
        (b'{"filename": "a.mp4", "size_bytes": ' + b"9" * 5000 + b"}", "size_bytes"),
        (b'{"filename": "a.mp4", "x": [[' + b"9" * 30 + b"]]}", "over 20 digits"),
        (b'{"filename": "a.mp4", "size_bytes": NaN}', "NaN"),
        (b'{"filename": "a.mp4", "x": ' + b"[" * 20000 + b"]" * 20000 + b"}", "nested"),
        (b'{"filename": "a.mp4"} trailing', "line 1 column 23"),
        (b'{"filename": "a.mp4",}', "line 1 column 22"),
    ],
)
def test_ambiguous_or_broken_json_is_422_saying_why(api: str, body: bytes, needle: str) -> None:
    # Before: duplicate keys silently took the last value (a reviewer of the first one was
    # fooled), bad UTF-8, 5000-digit numbers and deep nesting were a bare 400 "There was an
    # error parsing the body", and a syntax error "21: JSON decode error".
    headers = {**auth(api), "Content-Type": "application/json"}
    r = httpx.post(f"{api}/jobs", content=body, headers=headers)
    assert r.status_code == 422, r.text
    detail = one_line_detail(r)
    assert detail.startswith("body: ") and needle in detail, detail


@pytest.mark.parametrize(
    ("path", "needle"),
    [
        ("/incidents?openonly=true", "unknown parameter 'openonly'"),  # a typo
        ("/history?Limit=0", "unknown parameter 'Limit' (this route takes limit)"),
        ("/history?limit=300&limit=10", "'limit' given more than once"),
        ("/history?limit=10&limit=300", "'limit' given more than once"),
        ("/jobs/{id}?verbose=1", "this route takes none"),
    ],
)
def test_unknown_or_repeated_query_parameters_are_422(api: str, path: str, needle: str) -> None:
    # Before: ignored (the typo answered every incident, not the open ones) or the last of
    # the repeats taken, so the answer silently depended on the order.
    headers = auth(api)
    if "{id}" in path:
        job = httpx.post(f"{api}/jobs", json={"filename": "q.mp4"}, headers=headers).json()
        path = path.replace("{id}", job["job_id"])
    r = httpx.get(f"{api}{path}", headers=headers)
    assert r.status_code == 422, r.text
    detail = one_line_detail(r)
    assert detail.startswith("query: ") and needle in detail, detail
    # The declared parameters, once each, still work.
    ok = httpx.get(f"{api}/incidents?limit=5&open_only=true", headers=headers)
    assert ok.status_code == 200, ok.text


def test_authorization_variants_get_a_401_that_says_which(api: str) -> None:
    token = auth(api)["Authorization"].split(" ", 1)[1]
    basic = "Basic " + base64.b64encode(b"carol:a:b").decode()  # a colon in the password
    cases = [
        ([("Authorization", basic)], "scheme 'Basic' is not accepted"),
        ([("Authorization", "Bearer")], "empty bearer token"),
        ([("Authorization", token)], "is not '<scheme> <credentials>'"),  # no scheme at all
        ([("Authorization", "Token abc")], "scheme 'Token' is not accepted"),
        # Before: the first was used and the second ignored (200); a proxy that checks the
        # last one would disagree about who the caller is.
        ([("Authorization", f"Bearer {token}"), ("Authorization", "Bearer x")], "2 Authorization"),
        ([("Authorization", "Bearer x"), ("Authorization", f"Bearer {token}")], "2 Authorization"),
    ]
    for headers, needle in cases:
        r = httpx.get(f"{api}/history", headers=headers)
        assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer", r.text
        detail = one_line_detail(r)
        assert needle in detail and token not in detail, (needle, detail)
    # What clients legitimately vary still works: the scheme's case, extra spaces.
    for value in (f"bearer {token}", f"BEARER {token}", f"Bearer  {token}"):
        assert httpx.get(f"{api}/history", headers={"Authorization": value}).status_code == 200


# -- methods, paths and ids --------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/healthz", "/metrics", "/history", "/incidents", "/jobs/{id}"])
def test_head_answers_like_get_without_a_body(api: str, path: str) -> None:
    # RFC 9110 9.1: a server supports HEAD wherever it supports GET (uptime checkers and
    # `curl -I` use it); before, every FastAPI GET route answered HEAD with 405.
    headers = auth(api)
    template = path.replace("{id}", "{job_id}")
    if "{id}" in path:
        job = httpx.post(f"{api}/jobs", json={"filename": "h.mp4"}, headers=headers).json()
        path = path.replace("{id}", job["job_id"])
    got = httpx.get(f"{api}{path}", headers=headers)
    head = httpx.head(f"{api}{path}", headers=headers)
    assert (head.status_code, got.status_code) == (200, 200), head.headers
    assert head.content == b""
    assert head.headers["content-type"] == got.headers["content-type"]
    metrics = httpx.get(f"{api}/metrics").text
    assert f'method="HEAD",route="{template}",status="200"' in metrics, "counted by its route"


def test_a_wrong_method_is_405_naming_the_allowed_ones(api: str) -> None:
    # Before: {"detail": "Method Not Allowed"}, which said neither which method nor which are.
    for method, path, allowed in (
        ("PUT", "/jobs", "POST"),
        ("DELETE", f"/jobs/{'0' * 32}", "GET, HEAD"),
        ("GET", "/auth/login", "POST"),
        ("OPTIONS", "/history", "GET, HEAD"),
    ):
        r = httpx.request(method, f"{api}{path}", headers=auth(api))
        assert r.status_code == 405, (method, path, r.text)
        assert r.headers["allow"] == allowed
        detail = one_line_detail(r)
        assert detail.startswith(f"{method} is not allowed on ") and allowed in detail, detail


def test_a_trailing_slash_is_a_404_naming_the_path_not_a_redirect(api: str) -> None:
    # Before: 307 to an absolute URL built from the Host header (http://evil.example/jobs for
    # "Host: evil.example"; plain http behind a TLS proxy, where the bearer token follows).
    headers = {**auth(api), "Host": "evil.example"}
    for method, path in (("POST", "/jobs/"), ("GET", "/history/"), ("GET", "/healthz/")):
        r = httpx.request(method, f"{api}{path}", headers=headers, json={"filename": "a.mp4"})
        assert r.status_code == 404, (path, r.status_code, r.headers)
        assert "location" not in r.headers
        detail = one_line_detail(r)
        assert path in detail, detail


def test_a_job_id_is_found_in_any_uuid_spelling(api: str) -> None:
    # The id is a UUID (uuid4().hex); UUIDs are case-insensitive (RFC 9562) and many clients
    # store or print them upper-case or dashed. Before, those spellings were "no such job".
    headers = auth(api)
    job = httpx.post(f"{api}/jobs", json={"filename": "u.mp4"}, headers=headers).json()
    jid = job["job_id"]
    dashed = f"{jid[:8]}-{jid[8:12]}-{jid[12:16]}-{jid[16:20]}-{jid[20:]}"
    for spelling in (jid, jid.upper(), dashed, dashed.upper()):
        r = httpx.get(f"{api}/jobs/{spelling}", headers=headers)
        assert r.status_code == 200, (spelling, r.text)
        assert r.json()["job_id"] == jid
        r = httpx.get(f"{api}/jobs/{spelling}/result", headers=headers)
        assert r.status_code == 409 and "AWAITING_UPLOAD" in one_line_detail(r)
    # Still not anyone else's, in any spelling, and whitespace is not stripped into a match.
    for spelling in (jid.upper(), dashed, f"{{{jid}}}"):
        r = httpx.get(f"{api}/jobs/{spelling}", headers=auth(api, "dave"))
        assert r.status_code == 404, (spelling, r.text)
    for spelling in (f" {jid}", f"{jid} ", f"{jid}%0A", f"{jid}%09", f"urn:uuid:{dashed}"):
        r = httpx.get(f"{api}/jobs/{spelling}", headers=headers)
        assert r.status_code == 404, (spelling, r.text)


# -- the schema tells the truth ----------------------------------------------------------------


def test_every_status_the_server_answers_is_declared_with_the_error_shape(api: str) -> None:
    schema = httpx.get(f"{api}/openapi.json").json()
    headers = auth(api)
    job = httpx.post(f"{api}/jobs", json={"filename": "s.mp4"}, headers=headers).json()
    jid = job["job_id"]
    huge = b"{" + b" " * 70000 + b"}"
    cases: list[tuple[str, str, str, dict[str, object]]] = [
        # (method, path as sent, template in the schema, httpx kwargs)
        ("POST", "/auth/login", "/auth/login", {"json": {"username": "carol", "password": "no"}}),
        ("POST", "/auth/login", "/auth/login", {"json": {"username": 1}}),
        ("POST", "/auth/login", "/auth/login", {"data": {"username": "carol"}}),
        ("POST", "/auth/login", "/auth/login", {"content": huge}),
        ("POST", "/jobs", "/jobs", {"json": {"filename": "a.mp4"}}),
        ("POST", "/jobs", "/jobs", {"json": {"filename": "a.mp4"}, "headers": headers}),
        ("POST", "/jobs", "/jobs", {"json": {"filename": "a.txt"}, "headers": headers}),
        (
            "POST",
            "/jobs",
            "/jobs",
            {"json": {"filename": "a.mp4", "size_bytes": 10**12}, "headers": headers},
        ),
        ("POST", "/jobs", "/jobs", {"content": b"x=1", "headers": headers}),
        ("POST", "/jobs", "/jobs", {"content": huge, "headers": headers}),
        ("GET", f"/jobs/{jid}", "/jobs/{job_id}", {"headers": headers}),
        ("GET", f"/jobs/{jid}", "/jobs/{job_id}", {}),
        ("GET", "/jobs/nope", "/jobs/{job_id}", {"headers": headers}),
        ("GET", f"/jobs/{jid}/result", "/jobs/{job_id}/result", {"headers": headers}),
        ("GET", f"/jobs/{jid}/result", "/jobs/{job_id}/result", {"headers": auth(api, "dave")}),
        ("GET", "/history?limit=0", "/history", {"headers": headers}),
        ("GET", "/history", "/history", {}),
        ("GET", "/history", "/history", {"content": huge, "headers": headers}),
        ("GET", "/incidents?open_only=maybe", "/incidents", {"headers": headers}),
        ("GET", "/incidents", "/incidents", {"headers": {"Authorization": "Bearer x.y.z"}}),
        ("GET", "/healthz", "/healthz", {}),
        ("GET", "/metrics", "/metrics", {}),
    ]
    seen: set[tuple[str, int]] = set()
    for method, path, template, kwargs in cases:
        r = httpx.request(method, f"{api}{path}", **kwargs)  # type: ignore[arg-type]
        seen.add((template, r.status_code))
        declared = schema["paths"][template][method.lower()]["responses"]
        assert str(r.status_code) in declared, (method, path, r.status_code, sorted(declared))
        if r.status_code >= 400:
            one_line_detail(r)
            ref = declared[str(r.status_code)]["content"]["application/json"]["schema"]["$ref"]
            assert ref == "#/components/schemas/ErrorResponse", (method, path, ref)
    # The body limit's 400 (a malformed Content-Length; uvicorn itself refuses most, so it is
    # driven in-process in test_api.py) and 413 are declared on every route.
    for template, operations in schema["paths"].items():
        for method, operation in operations.items():
            assert {"400", "413"} <= set(operation["responses"]), (method, template)
    # The schema's error shape is the one the server sends: a string, not FastAPI's default
    # list of {loc, msg, type} (a generated client would fail to deserialise every 422).
    error = schema["components"]["schemas"]["ErrorResponse"]
    assert error["properties"]["detail"]["type"] == "string"
    assert "HTTPValidationError" not in schema["components"]["schemas"]
    assert {401, 404, 409, 413, 415, 422} <= {s for _, s in seen}, sorted(seen)


# -- content types as browsers and players write them ------------------------------------------


@pytest.mark.parametrize(
    "content_type", ["video/mp4\r\n; a=b", "video/mp4\n;x=1", 'video/mp4; a="x\r\ny"']
)
def test_a_content_type_with_a_line_break_is_422(api: str, content_type: str) -> None:
    # Before: "\s" in both patterns took CR/LF, so these were signed and handed back in
    # upload_headers: a header no HTTP client can send, or a header injection for one that
    # pastes it into a request.
    r = httpx.post(
        f"{api}/jobs", json={"filename": "a.mp4", "content_type": content_type}, headers=auth(api)
    )
    assert r.status_code == 422, r.text
    assert "content_type" in one_line_detail(r) or "Content-Type" in one_line_detail(r)


@pytest.mark.parametrize(
    "content_type",
    [
        "video/webm;codecs=vp8,opus",  # MediaRecorder's mimeType in Chrome and Firefox
        'video/mp4; codecs="avc1.42E01E, mp4a.40.2"',  # RFC 6381's quoted form
    ],
)
def test_browser_content_types_are_signed_and_enforced(api: str, content_type: str) -> None:
    # Before: 422 "not a valid Content-Type" (commas and quoted strings were not allowed).
    r = httpx.post(
        f"{api}/jobs",
        json={"filename": "rec.webm", "content_type": content_type},
        headers=auth(api),
    )
    assert r.status_code == 201, r.text
    job = r.json()
    assert job["upload_headers"]["Content-Type"] == content_type
    put = httpx.put(job["upload_url"], content=b"\x1a\x45\xdf\xa3", headers=job["upload_headers"])
    assert put.status_code == 200, put.text
    other = httpx.put(job["upload_url"], content=b"x", headers={"Content-Type": "video/webm"})
    assert other.status_code == 403, "the signed type is still the only one S3 takes"
