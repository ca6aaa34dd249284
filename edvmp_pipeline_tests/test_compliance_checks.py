"""Compliance rules as Dagster asset checks: catalog rows, recorded evaluations, load errors."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import dagster as dg

from edvmp_pipeline.adapters.dagster_instance import get_instance
from edvmp_pipeline.catalog.store import Catalog
from edvmp_pipeline.definitions import build_resources, defs, video_assets
from edvmp_pipeline.defs.batch_runs import add_partitions
from edvmp_pipeline.defs.in_process_runs import ingest_in_process as ingest
from edvmp_pipeline.defs.jobs import INGEST_JOB
from edvmp_pipeline.domain.policy import check_name_for, load_default_policy
from edvmp_pipeline_tests.cli_support import SAMPLE_GOOD, run_edvmp

REPO = Path(__file__).resolve().parent.parent
GOOD = SAMPLE_GOOD
METADATA = dg.AssetKey("video_metadata")
# What the default policy finds in the samples: two warnings, no errors.
DEFAULT_VIOLATIONS = {
    ("training/silent_screencast.mkv", "has_audio", "warn", "0", ">= 1"),
    ("ugc/clip vp9, opus.webm", "min_height", "warn", "180", ">= 240"),
}
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
    description: Portrait uploads are letterboxed by the player.
"""

# The ids people write: `max-duration` and `max_duration` side by side must stay two checks.
HYPHEN_POLICY = """\
rules:
  - id: max-duration
    field: duration_s
    max: 3600
    severity: error
  - id: max_duration
    field: duration_s
    max: 1
    severity: warn
  - id: has-audio
    field: n_audio_streams
    min: 1
    severity: error
"""


def _evaluation(instance: dg.DagsterInstance, rule_id: str) -> dg.AssetCheckEvaluation:
    record = instance.get_latest_asset_check_evaluation_record(dg.AssetCheckKey(METADATA, rule_id))
    assert record is not None and record.event is not None, rule_id
    data = record.event.dagster_event.event_specific_data  # type: ignore[union-attr]
    assert isinstance(data, dg.AssetCheckEvaluation)
    return data


def test_every_rule_is_an_asset_check_of_the_metadata_asset() -> None:
    rule_ids = [r.id for r in load_default_policy().rules]
    assert {k.name for k in video_assets.check_keys} == set(rule_ids)
    assert {k.asset_key for k in video_assets.check_keys} == {METADATA}
    # The ingest job (group "videos") runs the checks in the same step as the metadata.
    job = defs.resolve_job_def(INGEST_JOB)
    assert "process_videos" in job.graph.node_dict


def test_check_rows_and_dagster_evaluations(library: Path, home: Path) -> None:
    report = ingest(str(library))
    (run_id,) = report.run_ids
    cat = Catalog(home / "catalog")
    n_rules = len(load_default_policy().rules)
    _, rows = cat.query("SELECT count(*), count(DISTINCT partition_key) FROM checks")
    assert rows == [(len(GOOD) * n_rules, len(GOOD))]
    _, rows = cat.query(
        "SELECT object_key, rule_id, severity, actual, expected FROM checks WHERE NOT passed"
    )
    assert set(rows) == DEFAULT_VIOLATIONS
    _, rows = cat.query("SELECT DISTINCT run_id FROM checks")
    assert rows == [(run_id,)]

    instance = get_instance()
    has_audio = _evaluation(instance, "has_audio")
    assert has_audio.passed is False
    assert has_audio.severity == dg.AssetCheckSeverity.WARN
    assert has_audio.metadata["evaluated_in_run"].value == len(GOOD)
    assert has_audio.metadata["failed_in_run"].value == 1
    assert has_audio.metadata["failing_in_library"].value == 1
    assert has_audio.metadata["failing_object_keys"].value == ["training/silent_screencast.mkv"]
    has_video = _evaluation(instance, "has_video")
    assert has_video.passed is True
    assert has_video.severity == dg.AssetCheckSeverity.ERROR
    record = instance.get_latest_asset_check_evaluation_record(
        dg.AssetCheckKey(METADATA, "has_video")
    )
    assert record is not None and record.run_id == run_id

    # Each version's own verdict is on its metadata materialisation (the partition's page).
    silent = next(pk for pk in report.processed if "silent_screencast" in pk)
    records = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=METADATA, asset_partitions=[silent]), limit=1
    ).records
    assert records and records[0].asset_materialization is not None
    meta = records[0].asset_materialization.metadata
    assert meta["failed_rules"].value == ["has_audio"]
    assert meta["compliance"].value == f"{n_rules - 1} of {n_rules} rules passed; failed: has_audio"

    # A later run over the same range does not check the same metadata again.
    again = ingest(str(library), retry_failed=True)
    assert again.run_ids
    _, rows = cat.query("SELECT count(*) FROM checks")
    assert rows == [(len(GOOD) * n_rules,)]

    # A run of only good versions does not turn the library's check green: the silent
    # video is still catalogued and still fails has_audio.
    extra = library.parent / "extra"
    extra.mkdir()
    shutil.copy(library / "marketing" / "launch_teaser.mp4", extra / "teaser_copy.mp4")
    with (extra / "teaser_copy.mp4").open("ab") as f:
        f.write(b"\0" * 16)  # a new version (new content hash) of a good video
    later = ingest(str(extra))
    assert len(later.succeeded) == 1, later
    has_audio = _evaluation(instance, "has_audio")
    assert has_audio.passed is False
    assert has_audio.metadata["evaluated_in_run"].value == 1
    assert has_audio.metadata["failed_in_run"].value == 0
    assert has_audio.metadata["failing_in_library"].value == 1


def test_a_run_without_summaries_leaves_versions_pending_until_done(
    library: Path, home: Path
) -> None:
    """Metadata and checks only (a UI subset): the run succeeds, its rows land, and the
    versions are PENDING (not SUCCEEDED) until a later run gives them their summary."""
    shutil.rmtree(library / "broken")
    report = ingest(str(library), register_only=True)
    keys = sorted(report.processed)
    instance = get_instance()
    add_partitions(instance, keys)
    order = instance.get_dynamic_partitions("videos")
    keys.sort(key=order.index)
    job = defs.resolve_job_def(INGEST_JOB).get_subset(
        asset_selection={METADATA}, asset_check_selection=set(video_assets.check_keys)
    )
    result = job.execute_in_process(
        instance=instance,
        tags={
            "dagster/asset_partition_range_start": keys[0],
            "dagster/asset_partition_range_end": keys[-1],
        },
        resources=build_resources(),
        run_config={"loggers": {"console": {"config": {"log_level": "CRITICAL"}}}},
        raise_on_error=False,
    )
    assert result.success
    cat = Catalog(home / "catalog")
    _, rows = cat.query("SELECT DISTINCT object_key FROM checks")
    assert {r[0] for r in rows} == GOOD
    assert {s.status for s in cat.job_states(keys).values()} == {"PENDING"}
    assert instance.get_materialized_partitions(METADATA) == set(keys)
    assert not instance.get_materialized_partitions(dg.AssetKey("video_summary"))

    # The next pass finishes them: summaries only, no second probe or check.
    again = ingest(str(library))
    assert len(again.succeeded) == len(GOOD), again
    assert {s.status for s in cat.job_states(keys).values()} == {"SUCCEEDED"}
    _, rows = cat.query("SELECT count(*) FROM checks")
    assert rows == [(len(GOOD) * len(load_default_policy().rules),)]
    assert instance.get_materialized_partitions(dg.AssetKey("video_summary")) == set(keys)


def test_policy_from_environment_sets_the_checks_and_severities(
    library: Path, home: Path, tmp_path: Path
) -> None:
    shutil.rmtree(library / "broken")
    policy = tmp_path / "strict.yaml"
    policy.write_text(STRICT_POLICY)
    env = {**os.environ, "EDVMP_HOME": str(home), "EDVMP_POLICY": str(policy)}
    done = run_edvmp("ingest", str(library), env=env)
    # Checks never fail a run: a failed error-severity rule is reported, not raised.
    assert done.returncode == 0, done.stdout + done.stderr
    _, rows = Catalog(home / "catalog").query(
        "SELECT object_key, rule_id, severity FROM checks WHERE NOT passed ORDER BY 1"
    )
    assert rows == [
        ("training/silent_screencast.mkv", "has_audio", "error"),
        ("ugc/phone_portrait.mp4", "landscape", "warn"),
    ]
    instance = get_instance()
    has_audio = _evaluation(instance, "has_audio")
    assert (has_audio.passed, has_audio.severity) == (False, dg.AssetCheckSeverity.ERROR)
    landscape = _evaluation(instance, "landscape")
    assert (landscape.passed, landscape.severity) == (False, dg.AssetCheckSeverity.WARN)
    assert landscape.metadata["failing_object_keys"].value == ["ugc/phone_portrait.mp4"]


def test_malformed_policy_is_a_clean_error(library: Path, home: Path, tmp_path: Path) -> None:
    policy = tmp_path / "bad.yaml"
    policy.write_text(STRICT_POLICY.replace("min: 1", "minimum: 1"))
    env = {**os.environ, "EDVMP_HOME": str(home), "EDVMP_POLICY": str(policy)}
    done = run_edvmp("ingest", str(library), env=env)
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    assert done.stderr.strip() == (
        f"edvmp: error: EDVMP_POLICY: {policy}: rule 'has_audio': unknown condition 'minimum' "
        "(conditions: min, max, in, not_in, equals; other keys: id, field, severity, "
        "description)"
    )
    assert not (home / "catalog" / "videos").exists() or not list(
        (home / "catalog" / "videos").glob("2*.parquet")
    )

    # The code location refuses to load, with the same message.
    dagster = Path(sys.executable).with_name("dagster")
    (tmp_path / "dagster").mkdir()
    validate = subprocess.run(
        [str(dagster), "definitions", "validate", "-w", "workspace.yaml"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={**env, "DAGSTER_HOME": str(tmp_path / "dagster")},
    )
    assert validate.returncode != 0
    assert "rule 'has_audio': unknown condition 'minimum'" in validate.stdout + validate.stderr


def test_hyphenated_rule_ids_keep_their_id_and_get_a_derived_check_name(
    library: Path, home: Path, tmp_path: Path
) -> None:
    shutil.rmtree(library / "broken")
    policy = tmp_path / "hyphens.yaml"
    policy.write_text(HYPHEN_POLICY)
    env = {**os.environ, "EDVMP_HOME": str(home), "EDVMP_POLICY": str(policy)}
    done = run_edvmp("ingest", str(library), env=env)
    assert done.returncode == 0, done.stdout + done.stderr

    # The catalog and the verdict index keep the ids as written.
    cat = Catalog(home / "catalog")
    _, rows = cat.query(
        "SELECT rule_id, count(*), count(*) FILTER (WHERE NOT passed) FROM checks "
        "GROUP BY rule_id ORDER BY rule_id"
    )
    assert rows == [
        ("has-audio", len(GOOD), 1),
        ("max-duration", len(GOOD), 0),
        ("max_duration", len(GOOD), len(GOOD)),  # every sample is longer than 1 s
    ]
    counts = cat.state.violation_counts(["has-audio", "max-duration", "max_duration"])
    assert counts["has-audio"] == (1, ["training/silent_screencast.mkv"])
    assert counts["max-duration"] == (0, [])
    assert counts["max_duration"][0] == len(GOOD)

    # Dagster has one check per rule, the hyphenated ones under their derived names.
    instance = get_instance()
    has_audio = _evaluation(instance, check_name_for("has-audio"))
    assert check_name_for("has-audio") == "has_audio_8da6e7eb"
    assert (has_audio.passed, has_audio.severity) == (False, dg.AssetCheckSeverity.ERROR)
    assert has_audio.metadata["rule_id"].value == "has-audio"
    assert has_audio.metadata["failing_in_library"].value == 1
    assert has_audio.metadata["failing_object_keys"].value == ["training/silent_screencast.mkv"]
    hyphen = _evaluation(instance, check_name_for("max-duration"))
    assert (hyphen.passed, hyphen.metadata["rule_id"].value) == (True, "max-duration")
    underscore = _evaluation(instance, "max_duration")
    assert (underscore.passed, underscore.metadata["rule_id"].value) == (False, "max_duration")
    assert underscore.metadata["failing_in_library"].value == len(GOOD)
    assert (
        instance.get_latest_asset_check_evaluation_record(dg.AssetCheckKey(METADATA, "has-audio"))
        is None
    )

    # Each version's verdict names the rules by id, and so does `edvmp check`.
    silent = cat.query(
        "SELECT partition_key FROM videos WHERE object_key = 'training/silent_screencast.mkv'"
    )[1][0][0]
    records = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=METADATA, asset_partitions=[silent]), limit=1
    ).records
    assert records and records[0].asset_materialization is not None
    failed_rules = records[0].asset_materialization.metadata["failed_rules"].value
    assert sorted(failed_rules) == ["has-audio", "max_duration"]
    checked = run_edvmp("check", "--policy", str(policy), "--format", "json", env=env)
    assert checked.returncode == 1, checked.stderr  # has-audio is an error-severity rule
    assert '"rule_id": "has-audio"' in checked.stdout
