"""``edvmp query`` is read-only: nothing but a SELECT runs, and it reads only the catalog.

Two layers, each tested on its own: DuckDB's parser classifies the statement (the statement
inside EXPLAIN ANALYZE included, which DuckDB executes), and the connection is locked down
(no file or URL outside the result tables, no setting changes) before the person's SQL runs.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import duckdb
import pytest

from edvmp_pipeline.catalog import store
from edvmp_pipeline.catalog.read_only_sql import (
    read_only_refusal,
    require_read_only,
)
from edvmp_pipeline.catalog.store import Catalog
from edvmp_pipeline.defs.in_process_runs import ingest_in_process as ingest
from edvmp_pipeline.domain.errors import ConfigError
from edvmp_pipeline_tests.cli_support import run_edvmp


@pytest.fixture(scope="module")
def catalogued(sample_library: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """An EDVMP_HOME whose catalog holds the sample library (5 good, 2 broken versions)."""
    home = tmp_path_factory.mktemp("sandbox") / "home"
    with pytest.MonkeyPatch.context() as env:
        env.setenv("EDVMP_HOME", str(home))
        for name in ("DAGSTER_HOME", "EDVMP_CATALOG", "EDVMP_POLICY", "EDVMP_SUMMARIZER"):
            env.delenv(name, raising=False)
        ingest(str(sample_library))
        # ingest exported DAGSTER_HOME; the context restores the environment on exit.
        env.setenv("DAGSTER_HOME", os.environ["DAGSTER_HOME"])
    # A Parquet file next to the catalog: readable by any DuckDB, but not by `edvmp query`.
    con = duckdb.connect()
    con.execute(f"COPY (SELECT 'leaked' AS secret) TO '{home / 'leak.parquet'}'")
    con.close()
    yield home


@pytest.fixture
def catalog(catalogued: Path) -> Iterator[Catalog]:
    """The catalog, checked after each test to still hold exactly the files it had."""
    root = catalogued / "catalog"
    before = sorted(p for p in root.rglob("*") if p.is_file())
    yield Catalog(root)
    after = sorted(p for p in root.rglob("*") if p.is_file())
    assert after == before, "a refused statement changed the catalog's files"


def _env(home: Path) -> dict[str, str]:
    return {**os.environ, "EDVMP_HOME": str(home)}


def _forged(home: Path) -> Path:
    """Where a forged result file would land: read by every `videos` query."""
    return home / "catalog" / "videos" / "forged.parquet"


# (SQL with {forged} / {outside} placeholders, what the refusal must name)
REFUSED = [
    ("EXPLAIN ANALYZE COPY (SELECT * FROM videos) TO '{forged}'", "EXPLAIN of COPY"),
    ("EXPLAIN ANALYZE COPY (SELECT 1 AS x) TO '{outside}/out.csv'", "EXPLAIN of COPY"),
    ("EXPLAIN (ANALYZE, FORMAT json) COPY (SELECT 1 AS x) TO '{forged}'", "EXPLAIN of COPY"),
    ("explain /* SELECT */ analyze -- x\n COPY (SELECT 1) TO '{forged}'", "EXPLAIN of COPY"),
    ("EXPLAIN ANALYZE CREATE TABLE t AS SELECT 1", "EXPLAIN of CREATE"),
    ("EXPLAIN ANALYZE SET enable_external_access = true", "EXPLAIN of SET"),
    ("EXPLAIN ANALYZE INSERT INTO videos SELECT * FROM videos", "EXPLAIN of INSERT"),
    ("COPY (SELECT * FROM videos) TO '{forged}'", "COPY"),
    ("COPY (SELECT 1 AS x) TO '{outside}/out.csv'", "COPY"),
    ("COPY videos FROM '/etc/passwd'", "COPY"),
    ("CREATE TABLE t AS SELECT 1", "CREATE"),
    ("CREATE OR REPLACE VIEW videos AS SELECT 1 AS x", "CREATE"),
    ("INSERT INTO videos SELECT * FROM videos", "INSERT"),
    ("UPDATE videos SET width = 1", "UPDATE"),
    ("DELETE FROM videos", "DELETE"),
    ("DROP VIEW videos", "DROP"),
    ("SET enable_external_access = true", "SET"),
    ("RESET lock_configuration", "SET"),
    ("SET VARIABLE x = 1", "SET"),
    ("ATTACH ':memory:' AS scratch", "ATTACH"),
    ("ATTACH '{outside}/x.duckdb' AS x", "ATTACH"),
    ("EXPORT DATABASE '{outside}/dump'", "EXPORT"),
    ("PRAGMA version", "PRAGMA"),
    ("PRAGMA enable_profiling", "PRAGMA"),
    ("INSTALL httpfs", "LOAD"),
    ("LOAD httpfs", "LOAD"),
    ("CALL pragma_version()", "CALL"),
    ("CHECKPOINT", "CALL"),
    ("PREPARE p AS SELECT 1", "PREPARE"),
    ("BEGIN TRANSACTION", "TRANSACTION"),
    ("SELECT 1; COPY (SELECT 1 AS x) TO '{forged}'", "exactly one SQL statement (got 2)"),
    ("SELECT 1; SELECT 2", "exactly one SQL statement (got 2)"),
    ("PIVOT videos ON video_codec USING count(*)", "MULTI"),
]


@pytest.mark.parametrize(("sql", "named"), REFUSED, ids=[s for s, _ in REFUSED])
def test_statement_is_refused_and_writes_nothing(
    catalog: Catalog, catalogued: Path, tmp_path: Path, sql: str, named: str
) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    sql = sql.format(forged=_forged(catalogued), outside=outside)
    with pytest.raises(ConfigError, match="edvmp query is read-only") as refused:
        catalog.read_only_query(sql)
    assert named in str(refused.value)
    assert not _forged(catalogued).exists()
    assert list(outside.iterdir()) == []
    assert catalog.read_only_query("SELECT count(*) FROM videos")[1] == [(5,)]


@pytest.mark.parametrize("sql", ["", "  ;  ", "-- only a comment"])
def test_an_empty_statement_says_so(catalog: Catalog, sql: str) -> None:
    with pytest.raises(ConfigError, match="no SQL statement given"):
        catalog.read_only_query(sql)


HOST_READS = [
    "SELECT * FROM read_csv('/etc/passwd')",
    "SELECT * FROM read_csv_auto('/etc/passwd')",
    "SELECT * FROM glob('/root/*')",
    "SELECT * FROM glob('/etc/*')",
    "SELECT * FROM read_text('/etc/passwd')",
    "SELECT * FROM read_blob('/etc/passwd')",
    "SELECT * FROM sniff_csv('/etc/passwd')",
    "SELECT * FROM read_json('/etc/passwd')",
    "SELECT content FROM read_text('file:///etc/passwd')",
    "SELECT * FROM read_parquet('{home}/leak.parquet')",
    # The catalog folder is allowed, but not as a prefix to climb out of.
    "SELECT * FROM read_parquet('{home}/catalog/videos/../../leak.parquet')",
    "SELECT * FROM parquet_metadata('{home}/leak.parquet')",
    # Inside the catalog, only the result tables: not the state store.
    "SELECT * FROM read_blob('{home}/catalog/state.sqlite')",
    "SELECT * FROM read_csv('http://127.0.0.1:9/x.csv')",
]


@pytest.mark.parametrize("sql", HOST_READS)
def test_reads_outside_the_catalog_tables_are_refused(
    catalog: Catalog, catalogued: Path, sql: str
) -> None:
    assert read_only_refusal(sql.format(home=catalogued)) is None  # a SELECT: the sandbox's job
    with pytest.raises(duckdb.PermissionException):
        catalog.read_only_query(sql.format(home=catalogued))


def test_sandbox_holds_without_the_classifier(
    catalog: Catalog, catalogued: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The connection's lock-down alone refuses writes outside, settings and attachments."""
    monkeypatch.setattr(store, "require_read_only", lambda sql: None)
    out = tmp_path / "out.csv"
    with pytest.raises(duckdb.PermissionException):
        catalog.read_only_query(f"EXPLAIN ANALYZE COPY (SELECT 1 AS x) TO '{out}'")
    with pytest.raises(duckdb.PermissionException):
        catalog.read_only_query(f"ATTACH '{tmp_path / 'x.duckdb'}' AS x")
    for setting in ("enable_external_access = true", "allowed_directories = ['/']"):
        with pytest.raises(duckdb.InvalidInputException, match="locked"):
            catalog.read_only_query(f"SET {setting}")
    assert not out.exists() and not (tmp_path / "x.duckdb").exists()


ALLOWED = [
    ("SELECT count(*) FROM videos", [(5,)]),
    ("SELECT count(*) FROM videos_latest", [(5,)]),
    (
        "FROM (SELECT status, count(*) FROM jobs GROUP BY ALL ORDER BY 1)",
        [("FAILED", 2), ("SUCCEEDED", 5)],
    ),
    ("SELECT count(DISTINCT partition_key) FROM checks", [(5,)]),
    (
        'SELECT "class", count(*) FROM incidents GROUP BY ALL ORDER BY 1',
        [("corrupt_media", 1), ("empty_object", 1)],
    ),
    ("SELECT count(*) FROM objects", [(7,)]),
    (
        "SELECT count(*) FROM videos v JOIN streams s USING (partition_key) "
        "JOIN jobs j USING (partition_key) WHERE j.status = 'SUCCEEDED'",
        [(9,)],
    ),
    ("WITH w AS (SELECT width FROM videos) SELECT count(*) FROM w", [(5,)]),
    ("PIVOT videos ON video_codec IN ('h264') USING count(*)", None),
    ("SELECT count(*) FROM read_parquet('{root}/videos/*.parquet')", None),
    ("-- a comment first\nSELECT 1 AS one;", [(1,)]),
    ("DESCRIBE videos", None),
    ("EXPLAIN SELECT * FROM videos", None),
    ("EXPLAIN ANALYZE SELECT count(*) FROM videos JOIN checks USING (partition_key)", None),
    ("EXPLAIN (FORMAT json) SELECT 1", None),
]


@pytest.mark.parametrize(("sql", "expected"), ALLOWED, ids=[s for s, _ in ALLOWED])
def test_ordinary_selects_still_work(
    catalog: Catalog, sql: str, expected: list[tuple] | None
) -> None:
    columns, rows = catalog.read_only_query(sql.format(root=catalog.root))
    assert columns and rows
    if expected is not None:
        assert rows == expected


def test_classifier_reads_the_statement_inside_explain() -> None:
    assert read_only_refusal("EXPLAIN ANALYZE SELECT 1") is None
    assert read_only_refusal("EXPLAIN (SELECT 1) UNION SELECT 2") is None
    assert read_only_refusal("EXPLAIN ANALYZE (SELECT 1)") is None
    assert "EXPLAIN of COPY" in (read_only_refusal("EXPLAIN COPY (SELECT 1) TO 'x'") or "")
    assert "EXPLAIN of UPDATE" in (read_only_refusal("EXPLAIN ANALYZE UPDATE t SET a=1") or "")
    with pytest.raises(ConfigError):
        require_read_only("EXPLAIN ANALYZE DELETE FROM t")
    with pytest.raises(duckdb.ParserException):
        read_only_refusal("SELEC 1")


def _one_error_line(done: subprocess.CompletedProcess[str]) -> str:
    assert done.returncode == 2, done.stdout + done.stderr
    assert "Traceback" not in done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("edvmp: error: "), done.stderr
    return lines[0]


CLI_REFUSED = [
    (
        "EXPLAIN ANALYZE COPY (SELECT * FROM videos) TO '{forged}'",
        "edvmp query is read-only: EXPLAIN of COPY statements is refused",
    ),
    (
        "EXPLAIN ANALYZE COPY (SELECT 1 AS x) TO '{outside}/out.csv'",
        "edvmp query is read-only: EXPLAIN of COPY statements is refused",
    ),
    ("SET threads = 1", "edvmp query is read-only: SET statements are refused"),
    ("SELECT 1; COPY (SELECT 1) TO '{forged}'", "give exactly one SQL statement (got 2)"),
    (
        "SELECT * FROM read_csv('/etc/passwd')",
        'edvmp query reads only the catalog\'s tables: refused: Cannot access file "/etc/passwd"',
    ),
    # DuckDB would suggest its own system tables ("Did you mean pg_sequences?").
    ("SELECT * FROM incident", "does not exist; the views are videos, probes, videos_latest"),
    ("SELECT * FROM vidoes", 'does not exist; did you mean "videos"?; the views are videos,'),
    ("", "no SQL statement given"),
]


@pytest.mark.parametrize(("sql", "message"), CLI_REFUSED, ids=[s for s, _ in CLI_REFUSED])
def test_cli_refuses_with_one_line_and_exit_2(
    catalogued: Path, tmp_path: Path, sql: str, message: str
) -> None:
    sql = sql.format(forged=_forged(catalogued), outside=tmp_path)
    done = run_edvmp("query", sql, env=_env(catalogued), timeout=120)
    assert message in _one_error_line(done)
    assert done.stdout == ""
    assert not _forged(catalogued).exists() and not (tmp_path / "out.csv").exists()


def test_cli_still_answers_selects(catalogued: Path) -> None:
    done = run_edvmp(
        "query", "SELECT count(*) AS n FROM videos", "--format", "json", env=_env(catalogued)
    )
    assert done.returncode == 0, done.stderr
    assert '"n": 5' in done.stdout


def test_cli_prints_a_plan_as_lines(catalogued: Path) -> None:
    sql = "EXPLAIN ANALYZE SELECT count(*) FROM videos"
    done = run_edvmp("query", sql, env=_env(catalogued))
    assert done.returncode == 0, done.stderr
    assert len(done.stdout.splitlines()) > 5 and "\\n" not in done.stdout
    assert "Total Time" in done.stdout


def test_a_runaway_query_is_stopped_at_the_time_limit(catalogued: Path, catalog: Catalog) -> None:
    """One SQL line can keep every core busy for hours: it is interrupted, in one line."""
    sql = "SELECT range FROM range(1000000000000) ORDER BY random() LIMIT 1"
    env = {**_env(catalogued), "EDVMP_QUERY_TIMEOUT_S": "1"}
    done = run_edvmp("query", sql, env=env, timeout=60)
    assert done.returncode == 2, done.stdout + done.stderr
    assert done.stderr.strip() == (
        "edvmp: error: query stopped after 1 s (EDVMP_QUERY_TIMEOUT_S): narrow it, or raise "
        "the limit"
    )
    # The limit stops nothing that finishes in time.
    assert catalog.read_only_query("SELECT count(*) FROM videos", timeout_s=30)[1] == [(5,)]


def test_a_refusal_is_quoted_whole_on_one_line(catalogued: Path) -> None:
    done = run_edvmp("query", "SELECT * FROM sqlite_scan('/etc/passwd', 'x')", env=_env(catalogued))
    assert done.returncode == 2
    (line,) = done.stderr.strip().splitlines()
    # DuckDB's message runs over lines; the first alone stopped mid-sentence.
    assert "sqlite_scanner" in line and "disabled by configuration" in line, line
