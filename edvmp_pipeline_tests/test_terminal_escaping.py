"""Names from uploads cannot drive the terminal: human output shows control and bidi
characters as visible escapes, JSON output keeps every name exact."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from edvmp_pipeline.cli import output
from edvmp_pipeline_tests.cli_support import catalog_at, run_edvmp

# Erase the line and return to its start, then reverse what follows: the name of a good
# video that would otherwise hide itself (or a "failed:" line before it).
EVIL_GOOD = "evil\x1b[2K\r\u202eclip.mp4"
EVIL_GOOD_SHOWN = "evil\\x1b[2K\\r\\u202eclip.mp4"
# Set the window title (OSC ... BEL), isolate direction, and a one-byte C1 CSI.
EVIL_BAD = "cut\x1b]0;pwned\x07\u2066\x9b2Jshort.mp4"
EVIL_BAD_SHOWN = "cut\\x1b]0;pwned\\x07\\u2066\\x9b2Jshort.mp4"
RAW = ("\x1b", "\r", "\x07", "\x9b", "\u202e", "\u2066")


@pytest.mark.parametrize(
    ("raw", "shown"),
    [
        ("\x1b[2K", "\\x1b[2K"),
        ("a\rb", "a\\rb"),
        ("\x07", "\\x07"),
        ("\x00", "\\x00"),
        ("\x7f", "\\x7f"),
        ("\x9b2J", "\\x9b2J"),
        ("\x85", "\\x85"),
        ("abc\u202edef", "abc\\u202edef"),
        ("\u202a\u202b\u202c\u202d", "\\u202a\\u202b\\u202c\\u202d"),
        ("\u2066\u2067\u2068\u2069", "\\u2066\\u2067\\u2068\\u2069"),
        ("\u200e\u200f\u061c", "\\u200e\\u200f\\u061c"),
        ("line\u2028sep\u2029", "line\\u2028sep\\u2029"),
        ("cell\twith\ttabs\nand newline", "cell\\twith\\ttabs\\nand newline"),
        ("bad_\udcff.mp4", "bad_\\udcff.mp4"),
    ],
)
def test_controls_and_bidi_become_visible_escapes(raw: str, shown: str) -> None:
    assert output.terminal_safe(raw) == shown


@pytest.mark.parametrize(
    "text",
    [
        "café é",
        "日本語 ビデオ.mp4",
        "🎉 party.mov",
        "👨\u200d👩\u200d👧 family.mp4",  # the zero-width joiner of an emoji sequence stays
        "مرحبا.mp4",  # right-to-left letters are text, not controls
        "naïve\u0301 combining",
        "no\u00a0break space",
        "C:\\back\\slashes",
        "",
    ],
)
def test_ordinary_text_is_untouched(text: str) -> None:
    assert output.terminal_safe(text) == text


def test_table_escapes_cells_and_headers_and_stays_one_line_per_row() -> None:
    table = output.render(
        ["key\x1b[31m", "n"], [[EVIL_GOOD, 1], ["two\nlines\tand tab", 2], ["日本", None]]
    )
    assert not any(ch in table for ch in RAW)
    lines = table.splitlines()
    # header, rule, three rows, the count: a newline in a cell did not add a line.
    assert len(lines) == 6
    assert lines[0].startswith("key\\x1b[31m")
    assert lines[2].startswith(EVIL_GOOD_SHOWN)
    assert lines[3].startswith("two\\nlines\\tand tab")
    assert lines[4].startswith("日本")


def test_json_keeps_every_name_exact() -> None:
    names = [EVIL_GOOD, EVIL_BAD, "del\x7f", "日本🎉"]
    text = output.render(["name"], [[n] for n in names], "json")
    assert [row["name"] for row in json.loads(text)] == names
    # Bidi characters stay as they are; controls (C0, DEL, C1) are \u escapes, never raw.
    assert "\u202e" in text and "\u2066" in text
    assert not any(ch in text for ch in ("\x1b", "\r", "\x07", "\x7f", "\x9b"))
    assert json.loads(output.json_text({"k": EVIL_BAD})) == {"k": EVIL_BAD}


def test_csv_is_data_and_stays_exact() -> None:
    text = output.render(["name"], [[EVIL_GOOD]], "csv")
    assert text.splitlines()[0] == "name" and EVIL_GOOD in text


@pytest.fixture
def hostile_folder(library: Path, tmp_path: Path) -> Path:
    """A folder with one real video and one cut-short one, both under hostile names."""
    folder = tmp_path / "hostile"
    folder.mkdir()
    shutil.copyfile(library / "marketing/launch_teaser.mp4", folder / EVIL_GOOD)
    shutil.copyfile(library / "broken/upload_cut_short.mp4", folder / EVIL_BAD)
    return folder


def _assert_escaped(text: str, *shown: str) -> None:
    for ch in RAW:
        assert ch not in text, f"raw {ch!r} printed: {text!r}"
    for name in shown:
        assert name in text, f"{name!r} not in {text!r}"


def test_commands_escape_hostile_names_and_json_keeps_them(
    hostile_folder: Path, home: Path
) -> None:
    env = {**os.environ, "EDVMP_HOME": str(home)}
    done = run_edvmp("ingest", str(hostile_folder), env=env)
    assert done.returncode == 1, done.stdout + done.stderr  # the cut-short file failed
    _assert_escaped(done.stdout, f"failed:\n  {EVIL_BAD_SHOWN}: [corrupt_media]")

    table = run_edvmp("query", "SELECT object_key FROM videos", env=env)
    assert table.returncode == 0, table.stderr
    _assert_escaped(table.stdout, EVIL_GOOD_SHOWN)
    exact = run_edvmp("query", "SELECT object_key FROM videos", "--format", "json", env=env)
    assert [r["object_key"] for r in json.loads(exact.stdout)] == [EVIL_GOOD]
    # DuckDB's error quotes the SQL (here a hostile identifier): escaped on stderr too.
    bad_sql = run_edvmp("query", f'SELECT * FROM "{EVIL_BAD}"', env=env)
    assert bad_sql.returncode == 2
    assert len(bad_sql.stderr.strip().splitlines()) == 1
    _assert_escaped(bad_sql.stderr, "edvmp: error: query failed: Catalog Error: ")
    _assert_escaped(bad_sql.stderr, EVIL_BAD_SHOWN)

    listed = run_edvmp("incidents", env=env)
    assert listed.returncode == 0, listed.stderr
    _assert_escaped(listed.stdout, EVIL_BAD_SHOWN)
    summary = run_edvmp("incidents", "summary", env=env)
    assert summary.returncode == 0, summary.stderr
    _assert_escaped(summary.stdout, f"affected: {EVIL_BAD_SHOWN}")
    incidents = json.loads(run_edvmp("incidents", "--json", env=env).stdout)
    assert [i["object_key"] for i in incidents] == [EVIL_BAD]

    _, rows = catalog_at(home).query("SELECT partition_key, object_key FROM jobs")
    jobs = {key: pk for pk, key in rows}
    for key, shown in ((EVIL_GOOD, EVIL_GOOD_SHOWN), (EVIL_BAD, EVIL_BAD_SHOWN)):
        status = run_edvmp("status", jobs[key], env=env)
        _assert_escaped(status.stdout, shown)
        as_json = json.loads(run_edvmp("status", jobs[key], "--json", env=env).stdout)
        assert as_json["object_key"] == key
