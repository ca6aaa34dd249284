"""Bad configuration and bad moments (issue: hostile review): homes that cannot be used, read
commands on a missing catalog, a closed pipe, concurrent ingests on a fresh home, and a kill
between a version's metadata and its summary."""

import os
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import duckdb
import pytest

from edvmp_pipeline_tests.cli_support import SAMPLE_BROKEN, SAMPLE_GOOD, catalog_at, run_edvmp

EDVMP = str(Path(sys.executable).with_name("edvmp"))


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("EDVMP_", "DAGSTER_HOME"))}
    env.update(extra)
    return env


def _one_line_config_error(done: subprocess.CompletedProcess[str], *expected: str) -> None:
    assert done.returncode == 2, (done.returncode, done.stdout, done.stderr)
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("edvmp: error: "), done.stderr
    assert "internal error" not in done.stderr and "Traceback" not in done.stderr
    for text in expected:
        assert text in lines[0], lines[0]


@pytest.mark.parametrize(
    "command",
    [
        ("incidents",),
        ("incidents", "summary"),
        ("status", "clip.mp4~1a2b3c4d~0123456789abcdef"),
        ("check",),
    ],
)
def test_read_commands_on_a_missing_catalog_say_so(tmp_path: Path, command: tuple) -> None:
    """From another folder, with no EDVMP_HOME: exit 2 naming where it looked, and nothing
    created there (it used to create ./.edvmp and answer nothing)."""
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    done = subprocess.run(
        [EDVMP, *command], cwd=elsewhere, env=_env(), capture_output=True, text=True, timeout=120
    )
    _one_line_config_error(done, "no catalog at", str(elsewhere / ".edvmp" / "catalog"))
    assert list(elsewhere.iterdir()) == []


def test_homes_that_cannot_be_used_are_configuration_errors(library: Path, tmp_path: Path) -> None:
    a_file = tmp_path / "a-file"
    a_file.write_text("not a directory")
    done = run_edvmp("ingest", str(library), env=_env(EDVMP_HOME=str(a_file)))
    _one_line_config_error(done, "EDVMP_HOME", str(a_file), "not a directory")

    done = run_edvmp(
        "ingest",
        str(library),
        env=_env(EDVMP_HOME=str(tmp_path / "h1"), DAGSTER_HOME=str(a_file)),
    )
    _one_line_config_error(done, "DAGSTER_HOME", str(a_file))

    broken = tmp_path / "h2" / "dagster"
    broken.mkdir(parents=True)
    (broken / "dagster.yaml").write_text("run_coordinator: [unclosed\n")
    done = run_edvmp("ingest", str(library), env=_env(EDVMP_HOME=str(tmp_path / "h2")))
    _one_line_config_error(done, str(broken / "dagster.yaml"), "not a valid instance")

    (broken / "dagster.yaml").write_text("run_coordinator:\n  module: no.such.module\n")
    done = run_edvmp("ingest", str(library), env=_env(EDVMP_HOME=str(tmp_path / "h2")))
    assert done.returncode == 2, done.stderr
    assert "internal error" not in done.stderr


@pytest.mark.parametrize(
    ("setting", "value", "expected"),
    [
        ("EDVMP_PROBE_TIMEOUT_S", "nan", "must be a finite number"),
        ("EDVMP_POLICY", "{tmp}/bad.yaml", "not valid YAML"),
        ("EDVMP_SUMMARIZER", "bedrock", "EDVMP_BEDROCK_MODEL_ID"),
    ],
)
def test_a_bad_setting_is_refused_before_anything_is_registered(
    library: Path, tmp_path: Path, setting: str, value: str, expected: str
) -> None:
    """A bad pipeline setting stops `edvmp ingest` and `edvmp redrive` before they list or
    register anything: the ingest used to register the new versions first and leave them
    PENDING."""
    (tmp_path / "bad.yaml").write_text("rules: [\n")
    home = tmp_path / "home"
    env = _env(EDVMP_HOME=str(home), **{setting: value.format(tmp=tmp_path)})
    _one_line_config_error(run_edvmp("ingest", str(library), env=env), setting, expected)
    assert not home.exists()
    _one_line_config_error(run_edvmp("redrive", "--class", "corrupt_media", env=env), setting)
    assert not home.exists()


def test_the_listed_line_accounts_for_every_version(library: Path, tmp_path: Path) -> None:
    """Registered-but-unprocessed and retried versions are counted in the `listed` line (the
    counts used to add up to less than the number listed)."""
    env = _env(EDVMP_HOME=str(tmp_path / "home"))
    n = len(SAMPLE_GOOD) + len(SAMPLE_BROKEN)
    assert run_edvmp("register", str(library), env=env).returncode == 0
    done = run_edvmp("ingest", str(library), env=env)
    assert done.returncode == 1, done.stdout + done.stderr
    expected = f"listed {n}: new 0, already catalogued (skipped) 0, known failures 0, pending {n}"
    assert expected in done.stdout.splitlines()
    done = run_edvmp("ingest", str(library), "--retry-failed", env=env)
    assert (
        f"listed {n}: new 0, already catalogued (skipped) {len(SAMPLE_GOOD)}, known failures 0, "
        f"retried {len(SAMPLE_BROKEN)}"
    ) in done.stdout.splitlines(), done.stdout


def test_bad_arguments_are_usage_errors(library: Path, tmp_path: Path) -> None:
    """Exit 2 with one line, never 1 (which means "a video failed") nor a hang."""
    env = _env(EDVMP_HOME=str(tmp_path / "home"))
    _one_line_config_error(run_edvmp("ingest", "", env=env), "empty source")
    assert not (tmp_path / "home").exists()  # '' used to ingest the current folder
    for flag, value in (("--batch-size", "0"), ("--workers", "-3")):
        _one_line_config_error(run_edvmp("ingest", str(library), flag, value, env=env), flag)
    job = "clip.mp4~1a2b3c4d~0123456789abcdef"
    for timeout in ("nan", "inf", "1e400"):
        done = run_edvmp("status", job, "--wait", "--timeout", timeout, env=env, timeout=60)
        _one_line_config_error(done, "--timeout must be a finite number")
    if Path("/proc/self").is_dir():
        _one_line_config_error(
            run_edvmp("ingest", str(library), env=_env(EDVMP_HOME="/proc")), "cannot use /proc/"
        )


def test_a_home_inside_the_library_is_not_ingested(library: Path, tmp_path: Path) -> None:
    home = library / "edvmp-home"  # not hidden, so only its being edvmp's keeps it out
    env = _env(EDVMP_HOME=str(home))
    assert run_edvmp("ingest", str(library), env=env).returncode == 1  # the broken samples
    again = run_edvmp("ingest", str(library), env=env)
    assert again.returncode == 1, again.stdout + again.stderr
    assert "edvmp-home: edvmp's own data" in again.stdout
    keys = {r[0] for r in catalog_at(home).query("SELECT object_key FROM objects")[1]}
    assert keys == set(SAMPLE_GOOD) | set(SAMPLE_BROKEN), keys


def test_a_closed_pipe_ends_quietly(library: Path, tmp_path: Path) -> None:
    """`edvmp ingest … | head -1`: no 'internal error: BrokenPipeError', the SIGPIPE status."""
    proc = subprocess.Popen(
        [EDVMP, "ingest", str(library)],
        env=_env(EDVMP_HOME=str(tmp_path / "home")),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.close()  # the reader is gone before the ingest prints its report
    err = proc.stderr.read()
    assert proc.wait(timeout=300) == 141, err
    assert "BrokenPipe" not in err and "internal error" not in err and "Traceback" not in err


def test_concurrent_ingests_on_a_fresh_home_process_each_version_once(
    library: Path, tmp_path: Path
) -> None:
    home = tmp_path / "home"
    env = _env(EDVMP_HOME=str(home))
    procs = [
        subprocess.Popen(
            [EDVMP, "ingest", str(library)],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(3)
    ]
    outs = [p.communicate(timeout=600) for p in procs]
    for p, (out, err) in zip(procs, outs, strict=True):
        # 1: the broken samples failed (in whichever ingest processed them); never 3.
        assert p.returncode in (0, 1), (p.returncode, out, err)
        assert "internal error" not in err and "Traceback" not in err, err
    with sqlite3.connect(home / "catalog" / "state.sqlite") as con:
        rows = con.execute("SELECT object_key, status, attempts FROM versions").fetchall()
    assert {r[0] for r in rows} == set(SAMPLE_GOOD) | set(SAMPLE_BROKEN)
    assert {r[2] for r in rows} == {1}, f"a version was processed twice: {rows}"
    assert {r[0] for r in rows if r[1] == "SUCCEEDED"} == set(SAMPLE_GOOD)
    _, summaries = catalog_at(home).query("SELECT count(*) FROM summaries")
    assert summaries == [(len(SAMPLE_GOOD),)]


@pytest.fixture
def silent_bedrock() -> Iterator[str]:
    """An HTTP endpoint that accepts connections and never answers (a hung model)."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(64)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            held.append(conn)

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.getsockname()[1]}"
    finally:
        stop.set()
        thread.join(timeout=5)
        for conn in held:
            conn.close()
        server.close()


def test_a_kill_between_metadata_and_summary_is_finished_by_the_next_ingest(
    library: Path, tmp_path: Path, silent_bedrock: str
) -> None:
    """SIGKILL while the summarizer hangs: the versions are not SUCCEEDED (their summary is
    missing), and the next ingest finishes them without probing them again."""
    home = tmp_path / "home"
    hung = _env(
        EDVMP_HOME=str(home),
        EDVMP_SUMMARIZER="bedrock",
        EDVMP_BEDROCK_MODEL_ID="anthropic.claude-3-haiku-20240307-v1:0",
        EDVMP_BEDROCK_ENDPOINT_URL=silent_bedrock,
        EDVMP_BEDROCK_REGION="eu-west-1",
        AWS_ACCESS_KEY_ID="AKIDTESTEDVMP",
        AWS_SECRET_ACCESS_KEY="secret-for-tests",
        AWS_EC2_METADATA_DISABLED="true",
        AWS_CONFIG_FILE=str(tmp_path / "no-aws-config"),
        AWS_SHARED_CREDENTIALS_FILE=str(tmp_path / "no-aws-credentials"),
    )
    proc = subprocess.Popen(
        [EDVMP, "ingest", str(library)],
        env=hung,
        stdout=(tmp_path / "killed.out").open("w"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    state_file = home / "catalog" / "state.sqlite"
    deadline = time.monotonic() + 240
    probed = 0
    while time.monotonic() < deadline and proc.poll() is None:
        if state_file.exists():
            with sqlite3.connect(state_file, timeout=30) as con:
                (probed,) = con.execute(
                    "SELECT count(*) FROM versions WHERE metadata_at IS NOT NULL"
                ).fetchone()
            if probed == len(SAMPLE_GOOD):
                break
        time.sleep(0.2)
    assert proc.poll() is None, (tmp_path / "killed.out").read_text()
    assert probed == len(SAMPLE_GOOD)
    time.sleep(1.0)  # well inside the hung summary call
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)

    cat = catalog_at(home)
    with sqlite3.connect(state_file) as con:
        rows = con.execute(
            "SELECT object_key, status FROM versions WHERE metadata_at IS NOT NULL"
        ).fetchall()
    assert {status for _, status in rows} == {"RUNNING"}, rows
    _, summaries = cat.query("SELECT count(*) FROM summaries")
    assert summaries == [(0,)]

    # The next pass (offline summarizer now) completes every interrupted version.
    again = run_edvmp("ingest", str(library), env=_env(EDVMP_HOME=str(home)))
    assert again.returncode == 1, again.stdout + again.stderr  # the two broken samples
    with sqlite3.connect(state_file) as con:
        rows = con.execute("SELECT object_key, status FROM versions").fetchall()
    assert {k for k, s in rows if s == "SUCCEEDED"} == set(SAMPLE_GOOD), rows
    _, summaries = cat.query("SELECT count(DISTINCT partition_key) FROM summaries")
    assert summaries == [(len(SAMPLE_GOOD),)]
    _, checked = cat.query("SELECT count(DISTINCT partition_key) FROM checks")
    assert checked == [(len(SAMPLE_GOOD),)]
    # Not probed again: the videos files hold one row per version, all from the killed run.
    rows = duckdb.execute(
        "SELECT count(*), count(DISTINCT run_id) FROM read_parquet(?)",
        [str(home / "catalog" / "videos" / "*.parquet")],
    ).fetchall()
    assert rows == [(len(SAMPLE_GOOD), 1)]
