"""``edvmp check``: the catalog against a policy, through the console script."""

import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from edvmp_pipeline.defs.in_process_runs import ingest_in_process as ingest
from edvmp_pipeline.devtools.sample_media import generate_samples

STRICT_POLICY = """\
rules:
  - id: has_audio
    field: n_audio_streams
    min: 1
    severity: error
  - id: landscape
    field: rotation
    equals: 0
    severity: warn
"""


@pytest.fixture(scope="module")
def catalogued(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """An EDVMP_HOME whose catalog holds the sample library (5 good, 2 broken versions)."""
    root = tmp_path_factory.mktemp("check")
    generate_samples(root / "library")
    with pytest.MonkeyPatch.context() as env:
        env.setenv("EDVMP_HOME", str(root / "home"))
        for name in ("DAGSTER_HOME", "EDVMP_CATALOG", "EDVMP_POLICY", "EDVMP_SUMMARIZER"):
            env.delenv(name, raising=False)
        ingest(str(root / "library"))
        # ingest exported DAGSTER_HOME; the context restores the environment on exit.
        env.setenv("DAGSTER_HOME", os.environ["DAGSTER_HOME"])
    yield root / "home"


def _edvmp(home: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    exe = Path(sys.executable).with_name("edvmp")
    environ = {k: v for k, v in os.environ.items() if k not in ("EDVMP_POLICY", "DAGSTER_HOME")}
    return subprocess.run(
        [str(exe), "check", *args],
        capture_output=True,
        text=True,
        env={**environ, "EDVMP_HOME": str(home), **env},
        timeout=120,
        check=False,
    )


def _catalog_files(home: Path) -> dict[str, int]:
    return {
        table: len(list((home / "catalog" / table).glob("*.parquet")))
        for table in ("videos", "streams", "checks", "summaries")
    }


def test_default_policy_warnings_only_exit_0(catalogued: Path) -> None:
    done = _edvmp(catalogued)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    # Columns are padded with spaces; keys may hold single spaces.
    cells = [re.split(r"\s{2,}", line.strip()) for line in lines]
    assert cells[0] == ["object_key", "rule_id", "severity", "actual", "expected"]
    assert cells[2:4] == [
        ["training/silent_screencast.mkv", "has_audio", "warn", "0", ">= 1"],
        ["ugc/clip vp9, opus.webm", "min_height", "warn", "180", ">= 240"],
    ]
    assert lines[-1] == "(2 rows)"
    assert "5 versions checked against 11 rules" in done.stderr
    assert "0 error and 2 warning violations" in done.stderr


def test_new_policy_without_reprobing(catalogued: Path, tmp_path: Path) -> None:
    policy = tmp_path / "strict.yaml"
    policy.write_text(STRICT_POLICY)
    before = _catalog_files(catalogued)

    done = _edvmp(catalogued, "--policy", str(policy), "--format", "json")

    assert done.returncode == 1, done.stderr
    found = json.loads(done.stdout)
    assert [(v["object_key"], v["rule_id"], v["severity"]) for v in found] == [
        ("training/silent_screencast.mkv", "has_audio", "error"),
        ("ugc/phone_portrait.mp4", "landscape", "warn"),
    ]
    assert found[1]["actual"] == "90" and found[1]["expected"] == "== 0"
    assert {"partition_key", "etag", "field"} <= set(found[0])
    # Nothing probed, nothing written: no new videos rows, job events or check rows.
    assert _catalog_files(catalogued) == before

    # EDVMP_POLICY is the default for --policy.
    from_env = _edvmp(catalogued, EDVMP_POLICY=str(policy))
    assert from_env.returncode == 1
    assert "(2 rows)" in from_env.stdout


def test_malformed_policy_exit_2(catalogued: Path, tmp_path: Path) -> None:
    policy = tmp_path / "bad.yaml"
    policy.write_text(STRICT_POLICY.replace("equals: 0", "equals: [0]"))
    done = _edvmp(catalogued, "--policy", str(policy))
    assert done.returncode == 2
    assert done.stderr.strip() == (
        f"edvmp: error: {policy}: rule 'landscape': equals must be a number, got a list"
    )
    assert done.stdout == ""
    missing = _edvmp(catalogued, "--policy", str(tmp_path / "nope.yaml"))
    assert missing.returncode == 2 and "policy file not found" in missing.stderr


def test_missing_catalog_is_a_clear_error(tmp_path: Path) -> None:
    """A home with no catalog (a typo in EDVMP_HOME): said so, exit 2, nothing created."""
    done = _edvmp(tmp_path / "fresh")
    assert done.returncode == 2, done.stderr
    assert done.stderr.startswith("edvmp: error: no catalog at "), done.stderr
    assert done.stdout == ""
    assert not (tmp_path / "fresh").exists()


def test_every_rule_field_is_a_videos_column(catalogued: Path) -> None:
    """`edvmp check` reads the `videos` view, a run's step the landed rows: a field only one
    of them holds (ffprobe_json was one) gives one rule two verdicts and null in the table."""
    from edvmp_pipeline.catalog.store import Catalog
    from edvmp_pipeline.domain.policy import ANALYSIS_FIELD_KINDS, FIELD_KINDS

    columns = set(Catalog(catalogued / "catalog").video_table()[0])
    assert set(FIELD_KINDS) - set(ANALYSIS_FIELD_KINDS) <= columns
