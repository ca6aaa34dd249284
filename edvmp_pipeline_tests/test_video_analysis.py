"""The opt-in ``video_analysis`` asset end to end: ``edvmp ingest`` with ``EDVMP_ANALYSIS=on``
over generated media whose truth is known (a tone at -23 LUFS, a loud one, 2.5 s of black at
the start, one source at two sizes and bit rates, and unrelated sources), then the catalog's
``analysis`` and ``near_duplicates`` views, the posters, the policy verdicts and Dagster's own
partition status. Real ffmpeg, a real persistent Dagster instance, and SeaweedFS for S3."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import dagster as dg
import pytest
from botocore.client import BaseClient

from edvmp_pipeline.adapters.dagster_instance import get_instance
from edvmp_pipeline.adapters.object_store import ObjectStoreResource
from edvmp_pipeline.catalog import analysis_tables
from edvmp_pipeline.catalog.store import Catalog
from edvmp_pipeline.domain.errors import ConfigError, ObjectMissing
from edvmp_pipeline.domain.fingerprints import Fingerprint
from edvmp_pipeline.domain.media_analysis import AnalysisRecord, Loudness
from edvmp_pipeline.domain.policy import PolicyError, configured_policy, load_default_policy
from edvmp_pipeline.domain.records import ObjectVersion
from edvmp_pipeline.services.analysis import find_near_duplicates
from edvmp_pipeline.settings import analysis_enabled, analysis_images
from edvmp_pipeline_tests.cli_support import run_edvmp
from edvmp_pipeline_tests.test_s3_lake import lake_env  # noqa: F401  (a fixture)

ANALYSIS = dg.AssetKey("video_analysis")
X264 = ["-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p"]
AAC = ["-c:a", "aac", "-b:a", "96k"]


def _sine(amplitude: float, seconds: float) -> list[str]:
    # A 1 kHz sine of peak `amplitude` reads 20*log10(amplitude) - 3.01 LUFS (mono).
    return ["-f", "lavfi", "-i", f"aevalsrc={amplitude}*sin(2*PI*1000*t):s=48000:d={seconds}"]


# object key → ffmpeg arguments (output path appended). Each picture source is a different
# lavfi generator, except the near-duplicate pair, which is one source encoded twice.
LIBRARY: dict[str, list[str]] = {
    "masters/original.mp4": ["-f", "lavfi", "-i", "testsrc2=size=320x240:rate=25:duration=5",
                             *_sine(0.1, 5), *X264, "-crf", "18", *AAC],
    "reuploads/small copy.mp4": ["-f", "lavfi", "-i", "testsrc2=size=320x240:rate=25:duration=5",
                                 *_sine(0.1, 5), "-vf", "scale=160:120", *X264, "-crf", "38",
                                 *AAC],
    "promos/at_target.mp4": ["-f", "lavfi", "-i", "mandelbrot=size=320x240:rate=25",
                             *_sine(0.1, 5), "-t", "5", *X264, *AAC],
    "promos/too_loud.mp4": ["-f", "lavfi", "-i", "cellauto=size=320x240:rate=25:rule=110",
                            *_sine(0.9, 5), "-t", "5", *X264, *AAC],
    "promos/black_open.mp4": ["-f", "lavfi", "-i", "color=black:size=320x240:rate=25:duration=2.5",
                              "-f", "lavfi", "-i", "life=size=320x240:rate=25:mold=10",
                              "-filter_complex",
                              "[1:v]trim=duration=2.5,setpts=PTS-STARTPTS[l];"
                              "[0:v][l]concat=n=2:v=1:a=0[v]", "-map", "[v]", "-t", "5",
                              *X264],
}  # fmt: skip
# fmt: off
TRIMMED = ("later/trimmed.mp4",
           ["-f", "lavfi", "-i", "testsrc2=size=320x240:rate=25:duration=5",
            "-vf", "trim=start=0.5,setpts=PTS-STARTPTS,scale=240:180", *X264, "-crf", "30"])
# fmt: on


def _make(folder: Path, key: str, args: list[str]) -> None:
    out = folder / key
    out.parent.mkdir(parents=True, exist_ok=True)
    cmd = ["ffmpeg", "-nostdin", "-hide_banner", "-v", "error", "-y", *args, str(out)]
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    assert done.returncode == 0, f"{' '.join(cmd)}\n{done.stderr}"


@pytest.fixture(scope="module")
def analysis_media(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if shutil.which("ffmpeg") is None or shutil.which("ffprobe") is None:
        pytest.skip("ffmpeg/ffprobe not installed")
    folder = tmp_path_factory.mktemp("analysis_library")
    for key, args in {**LIBRARY, TRIMMED[0]: TRIMMED[1]}.items():
        _make(folder, key, args)
    return folder


@pytest.fixture
def videos(analysis_media: Path, tmp_path: Path) -> Path:
    """The library without the trimmed copy (a later test adds it)."""
    folder = Path(shutil.copytree(analysis_media, tmp_path / "videos"))
    (folder / TRIMMED[0]).unlink()
    return folder


def _env(home: Path, **extra: str) -> dict[str, str]:
    return {**os.environ, "EDVMP_HOME": str(home), "EDVMP_ANALYSIS": "on", **extra}


def _rows(home: Path, sql: str) -> list[dict[str, Any]]:
    done = run_edvmp("query", sql, "--format", "json", env=_env(home))
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def _jpeg_width(path: Path) -> int:
    assert path.read_bytes()[:3] == b"\xff\xd8\xff", path  # a JPEG
    out = subprocess.run(
        ["ffprobe", "-v", "error", "-show_entries", "stream=width", "-of", "csv=p=0", str(path)],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    return int(out.strip())


def test_ingest_analyses_every_version_and_finds_the_near_duplicate(
    videos: Path, home: Path
) -> None:
    env = _env(home, EDVMP_ANALYSIS_IMAGES="poster,contact_sheet")
    done = run_edvmp("ingest", str(videos), env=env)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "processed 5: succeeded 5, failed 0" in done.stdout, done.stdout

    rows = {
        r["object_key"]: r
        for r in _rows(
            home,
            "SELECT object_key, integrated_lufs, true_peak_dbtp, leading_black_s, "
            "scene_cut_count, interlace, hdr_class, poster, contact_sheet, loudness FROM analysis",
        )
    }
    assert set(rows) == set(LIBRARY)
    # EBU R128 within 0.5 LU of the tone's known level (AAC-encoded).
    assert abs(rows["promos/at_target.mp4"]["integrated_lufs"] - -23.0) <= 0.5
    assert abs(rows["promos/too_loud.mp4"]["integrated_lufs"] - -3.9) <= 0.5
    assert rows["promos/black_open.mp4"]["integrated_lufs"] is None  # no audio stream
    assert rows["promos/black_open.mp4"]["loudness"] == []
    assert abs(rows["promos/black_open.mp4"]["leading_black_s"] - 2.5) <= 0.1
    assert rows["masters/original.mp4"]["leading_black_s"] == 0
    assert {r["hdr_class"] for r in rows.values()} == {"SDR"}
    assert {r["interlace"] for r in rows.values()} <= {"progressive", "undetermined"}
    for key, row in rows.items():
        poster, sheet = Path(row["poster"]), Path(row["contact_sheet"])
        # Next to the catalog, under a fixed-length name whatever the object key holds.
        assert poster.is_relative_to(home / "catalog" / "images"), poster
        assert " " not in str(poster.relative_to(home)), poster
        assert _jpeg_width(poster) == 320, key  # every poster 320 wide, whatever the source
        assert _jpeg_width(sheet) > _jpeg_width(poster), key  # a 4x3 grid of 160-wide tiles

    pairs = _rows(home, "SELECT * FROM near_duplicates")
    assert len(pairs) == 1, pairs
    (pair,) = pairs
    assert {pair["object_key"], pair["duplicate_object_key"]} == {
        "masters/original.mp4",
        "reuploads/small copy.mp4",
    }
    assert pair["score"] >= 0.9 and pair["same_object"] is False

    # The policy's opt-in analysis rules ran on every version.
    verdicts = {
        (r["object_key"], r["rule_id"]): r["passed"]
        for r in _rows(
            home,
            "SELECT object_key, rule_id, passed FROM checks WHERE rule_id IN "
            "('loudness_not_too_quiet', 'loudness_not_too_loud', 'leading_black', "
            "'no_near_duplicate', 'true_peak')",
        )
    }
    assert len(verdicts) == 5 * 5
    assert verdicts[("promos/too_loud.mp4", "loudness_not_too_loud")] is False
    assert verdicts[("promos/at_target.mp4", "loudness_not_too_loud")] is True
    assert verdicts[("promos/at_target.mp4", "loudness_not_too_quiet")] is True
    assert [k for (k, rule), ok in verdicts.items() if rule == "leading_black" and not ok] == [
        "promos/black_open.mp4"
    ]
    # Exactly one side of the pair (the one that found it) is the duplicate.
    flagged = [k for (k, rule), ok in verdicts.items() if rule == "no_near_duplicate" and not ok]
    assert flagged == [pair["object_key"]]

    # Dagster: every version's analysis is Materialized, with what an operator reads first.
    jobs = _rows(home, "SELECT partition_key, object_key, status FROM jobs")
    assert {j["status"] for j in jobs} == {"SUCCEEDED"}
    instance = get_instance()
    assert instance.get_materialized_partitions(ANALYSIS) == {j["partition_key"] for j in jobs}
    by_key = {j["object_key"]: j["partition_key"] for j in jobs}
    (record,) = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=ANALYSIS, asset_partitions=[by_key[pair["object_key"]]]),
        limit=1,
    ).records
    meta = record.asset_materialization.metadata  # type: ignore[union-attr]
    assert meta["near_duplicate_of"].value == [pair["duplicate_object_key"]]
    assert meta["loudness"].value.endswith("dBTP") and "poster" in meta

    # `edvmp status` and its JSON (what the API's result carries) show the analysis.
    found_by = by_key[pair["object_key"]]
    status = run_edvmp("status", found_by, env=env)
    assert status.returncode == 0, status.stderr
    (line,) = [ln for ln in status.stdout.splitlines() if ln.startswith("analysis:")]
    assert "LUFS" in line and f"near-duplicate of {pair['duplicate_object_key']}" in line
    status_json = json.loads(run_edvmp("status", found_by, "--json", env=env).stdout)
    (dupe,) = status_json["result"]["analysis"]["near_duplicates"]
    assert dupe["job_key"] == by_key[pair["duplicate_object_key"]] and dupe["score"] >= 0.9
    other = json.loads(
        run_edvmp("status", by_key[pair["duplicate_object_key"]], "--json", env=env).stdout
    )
    assert [d["object_key"] for d in other["result"]["analysis"]["near_duplicates"]] == [
        pair["object_key"]
    ]  # both sides see the pair

    # A later upload (trimmed by 0.5 s, resized) is matched against the held versions' index.
    _make(videos, *TRIMMED)
    again = run_edvmp("ingest", str(videos), env=env)
    assert again.returncode == 0, again.stdout + again.stderr
    assert "new 1, already catalogued (skipped) 5" in again.stdout, again.stdout
    later = _rows(
        home,
        "SELECT duplicate_object_key, score FROM near_duplicates "
        "WHERE object_key = 'later/trimmed.mp4'",
    )
    assert {r["duplicate_object_key"] for r in later} == {
        "masters/original.mp4",
        "reuploads/small copy.mp4",
    }, later
    # Nothing was analysed twice.
    assert _rows(home, "SELECT count(*) AS n FROM analysis") == [{"n": 6}]
    counts = _rows(home, "SELECT partition_key, count(*) AS n FROM analysis GROUP BY 1")
    assert {c["n"] for c in counts} == {1}


def test_a_failed_analysis_is_a_failed_partition_with_an_incident(videos: Path, home: Path) -> None:
    env = _env(home, EDVMP_ANALYSIS_TIMEOUT_S="0.001")
    done = run_edvmp("ingest", str(videos / "promos"), env=env)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "Traceback" not in done.stdout + done.stderr
    jobs = _rows(home, "SELECT partition_key, status, error_class, error FROM jobs")
    assert len(jobs) == 3
    assert {(j["status"], j["error_class"]) for j in jobs} == {("FAILED", "probe_timeout")}
    assert all("analysis timeout" in j["error"] and "\n" not in j["error"] for j in jobs)
    incidents = _rows(home, "SELECT partition_key, class FROM incidents")
    assert {i["partition_key"] for i in incidents} == {j["partition_key"] for j in jobs}
    # The metadata stands; only the analysis reads Failed (not Missing) in Dagster.
    instance = get_instance()
    keys = {j["partition_key"] for j in jobs}
    assert instance.get_materialized_partitions(dg.AssetKey("video_metadata")) == keys
    assert not instance.get_materialized_partitions(ANALYSIS)
    assert _rows(home, "SELECT count(*) AS n FROM analysis") == [{"n": 0}]

    # A redrive with a sane timeout heals them.
    healed = run_edvmp("ingest", str(videos / "promos"), "--retry-failed", env=_env(home))
    assert healed.returncode == 0, healed.stdout + healed.stderr
    assert {j["status"] for j in _rows(home, "SELECT status FROM jobs")} == {"SUCCEEDED"}
    assert instance.get_materialized_partitions(ANALYSIS) == keys


def test_turning_the_analysis_on_analyses_the_library_already_catalogued(
    videos: Path, home: Path
) -> None:
    off = {**_env(home), "EDVMP_ANALYSIS": "off"}
    assert run_edvmp("ingest", str(videos / "promos"), env=off).returncode == 0
    # First with a timeout no analysis meets: the failure is recorded on the versions
    # (FAILED, its class, an incident), not lost because an earlier run had succeeded them.
    failing = run_edvmp(
        "ingest", str(videos / "promos"), env=_env(home, EDVMP_ANALYSIS_TIMEOUT_S="0.001")
    )
    assert failing.returncode == 1, failing.stdout + failing.stderr
    assert "to analyse 3" in failing.stdout, failing.stdout
    jobs = _rows(home, "SELECT status, error_class FROM jobs")
    assert {(j["status"], j["error_class"]) for j in jobs} == {("FAILED", "probe_timeout")}
    healed = run_edvmp("ingest", str(videos / "promos"), "--retry-failed", env=_env(home))
    assert healed.returncode == 0, healed.stdout + healed.stderr
    assert _rows(home, "SELECT count(*) AS n FROM analysis") == [{"n": 3}]
    assert {j["status"] for j in _rows(home, "SELECT status FROM jobs")} == {"SUCCEEDED"}
    # The analysis rules were evaluated on them once analysed (not skipped as "checked").
    verdicts = _rows(home, "SELECT object_key, passed FROM checks WHERE rule_id = 'leading_black'")
    assert {(v["object_key"], v["passed"]) for v in verdicts} == {
        ("at_target.mp4", True), ("too_loud.mp4", True), ("black_open.mp4", False),
    }  # fmt: skip
    again = run_edvmp("ingest", str(videos / "promos"), env=_env(home))
    assert "already catalogued (skipped) 3" in again.stdout and "to analyse" not in again.stdout


def test_without_the_analysis_nothing_decodes(videos: Path, home: Path) -> None:
    env = {**_env(home), "EDVMP_ANALYSIS": "off"}
    done = run_edvmp("ingest", str(videos / "promos"), env=env)
    assert done.returncode == 0, done.stdout + done.stderr
    assert not (home / "catalog" / "images").exists()
    query = run_edvmp("query", "SELECT count(*) FROM analysis", env=env)
    assert query.returncode == 0 and "0" in query.stdout
    # The default policy's analysis rules are left out, not failed.
    checks = run_edvmp("query", "SELECT DISTINCT rule_id FROM checks", "--format", "json", env=env)
    ids = {r["rule_id"] for r in json.loads(checks.stdout)}
    assert ids and not ids & {r.id for r in load_default_policy(analysis=True).analysis_rules}


# --------------------------------------------------------------------------- configuration


def test_a_policy_naming_analysis_fields_needs_the_analysis(
    videos: Path, home: Path, tmp_path: Path
) -> None:
    policy = tmp_path / "loudness.yaml"
    policy.write_text(
        "rules:\n  - {id: ebu_r128, field: integrated_lufs, min: -24, severity: error}\n"
    )
    env = {**_env(home), "EDVMP_ANALYSIS": "off", "EDVMP_POLICY": str(policy)}
    done = run_edvmp("ingest", str(videos / "promos"), env=env)
    assert done.returncode == 2, done.stdout + done.stderr
    (line,) = done.stderr.strip().splitlines()
    assert "rule 'ebu_r128' checks integrated_lufs" in line and "EDVMP_ANALYSIS=on" in line

    done = run_edvmp("ingest", str(videos / "promos"), env={**env, "EDVMP_ANALYSIS": "on"})
    # The silent black_open.mp4 has no loudness: null fails a min rule, as an error.
    assert done.returncode == 0, done.stdout + done.stderr
    check = run_edvmp("check", env={**env, "EDVMP_ANALYSIS": "on"})
    assert check.returncode == 1, check.stdout + check.stderr
    assert "black_open.mp4" in check.stdout and "ebu_r128" in check.stdout
    assert "at_target.mp4" not in check.stdout

    # Tried on the catalog with the analysis off, the same file is refused the same way.
    env.pop("EDVMP_POLICY")
    tried = run_edvmp("check", "--policy", str(policy), env=env)
    assert tried.returncode == 2 and not tried.stdout, tried.stdout + tried.stderr
    (line,) = tried.stderr.strip().splitlines()
    assert f"{policy}: rule 'ebu_r128' checks integrated_lufs" in line


def test_configured_policy_and_analysis_settings(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    default_on = configured_policy({}, analysis=True)
    default_off = configured_policy({}, analysis=False)
    assert {r.field for r in default_on.analysis_rules} >= {
        "integrated_lufs", "true_peak_dbtp", "leading_black_s", "near_duplicates",
    }  # fmt: skip
    assert not default_off.analysis_rules
    assert len(default_on.rules) == len(default_off.rules) + len(default_on.analysis_rules)
    policy = tmp_path / "p.yaml"
    policy.write_text("rules:\n  - {id: hdr, field: hdr_class, in: [SDR], severity: warn}\n")
    with pytest.raises(PolicyError, match="rule 'hdr' checks hdr_class"):
        configured_policy({"EDVMP_POLICY": str(policy)})
    assert configured_policy({"EDVMP_POLICY": str(policy)}, analysis=True).analysis_rules

    for value, enabled in (("on", True), ("ON", True), ("1", True), ("off", False), ("", False)):
        monkeypatch.setenv("EDVMP_ANALYSIS", value)
        assert analysis_enabled() is enabled
    monkeypatch.setenv("EDVMP_ANALYSIS", "sometimes")
    with pytest.raises(ConfigError, match="EDVMP_ANALYSIS='sometimes' must be on or off"):
        analysis_enabled()
    monkeypatch.delenv("EDVMP_ANALYSIS_IMAGES", raising=False)
    assert analysis_images() == ("poster",)
    for value, kinds in (
        ("none", ()),
        ("contact_sheet, poster", ("poster", "contact_sheet")),
        ("POSTER", ("poster",)),
    ):
        monkeypatch.setenv("EDVMP_ANALYSIS_IMAGES", value)
        assert analysis_images() == kinds
    monkeypatch.setenv("EDVMP_ANALYSIS_IMAGES", "poster,thumbs")
    with pytest.raises(ConfigError, match="EDVMP_ANALYSIS_IMAGES"):
        analysis_images()


# --------------------------------------------------------------------------- the index


def _version(key: str) -> ObjectVersion:
    return ObjectVersion(
        source="/lib", object_key=key, etag=f"e-{key}", size_bytes=1,
        last_modified=datetime(2026, 12, 1, tzinfo=UTC),
    )  # fmt: skip


def _fp(seed: int, n: int = 30, noise: int = 0) -> Fingerprint:
    import random

    rng = random.Random(seed)
    hashes = [rng.getrandbits(64) | 1 for _ in range(n)]
    flip = random.Random(seed * 7919 + noise)
    out = []
    for h in hashes:
        for _ in range(noise):
            h ^= 1 << flip.randrange(64)
        out.append(h or 1)
    return Fingerprint(1.0, tuple(out))


def _land(catalog: Catalog, items: dict[str, Fingerprint]) -> dict[str, Any]:
    analysed = [
        (pk, _version(pk), AnalysisRecord(duration_s=30.0, video_stream_index=0, fingerprint=fp))
        for pk, fp in items.items()
    ]
    catalog.register([(pk, v) for pk, v, _ in analysed], "test")
    analysis_tables.land_analysis(catalog, analysed, run_id="r")
    return {pk: (v, r.fingerprint) for pk, v, r in analysed}


def test_near_duplicates_come_from_the_index_not_from_all_pairs(tmp_path: Path) -> None:
    catalog = Catalog(tmp_path / "catalog").ensure()
    held = _land(catalog, {f"held-{i:03d}": _fp(i) for i in range(50)})
    assert find_near_duplicates(catalog, held) == []  # unrelated fingerprints never pair

    # A batch: a noisy copy of held-007, a copy of it inside the same batch, and a stranger.
    batch = _land(
        catalog,
        {"new-a": _fp(7, noise=3), "new-b": _fp(7, noise=4), "new-c": _fp(999)},
    )
    pairs = find_near_duplicates(catalog, batch)
    found = {(p["partition_key"], p["duplicate_of"]) for p in pairs}
    # The in-batch pair once (by its later key); both copies against the held original.
    assert found == {("new-a", "held-007"), ("new-b", "held-007"), ("new-b", "new-a")}
    assert all(p["score"] >= 0.9 and p["same_object"] is False for p in pairs)

    # A bucket that more than MAX_BUCKET versions share (a logo on every video) finds nothing.
    logo = Fingerprint(1.0, (0x0123456789ABCDEF,) * 5)
    many = _land(catalog, {f"logo-{i:03d}": logo for i in range(analysis_tables.MAX_BUCKET + 1)})
    assert analysis_tables.shared_buckets(catalog, {"logo-000": many["logo-000"][1]}) == {}


def test_the_index_finds_candidates_landed_by_another_run_first(tmp_path: Path) -> None:
    """Two runs landing near-duplicates at the same time: each lands, then looks, so the
    one that looks last sees the other."""
    catalog = Catalog(tmp_path / "catalog").ensure()
    first = _land(catalog, {"run1": _fp(3, noise=2)})
    second = _land(catalog, {"run2": _fp(3, noise=5)})
    pairs = find_near_duplicates(catalog, first) + find_near_duplicates(catalog, second)
    assert {(p["partition_key"], p["duplicate_of"]) for p in pairs} == {
        ("run1", "run2"), ("run2", "run1"),
    }  # fmt: skip
    analysis_tables.land_pairs(catalog, pairs, run_id="r")
    _, rows = catalog.query("SELECT partition_key, duplicate_of FROM near_duplicates")
    assert len(rows) == 1  # the view shows the pair once


# --------------------------------------------------------------------------- S3


@pytest.fixture
def s3_env(lake_env: dict[str, str], home: Path) -> dict[str, str]:  # noqa: F811
    """test_s3_lake's lake (a fresh bucket, its ``lake`` prefix) with the analysis on."""
    return {**lake_env, "EDVMP_HOME": str(home), "EDVMP_ANALYSIS": "on"}


@pytest.mark.parametrize("state", ["sqlite", "dynamodb"])
def test_s3_objects_are_read_once_and_posters_land_in_the_lake(
    state: str,
    analysis_media: Path,
    s3_env: dict[str, str],
    s3_client: BaseClient,
    s3_bucket: str,
    tmp_path: Path,
    request: pytest.FixtureRequest,
) -> None:
    for key in ("masters/original.mp4", "reuploads/small copy.mp4"):
        s3_client.upload_file(str(analysis_media / key), s3_bucket, f"in/{key}")
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    env = {**s3_env, "TMPDIR": str(scratch)}
    if state == "dynamodb":
        # The fingerprint index in DynamoDB (moto's server); the S3 keys stay the server's.
        dynamo = request.getfixturevalue("dynamodb_env")
        env.update({k: v for k, v in dynamo.items() if k.startswith("EDVMP_")})
    done = run_edvmp("ingest", f"s3://{s3_bucket}/in/", env=env)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "processed 2: succeeded 2, failed 0" in done.stdout, done.stdout
    # The temporary copies are gone.
    assert not list(scratch.glob("edvmp-analysis-*")), list(scratch.iterdir())

    query = run_edvmp(
        "query", "SELECT object_key, poster FROM analysis", "--format", "json", env=env
    )
    assert query.returncode == 0, query.stderr
    posters = {r["object_key"]: r["poster"] for r in json.loads(query.stdout)}
    assert set(posters) == {"in/masters/original.mp4", "in/reuploads/small copy.mp4"}
    for url in posters.values():
        assert url.startswith(f"s3://{s3_bucket}/lake/images/") and url.endswith("/poster.jpg")
        body = s3_client.get_object(Bucket=s3_bucket, Key=url.split("/", 3)[3])["Body"].read()
        assert body[:3] == b"\xff\xd8\xff"
    pairs = run_edvmp("query", "SELECT score FROM near_duplicates", "--format", "json", env=env)
    assert len(json.loads(pairs.stdout)) == 1, pairs.stdout


def test_a_replaced_s3_object_is_not_analysed_as_the_old_version(
    s3_env: dict[str, str], s3_client: BaseClient, s3_bucket: str, tmp_path: Path
) -> None:
    s3_client.put_object(Bucket=s3_bucket, Key="v.mp4", Body=b"first content")
    head = s3_client.head_object(Bucket=s3_bucket, Key="v.mp4")
    version = ObjectVersion(
        source=f"s3://{s3_bucket}", object_key="v.mp4", etag=head["ETag"].strip('"'),
        size_bytes=13, last_modified=head["LastModified"],
    )  # fmt: skip
    store = ObjectStoreResource(endpoint_url=s3_env["EDVMP_S3_ENDPOINT_URL"])
    assert store.download(version, tmp_path / "a").read_bytes() == b"first content"
    s3_client.put_object(Bucket=s3_bucket, Key="v.mp4", Body=b"second content")
    with pytest.raises(ObjectMissing, match=r"object replaced: .*v\.mp4 no longer has ETag"):
        store.download(version, tmp_path / "b")


def test_the_policy_count_follows_upload_order_whichever_side_found_the_pair(
    tmp_path: Path,
) -> None:
    catalog = Catalog(tmp_path / "catalog").ensure()
    held = _land(catalog, {"orig": _fp(11)})
    copy = _land(catalog, {"copy": _fp(11, noise=3)})  # registered after the original
    pairs = find_near_duplicates(catalog, copy)
    # The original analysed again (force) finds the copy from its side too.
    pairs += find_near_duplicates(catalog, held)
    assert {(p["partition_key"], p["duplicate_of"]) for p in pairs} == {
        ("copy", "orig"), ("orig", "copy"),
    }  # fmt: skip
    analysis_tables.land_pairs(catalog, pairs, run_id="r")
    assert analysis_tables.near_duplicate_counts(catalog, ["orig", "copy"]) == {"copy": 1}
    rows = analysis_tables.with_analysis(
        catalog, [{"partition_key": "orig"}, {"partition_key": "copy"}]
    )
    assert [r["near_duplicates"] for r in rows] == [0, 1]
    # Silence (audio, but no peak) passes a true-peak ceiling instead of failing as unknown.
    silent = AnalysisRecord(
        duration_s=1.0, video_stream_index=None,
        loudness=(Loudness(stream_index=0, integrated_lufs=-70.0, loudness_range_lu=0.0,
                           true_peak_dbtp=None),),
    )  # fmt: skip
    catalog.register([("quiet", _version("quiet"))], "test")
    analysis_tables.land_analysis(catalog, [("quiet", _version("quiet"), silent)], run_id="r")
    (row,) = analysis_tables.with_analysis(catalog, [{"partition_key": "quiet"}])
    assert row["true_peak_dbtp"] == float("-inf") and row["integrated_lufs"] == -70.0
