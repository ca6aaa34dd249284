"""Compliance rules as Dagster asset checks: catalog rows, recorded evaluations, load errors."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import dagster as dg

from edvmp_pipeline.adapters.dagster_instance import get_instance
from edvmp_pipeline.adapters.summarizers import summarizer_from_env
from edvmp_pipeline.catalog.store import Catalog
from edvmp_pipeline.definitions import build_resources, defs, video_assets
from edvmp_pipeline.defs.batch_runs import add_partitions
from edvmp_pipeline.defs.in_process_runs import ingest_in_process as ingest
from edvmp_pipeline.defs.jobs import INGEST_JOB, ingest_job
from edvmp_pipeline.defs.video_pipeline import build_video_assets
from edvmp_pipeline.domain.policy import (
    GROUPING_THRESHOLD,
    MAX_RULES,
    check_name_for,
    load_default_policy,
    load_policy,
)
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


CHANGED_POLICY = """\
rules:
  - id: min_height
    field: height
    min: 1
    severity: warn
  - id: two_audio
    field: n_audio_streams
    min: 2
    severity: error
"""


def test_a_policy_change_checks_the_library_once(library: Path, home: Path, tmp_path: Path) -> None:
    """A rule added, or changed under the same id, answers for every catalogued version,
    not only for those checked after the change."""
    shutil.rmtree(library / "broken")
    env = {**os.environ, "EDVMP_HOME": str(home)}
    assert run_edvmp("ingest", str(library), env=env).returncode == 0
    assert _evaluation(get_instance(), "min_height").passed is False  # the vp9 clip, 180 high

    policy = tmp_path / "changed.yaml"
    policy.write_text(CHANGED_POLICY)
    env["EDVMP_POLICY"] = str(policy)
    (library / "extra").mkdir()
    shutil.copy(library / "ugc" / "phone_portrait.mp4", library / "extra" / "a.mp4")
    done = run_edvmp("ingest", str(library), env=env)
    assert done.returncode == 0, done.stdout + done.stderr
    instance = get_instance()
    min_height = _evaluation(instance, "min_height")
    # Changed to min 1: the clip's old failure no longer stands.
    assert min_height.passed is True, min_height.description
    two_audio = _evaluation(instance, "two_audio")
    # New: all six catalogued versions fail it, five of them ingested before it existed.
    assert two_audio.passed is False
    assert two_audio.metadata["failing_in_library"].value == len(GOOD) + 1
    assert two_audio.metadata["evaluated_in_run"].value == len(GOOD) + 1

    # Once: the next run under the same policy checks its own version only.
    shutil.copy(library / "ugc" / "phone_portrait.mp4", library / "extra" / "b.mp4")
    assert run_edvmp("ingest", str(library), env=env).returncode == 0
    two_audio = _evaluation(get_instance(), "two_audio")
    assert two_audio.metadata["evaluated_in_run"].value == 1
    assert two_audio.metadata["failing_in_library"].value == len(GOOD) + 2
    _, rows = Catalog(home / "catalog").query(
        "SELECT count(*) FROM checks WHERE rule_id = 'two_audio' AND NOT passed"
    )
    assert rows == [(len(GOOD) + 2,)]


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


# -- big policies: one check per severity past GROUPING_THRESHOLD (item 9) ------------------


def _big_policy(n: int) -> str:
    """``n`` rules: ``has-audio`` (error; the silent screencast fails it), ``too-long`` (error;
    every sample is longer than 1 s), and passing rules of both severities for the rest."""
    lines = [
        "rules:",
        "  - {id: has-audio, field: n_audio_streams, min: 1, severity: error}",
        "  - {id: too-long, field: duration_s, max: 1, severity: error}",
    ]
    for i in range(2, n):
        severity = "error" if i % 3 == 0 else "warn"
        lines.append(
            f"  - {{id: ok-{i}, field: duration_s, max: {3600 + i}, severity: {severity}}}"
        )
    return "\n".join(lines) + "\n"


def test_a_policy_past_the_threshold_reports_one_check_per_severity(
    library: Path, home: Path, tmp_path: Path
) -> None:
    shutil.rmtree(library / "broken")
    policy = tmp_path / "big.yaml"
    policy.write_text(_big_policy(60))
    n_error = 2 + len([i for i in range(2, 60) if i % 3 == 0])
    env = {**os.environ, "EDVMP_HOME": str(home), "EDVMP_POLICY": str(policy)}
    done = run_edvmp("ingest", str(library), env=env)
    assert done.returncode == 0, done.stdout + done.stderr

    # Every (version, rule) verdict is in the catalog as before.
    cat = Catalog(home / "catalog")
    _, rows = cat.query("SELECT count(*), count(*) FILTER (WHERE NOT passed) FROM checks")
    assert rows == [(len(GOOD) * 60, len(GOOD) + 1)]

    instance = get_instance()
    (run,) = instance.get_runs()
    evaluations = instance.all_logs(run.run_id, of_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION)
    assert sorted(e.dagster_event.event_specific_data.check_name for e in evaluations) == [  # type: ignore[union-attr]
        "policy_error",
        "policy_warn",
    ]
    for rule_id in ("has-audio", "too-long", "ok-2"):
        key = dg.AssetCheckKey(METADATA, check_name_for(rule_id))
        assert instance.get_latest_asset_check_evaluation_record(key) is None

    errors = _evaluation(instance, "policy_error")
    assert (errors.passed, errors.severity) == (False, dg.AssetCheckSeverity.ERROR)
    meta = {k: v.value for k, v in errors.metadata.items()}
    assert meta["rules_in_group"] == n_error
    assert meta["n_failing_rules"] == 2
    # Most violations first, each with its library count.
    assert meta["failing_rules"] == [
        {"rule_id": "too-long", "failing_in_library": len(GOOD)},
        {"rule_id": "has-audio", "failing_in_library": 1},
    ]
    assert meta["violations_in_library"] == len(GOOD) + 1
    assert meta["evaluated_in_run"] == len(GOOD)
    assert meta["failed_in_run"] == len(GOOD)  # distinct versions failing some error rule
    assert meta["failing_object_keys"] == sorted(GOOD)

    warnings = _evaluation(instance, "policy_warn")
    assert (warnings.passed, warnings.severity) == (True, dg.AssetCheckSeverity.WARN)
    meta = {k: v.value for k, v in warnings.metadata.items()}
    assert meta["rules_in_group"] == 60 - n_error
    assert (meta["n_failing_rules"], meta["failing_rules"]) == (0, [])
    assert (meta["violations_in_library"], meta["failing_object_keys"]) == (0, [])
    assert (meta["evaluated_in_run"], meta["failed_in_run"]) == (len(GOOD), 0)

    # Each version's own verdict still names its rules on its materialisation.
    silent = cat.query(
        "SELECT partition_key FROM videos WHERE object_key = 'training/silent_screencast.mkv'"
    )[1][0][0]
    records = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=METADATA, asset_partitions=[silent]), limit=1
    ).records
    assert records and records[0].asset_materialization is not None
    meta = {k: v.value for k, v in records[0].asset_materialization.metadata.items()}
    assert sorted(meta["failed_rules"]) == ["has-audio", "too-long"]
    assert meta["compliance"].startswith("58 of 60 rules passed; failed: ")


def _check_names(policy_text: str) -> set[str]:
    """The asset checks of the code location's assets for a policy, resolved by Dagster."""
    assets = build_video_assets(load_policy(policy_text), summarizer_from_env({}))
    loaded = dg.Definitions(assets=[assets], jobs=[ingest_job], resources=build_resources())
    keys = loaded.resolve_asset_graph().asset_check_keys
    # The ingest job runs them all in the pipeline's one step.
    assert set(loaded.resolve_job_def(INGEST_JOB).asset_layer.asset_graph.asset_check_keys) == keys
    assert {k.asset_key for k in keys} == {METADATA}
    return {k.name for k in keys}


def test_definitions_of_a_big_policy_have_exactly_the_grouped_checks() -> None:
    assert _check_names(_big_policy(1000)) == {"policy_error", "policy_warn"}
    # A severity no rule has gets no check.
    only_warn = _big_policy(MAX_RULES).replace("severity: error", "severity: warn")
    assert _check_names(only_warn) == {"policy_warn"}


def test_definitions_of_a_policy_up_to_the_threshold_have_a_check_per_rule() -> None:
    text = _big_policy(GROUPING_THRESHOLD)
    expected = {check_name_for(r.id) for r in load_policy(text).rules}
    assert len(expected) == GROUPING_THRESHOLD
    assert _check_names(text) == expected


def test_a_policy_past_the_limit_is_refused_with_one_line(
    library: Path, home: Path, tmp_path: Path
) -> None:
    policy = tmp_path / "huge.yaml"
    policy.write_text(_big_policy(MAX_RULES + 1))
    env = {**os.environ, "EDVMP_HOME": str(home), "EDVMP_POLICY": str(policy)}
    done = run_edvmp("ingest", str(library), env=env)
    assert done.returncode == 2, done.stderr
    assert done.stderr.strip() == (
        f"edvmp: error: EDVMP_POLICY: {policy}: policy: {MAX_RULES + 1} rules, more than the "
        f"limit of {MAX_RULES} (every run evaluates every rule on each of its versions and "
        "lands a checks row per version and rule)"
    )


def test_a_run_of_one_grouped_check_evaluates_the_rules_of_its_severity(
    library: Path, home: Path
) -> None:
    """A UI subset (metadata and ``policy_warn`` only): the warn rules run, not the error
    ones, and only the selected group reports."""
    shutil.rmtree(library / "broken")
    text = _big_policy(60).replace(
        "{id: ok-2, field: duration_s, max: 3602, severity: warn}",
        "{id: landscape, field: rotation, equals: 0, severity: warn}",
    )
    policy = load_policy(text)
    assets = build_video_assets(policy, summarizer_from_env({}))
    loaded = dg.Definitions(assets=[assets], jobs=[ingest_job], resources=build_resources())
    report = ingest(str(library), register_only=True)
    keys = sorted(report.processed)
    instance = get_instance()
    add_partitions(instance, keys)
    order = instance.get_dynamic_partitions("videos")
    keys.sort(key=order.index)
    job = loaded.resolve_job_def(INGEST_JOB).get_subset(
        asset_selection={METADATA},
        asset_check_selection={dg.AssetCheckKey(METADATA, "policy_warn")},
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
    evaluations = result.get_asset_check_evaluations()
    assert [e.check_name for e in evaluations] == ["policy_warn"]
    (warn,) = evaluations
    assert (warn.passed, warn.severity) == (False, dg.AssetCheckSeverity.WARN)
    assert warn.metadata["failing_rules"].value == [
        {"rule_id": "landscape", "failing_in_library": 1}
    ]
    assert warn.metadata["failing_object_keys"].value == ["ugc/phone_portrait.mp4"]
    _, rows = Catalog(home / "catalog").query("SELECT DISTINCT severity FROM checks")
    assert rows == [("warn",)]
