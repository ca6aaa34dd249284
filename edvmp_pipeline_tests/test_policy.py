"""Loading (strictly) and evaluating the YAML compliance policy."""

from __future__ import annotations

import os
import pickle
import re
import time
from pathlib import Path

import pytest

from edvmp_pipeline.domain.errors import ConfigError
from edvmp_pipeline.domain.policy import (
    DEFAULT_POLICY_PATH,
    FIELD_KINDS,
    GROUP_CHECK_NAMES,
    GROUPING_THRESHOLD,
    MAX_ID_LENGTH,
    MAX_POLICY_BYTES,
    MAX_RULES,
    CheckResult,
    PolicyError,
    check_groups,
    check_name_for,
    configured_policy,
    evaluate,
    evaluate_batch,
    evaluate_rule,
    load_default_policy,
    load_policy,
)
from edvmp_pipeline.services.compliance import evaluate_rows
from edvmp_pipeline_tests.cli_support import run_edvmp


def one_rule(body: str) -> str:
    """A policy with one rule whose keys are ``body`` (one ``key: value`` per line)."""
    lines = body.strip().splitlines()
    return "rules:\n  - " + "\n    ".join(lines) + "\n"


@pytest.mark.parametrize(
    ("text", "parts"),
    [
        # top level
        ("- 1\n- 2\n", ["policy:", "top level must be a mapping", "got a list"]),
        ("just text\n", ["top level must be a mapping", "got the string 'just text'"]),
        ("\n", ["top level must be a mapping", "got null"]),
        ("version: 1\n", ["'rules' must be a list of rules", "got nothing"]),
        ("rules: {a: 1}\n", ["'rules' must be a list", "got a mapping"]),
        ("rules: []\nextra: 1\n", ["unknown top-level key 'extra'"]),
        ("version: 2\nrules: []\n", ["unsupported version 2"]),
        ("rules: [5]\n", ["rule #1:", "must be a mapping", "got the number 5"]),
        ("rules: [ : ]\n  x", ["not valid YAML"]),
        # id
        (one_rule("field: width\nmax: 10\nseverity: warn"), ["rule #1: missing id"]),
        (one_rule("id: 7\nfield: width\nmax: 10\nseverity: warn"), ["rule #1: id must be"]),
        (one_rule("id: has space\nfield: width\nmax: 1\nseverity: warn"), ["rule #1: id must"]),
        (
            "rules:\n"
            "  - {id: a, field: width, max: 1, severity: warn}\n"
            "  - {id: a, field: height, max: 1, severity: warn}\n",
            ["rule 'a': duplicate id"],
        ),
        # field
        (
            one_rule("id: r\nfield: colour\nmax: 10\nseverity: warn"),
            ["rule 'r': unknown field 'colour'", "duration_s"],
        ),
        (one_rule("id: r\nfield: tags\nin: [a]\nseverity: warn"), ["unknown field 'tags'"]),
        (one_rule("id: r\nmax: 10\nseverity: warn"), ["rule 'r': missing field"]),
        # conditions
        (
            one_rule("id: r\nfield: width\nmaximum: 10\nseverity: warn"),
            ["rule 'r': unknown condition 'maximum'", "min, max, in, not_in, equals"],
        ),
        (one_rule("id: r\nfield: width\nseverity: warn"), ["rule 'r': no condition"]),
        (
            one_rule("id: r\nfield: width\nmin: 1\nmax: 10\nseverity: warn"),
            ["rule 'r': two or more conditions (min, max)"],
        ),
        (
            one_rule("id: r\nfield: width\nmax: ten\nseverity: warn"),
            ["rule 'r': max must be a number, got the string 'ten'"],
        ),
        (
            one_rule("id: r\nfield: width\nmin: yes\nseverity: warn"),
            ["rule 'r': min must be a number, got a boolean"],
        ),
        (
            one_rule("id: r\nfield: video_codec\nmax: 10\nseverity: warn"),
            ["rule 'r': max needs a numeric field, 'video_codec' is a string"],
        ),
        (
            one_rule("id: r\nfield: video_codec\nin: 5\nseverity: warn"),
            ["rule 'r': in must be a list, got the number 5"],
        ),
        (
            one_rule("id: r\nfield: video_codec\nnot_in: h264\nseverity: warn"),
            ["rule 'r': not_in must be a list, got the string 'h264'"],
        ),
        (
            one_rule("id: r\nfield: video_codec\nin: []\nseverity: warn"),
            ["rule 'r': in must not be empty"],
        ),
        (
            one_rule("id: r\nfield: video_codec\nin: [h264, 5]\nseverity: warn"),
            ["rule 'r': every item of in must be a string, got the number 5"],
        ),
        (
            one_rule("id: r\nfield: width\nin: [1920, wide]\nseverity: warn"),
            ["rule 'r': every item of in must be a number, got the string 'wide'"],
        ),
        (
            one_rule("id: r\nfield: rotation\nequals: zero\nseverity: warn"),
            ["rule 'r': equals must be a number, got the string 'zero'"],
        ),
        (
            one_rule("id: r\nfield: format_name\nequals: 3\nseverity: warn"),
            ["rule 'r': equals must be a string, got the number 3"],
        ),
        # severity and description
        (
            one_rule("id: r\nfield: width\nmax: 10\nseverity: fatal"),
            ["rule 'r': bad severity 'fatal'", "error, warn"],
        ),
        (one_rule("id: r\nfield: width\nmax: 10"), ["rule 'r': missing severity"]),
        (
            one_rule("id: r\nfield: width\nmax: 10\nseverity: warn\ndescription: [a]"),
            ["rule 'r': description must be a string, got a list"],
        ),
    ],
)
def test_malformed_policies(text: str, parts: list[str]) -> None:
    with pytest.raises(PolicyError) as info:
        load_policy(text)
    message = str(info.value)
    for part in parts:
        assert part in message, f"{part!r} not in {message!r}"


def test_policy_error_is_a_config_error() -> None:
    assert issubclass(PolicyError, ConfigError)
    with pytest.raises(ConfigError) as info:
        load_policy("rules: 3\n")
    assert info.value.error_class == "config_error"
    assert info.value.retryable is False


def test_second_rule_is_named_by_index_when_it_has_no_id() -> None:
    text = "rules:\n  - {id: a, field: width, max: 1, severity: warn}\n  - {field: width}\n"
    with pytest.raises(PolicyError, match=r"rule #2: missing id"):
        load_policy(text)


def test_load_from_file_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "p.yaml"
    path.write_text(one_rule("id: r\nfield: width\nmax: ten\nseverity: warn"))
    with pytest.raises(PolicyError) as info:
        load_policy(path)
    assert str(path) in str(info.value) and "rule 'r': max must be a number" in str(info.value)
    # A string path works too.
    with pytest.raises(PolicyError, match="rule 'r'"):
        load_policy(str(path))


def test_missing_file() -> None:
    with pytest.raises(
        PolicyError, match=re.escape("policy file not found: /nonexistent/policy.yaml")
    ):
        load_policy("/nonexistent/policy.yaml")


def test_binary_policy_file_is_a_policy_error(tmp_path: Path) -> None:
    """Not UTF-8 (an image saved as policy.yaml): a PolicyError naming the file, not a crash."""
    path = tmp_path / "policy.yaml"
    path.write_bytes(b"rules:\n  - id: a\n\xff\xfe\x00\x89PNG")
    with pytest.raises(PolicyError, match=re.escape(f"policy file {path} is not UTF-8 text")):
        load_policy(path)


def padded_policy(size: int) -> str:
    """A valid (empty) policy of exactly ``size`` bytes: ``rules: []`` and a long comment."""
    head = "rules: []\n#"
    return head + "x" * (size - len(head))


def test_a_policy_over_the_size_cap_is_refused_in_one_line(tmp_path: Path) -> None:
    # The cap is far above a 5,000-rule policy written in the verbose style.
    verbose = "".join(
        f"  - id: {'r' * 58}{i:05d}\n    field: video_codec\n"
        "    in: [h264, hevc, vp9, av1, prores, mpeg4, mpeg2video]\n    severity: error\n"
        f"    description: {'Videos must use a codec the players support. ' * 2}\n"
        for i in range(MAX_RULES)
    )
    assert len(("rules:\n" + verbose).encode()) * 2 < MAX_POLICY_BYTES
    path = tmp_path / "big.yaml"
    path.write_text(padded_policy(MAX_POLICY_BYTES))
    assert path.stat().st_size == MAX_POLICY_BYTES
    assert load_policy(path).rules == ()
    path.write_text(padded_policy(MAX_POLICY_BYTES + 1))
    with pytest.raises(PolicyError) as info:
        load_policy(path)
    assert str(info.value) == f"policy file {path} is over {MAX_POLICY_BYTES} bytes"
    # YAML text given directly has the same cap (counted in UTF-8 bytes).
    assert load_policy(padded_policy(MAX_POLICY_BYTES)).rules == ()
    with pytest.raises(PolicyError) as info:
        load_policy(padded_policy(MAX_POLICY_BYTES - 1) + "é")
    assert str(info.value) == f"policy: the policy text is over {MAX_POLICY_BYTES} bytes"


@pytest.mark.parametrize("kind", ["character device", "FIFO", "directory"])
def test_a_policy_that_is_not_a_regular_file_is_refused_without_reading_it(
    tmp_path: Path, kind: str
) -> None:
    """`edvmp check --policy /dev/zero` used to read until the kernel killed it, and a FIFO
    blocks an open for reading until a writer comes. In a subprocess with a timeout, so a
    regression fails the test instead of hanging it."""
    if kind == "character device":
        path = Path("/dev/zero")
    elif kind == "FIFO":
        path = tmp_path / "policy.yaml"
        os.mkfifo(path)
    else:
        path = tmp_path / "policies.yaml"
        path.mkdir()
    env = {**os.environ, "EDVMP_HOME": str(tmp_path / "home")}
    env.pop("EDVMP_POLICY", None)
    t0 = time.monotonic()
    done = run_edvmp("check", "--policy", str(path), env=env, timeout=60)
    assert time.monotonic() - t0 < 30
    assert done.returncode == 2, (done.returncode, done.stderr)
    assert done.stderr.splitlines() == [
        f"edvmp: error: policy file {path} is a {kind}, not a regular file: a YAML policy is "
        "expected"
    ]
    assert not (tmp_path / "home").exists()


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "version: 1\nversion: 1\nrules: []\n",
            "duplicate key 'version' at line 2 (first at line 1)",
        ),
        ("rules: []\nrules: []\n", "duplicate key 'rules' at line 2 (first at line 1)"),
        (
            one_rule("id: r\nfield: width\nmin: 1\nseverity: warn\nmin: 2"),
            "duplicate key 'min' at line 6 (first at line 4)",
        ),
        (
            "rules:\n  - {id: r, field: width, max: 1, max: 2, severity: warn}\n",
            "duplicate key 'max' at line 2 (first at line 2)",
        ),
        (
            "rules:\n  - {id: a, field: width, max: 1, severity: warn}\n"
            "  - id: b\n    field: height\n    id: c\n    max: 1\n    severity: warn\n",
            "duplicate key 'id' at line 5 (first at line 3)",
        ),
    ],
)
def test_a_key_given_twice_is_refused_naming_it(tmp_path: Path, text: str, message: str) -> None:
    """YAML keeps the last of two equal keys: a second `min:` silently replaced the first."""
    with pytest.raises(PolicyError) as info:
        load_policy(text)
    assert str(info.value) == f"policy: not valid YAML: {message}"
    path = tmp_path / "dup.yaml"
    path.write_text(text)
    with pytest.raises(PolicyError) as info:
        load_policy(path)
    assert str(info.value) == f"{path}: not valid YAML: {message}"


def test_merge_keys_still_merge_and_an_explicit_key_overrides_the_merged_one() -> None:
    text = (
        "rules:\n"
        "  - &base {id: a, field: width, max: 10, severity: warn}\n"
        "  - <<: *base\n"
        "    id: b\n"
        "    severity: error\n"
        "  - <<: [*base, {description: merged}]\n"
        "    id: c\n"
    )
    a, b, c = load_policy(text).rules
    assert (b.id, b.field, b.value, b.severity) == ("b", "width", 10, "error")
    assert (c.id, c.severity, c.description) == ("c", "warn", "merged")
    assert a.id == "a"


def test_yaml_syntax_errors_are_one_line_naming_the_place() -> None:
    with pytest.raises(PolicyError) as info:
        load_policy("rules: [\n")
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith("policy: not valid YAML: while parsing a flow node")
    assert message.endswith("at line 2, column 1")


def test_default_policy_loads() -> None:
    policy = load_default_policy()
    assert policy.source == str(DEFAULT_POLICY_PATH)
    by_id = {rule.id: rule for rule in policy.rules}
    assert by_id["max_duration"].expected == "<= 3600"
    assert by_id["max_duration"].severity == "error"
    assert by_id["video_codec_supported"].expected == "in [h264, hevc, vp9, av1]"
    assert by_id["has_audio"].severity == "warn"
    assert by_id["min_height"].expected == ">= 240"
    assert by_id["max_width"].expected == "<= 7680"
    assert all(rule.field in FIELD_KINDS for rule in policy.rules)


def test_default_policy_on_a_good_and_a_bad_row() -> None:
    policy = load_default_policy()
    good = {
        "duration_s": 12.4, "video_codec": "h264", "width": 1920, "height": 1080,
        "fps": 29.97, "n_video_streams": 1, "n_audio_streams": 1, "probe_score": 100,
        "size_bytes": 10_000_000, "object_key": "a.mp4",
    }  # fmt: skip
    assert all(r.passed for r in evaluate(policy, good))
    bad = {**good, "duration_s": 4000.0, "video_codec": "mpeg4", "n_audio_streams": 0}
    failed = {r.rule_id: r for r in evaluate(policy, bad) if not r.passed}
    assert set(failed) == {"max_duration", "video_codec_supported", "has_audio"}
    assert failed["max_duration"].actual == "4000"
    assert failed["max_duration"].severity == "error"
    assert failed["video_codec_supported"].actual == "mpeg4"


def rule_result(body: str, row: dict[str, object]) -> CheckResult:
    (result,) = evaluate(load_policy(one_rule(body)), row)
    return result


@pytest.mark.parametrize(
    ("body", "value", "passed", "actual", "expected"),
    [
        ("field: duration_s\nmax: 3600", 3600.0, True, "3600", "<= 3600"),
        ("field: duration_s\nmax: 3600", 3600.5, False, "3600.5", "<= 3600"),
        ("field: duration_s\nmax: 3600", None, False, "null", "<= 3600"),
        ("field: height\nmin: 240", 240, True, "240", ">= 240"),
        ("field: height\nmin: 240", 144, False, "144", ">= 240"),
        ("field: height\nmin: 240", None, False, "null", ">= 240"),
        ("field: fps\nmax: 60.5", 59.94, True, "59.94", "<= 60.5"),
        ("field: video_codec\nin: [h264, hevc]", "hevc", True, "hevc", "in [h264, hevc]"),
        ("field: video_codec\nin: [h264, hevc]", "HEVC", False, "HEVC", "in [h264, hevc]"),
        ("field: video_codec\nin: [h264, hevc]", None, False, "null", "in [h264, hevc]"),
        ("field: audio_codec\nnot_in: [mp2]", "mp2", False, "mp2", "not in [mp2]"),
        ("field: audio_codec\nnot_in: [mp2]", "aac", True, "aac", "not in [mp2]"),
        ("field: audio_codec\nnot_in: [mp2]", None, True, "null", "not in [mp2]"),
        ("field: width\nin: [1920, 1280]", 1280, True, "1280", "in [1920, 1280]"),
        ("field: rotation\nequals: 0", 0, True, "0", "== 0"),
        ("field: rotation\nequals: 0", 90, False, "90", "== 0"),
        ("field: rotation\nequals: 0", None, False, "null", "== 0"),
        ("field: format_name\nequals: matroska,webm", "mov", False, "mov", "== matroska,webm"),
        ("field: size_bytes\nmax: 1000", 1001, False, "1001", "<= 1000"),
        ("field: object_key\nnot_in: [bad.mp4]", "ok.mp4", True, "ok.mp4", "not in [bad.mp4]"),
    ],
)
def test_each_condition(body: str, value: object, passed: bool, actual: str, expected: str) -> None:
    field = body.split("\n")[0].removeprefix("field: ")
    result = rule_result(f"id: r\n{body}\nseverity: warn\ndescription: d", {field: value})
    assert (result.passed, result.actual, result.expected) == (passed, actual, expected)
    assert (result.rule_id, result.field, result.severity, result.description) == (
        "r",
        field,
        "warn",
        "d",
    )


def test_missing_key_counts_as_null() -> None:
    result = rule_result("id: r\nfield: size_bytes\nmax: 10\nseverity: error", {})
    assert (result.passed, result.actual) == (False, "null")


def test_results_follow_policy_order() -> None:
    text = (
        "rules:\n"
        "  - {id: b, field: width, max: 10, severity: warn}\n"
        "  - {id: a, field: height, max: 10, severity: error}\n"
    )
    results = evaluate(load_policy(text), {"width": 5, "height": 50})
    assert [(r.rule_id, r.passed) for r in results] == [("b", True), ("a", False)]


def test_empty_rules_is_a_valid_policy() -> None:
    assert evaluate(load_policy("rules: []\n"), {"width": 1}) == []


# -- numbers must be finite (issue 10, item 7) -------------------------------------------------


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("field: duration_s\nmin: .nan", "min must be a finite number, got the number nan"),
        ("field: duration_s\nmax: .NaN", "max must be a finite number, got the number nan"),
        ("field: duration_s\nmax: .inf", "max must be a finite number, got the number inf"),
        ("field: duration_s\nmax: .Inf", "max must be a finite number, got the number inf"),
        ("field: height\nmin: -.inf", "min must be a finite number, got the number -inf"),
        # A float literal too large for a double is read as infinity by YAML.
        ("field: size_bytes\nmax: 1.0e+400", "max must be a finite number, got the number inf"),
        ("field: rotation\nequals: .nan", "equals must be a finite number, got the number nan"),
        (
            "field: width\nin: [1920, .nan]",
            "every item of in must be a finite number, got the number nan",
        ),
        (
            "field: width\nnot_in: [-.inf]",
            "every item of not_in must be a finite number, got the number -inf",
        ),
        # Numbers are never parsed from strings: "nan" and bare nan (a string in YAML) are text.
        ("field: duration_s\nmax: 'nan'", "max must be a number, got the string 'nan'"),
        ("field: duration_s\nmin: nan", "min must be a number, got the string 'nan'"),
        ("field: duration_s\nmax: inf", "max must be a number, got the string 'inf'"),
    ],
)
def test_nan_and_infinity_are_refused(body: str, message: str) -> None:
    with pytest.raises(PolicyError) as info:
        load_policy(one_rule(f"id: r\n{body}\nseverity: error"))
    assert str(info.value) == f"rule 'r': {message}"


def test_huge_integers_are_finite_and_compare_exactly() -> None:
    # YAML integers have no infinity; a huge one is a valid (if odd) bound.
    result = rule_result(
        f"id: r\nfield: size_bytes\nmax: {10**400}\nseverity: warn", {"size_bytes": 5}
    )
    assert result.passed


# -- the ids people write, and the Dagster check names derived from them (item 10) -----------


@pytest.mark.parametrize(
    "rule_id", ["max-duration", "codec.video", "R_001", "1080p-min", "_private", "a", "x" * 64]
)
def test_ids_people_write_are_accepted(rule_id: str) -> None:
    policy = load_policy(one_rule(f"id: '{rule_id}'\nfield: width\nmax: 1\nseverity: warn"))
    (rule,) = policy.rules
    assert rule.id == rule_id
    # Dagster's own rule for asset check names; a name Dagster takes as it is stays as it is.
    assert re.fullmatch(r"[A-Za-z0-9_]+", rule.check_name), rule.check_name
    assert (rule.check_name == rule_id) == bool(re.fullmatch(r"[A-Za-z0-9_]+", rule_id))
    (result,) = evaluate(policy, {"width": 2})
    assert (result.rule_id, result.passed) == (rule_id, False)


@pytest.mark.parametrize(
    ("rule_id", "shown"),
    [
        ("has space", "the string 'has space'"),
        ("-max", "the string '-max'"),
        (".hidden", "the string '.hidden'"),
        ("max/duration", "the string 'max/duration'"),
        ("durée", "the string 'durée'"),
        ("", "the string ''"),
        ("x" * (MAX_ID_LENGTH + 1), f"the string '{'x' * (MAX_ID_LENGTH + 1)}'"),
        ("a\\n", "the string 'a\\n'"),
    ],
)
def test_ids_outside_the_grammar_are_refused(rule_id: str, shown: str) -> None:
    body = f'id: "{rule_id}"\nfield: width\nmax: 1\nseverity: warn'
    with pytest.raises(PolicyError) as info:
        load_policy(one_rule(body))
    assert str(info.value) == (
        f"rule #1: id must be 1 to {MAX_ID_LENGTH} ASCII letters, digits, '_', '-' or '.', "
        f"starting with a letter, digit or '_', got {shown}"
    )


def test_check_names_are_the_id_when_dagster_accepts_it_else_derived_and_stable() -> None:
    assert check_name_for("max_duration") == "max_duration"
    assert check_name_for("R_001") == "R_001"
    # Pinned: a check renamed by a change here would lose its history in Dagster.
    assert check_name_for("max-duration") == "max_duration_a9065d52"
    assert check_name_for("codec.video") == "codec_video_e424b3ca"
    assert check_name_for("has-audio") == "has_audio_8da6e7eb"


def test_ids_that_sanitise_alike_get_distinct_check_names() -> None:
    text = "rules:\n" + "".join(
        f"  - {{id: '{rule_id}', field: duration_s, max: 3600, severity: error}}\n"
        for rule_id in ("max-duration", "max_duration", "max.duration", "max-duration-")
    )
    policy = load_policy(text)
    names = [rule.check_name for rule in policy.rules]
    assert len(set(names)) == 4, names
    assert names[1] == "max_duration"
    assert all(re.fullmatch(r"[A-Za-z0-9_]+", n) for n in names)
    # The ids themselves are untouched: they are what the checks table and verdicts keep.
    assert [r.id for r in policy.rules] == [
        "max-duration",
        "max_duration",
        "max.duration",
        "max-duration-",
    ]


def test_an_id_that_spells_another_rules_derived_name_is_refused() -> None:
    text = (
        "rules:\n"
        "  - {id: max-duration, field: duration_s, max: 3600, severity: error}\n"
        "  - {id: max_duration_a9065d52, field: duration_s, max: 60, severity: warn}\n"
    )
    with pytest.raises(PolicyError) as info:
        load_policy(text)
    assert str(info.value) == (
        "rule 'max_duration_a9065d52': its Dagster check name 'max_duration_a9065d52' is also "
        "that of rule 'max-duration'; rename one of them"
    )


# -- the rule-count limit and column-wise evaluation (item 9) -------------------------------


def many_rules(n: int) -> str:
    return "rules:\n" + "".join(
        f"  - {{id: r{i}, field: width, max: {i}, severity: warn}}\n" for i in range(n)
    )


def test_a_policy_of_max_rules_loads_and_one_more_is_refused(tmp_path: Path) -> None:
    assert MAX_RULES == 5000
    assert len(load_policy(many_rules(MAX_RULES)).rules) == MAX_RULES
    with pytest.raises(PolicyError) as info:
        load_policy(many_rules(MAX_RULES + 1))
    message = (
        f"policy: {MAX_RULES + 1} rules, more than the limit of {MAX_RULES} "
        "(every run evaluates every rule on each of its versions and lands a checks row "
        "per version and rule)"
    )
    assert str(info.value) == message
    assert "\n" not in message
    path = tmp_path / "big.yaml"
    path.write_text(many_rules(MAX_RULES + 1))
    with pytest.raises(PolicyError) as info:
        load_policy(path)
    assert str(info.value) == f"{path}: {message}"
    # Through EDVMP_POLICY, as the code location and the CLI read it.
    with pytest.raises(PolicyError) as info:
        configured_policy({"EDVMP_POLICY": str(path)})
    assert str(info.value) == f"EDVMP_POLICY: {path}: {message}"
    # Evaluation alone has no limit (the benchmark uses it).
    assert len(load_policy(many_rules(MAX_RULES + 1), max_rules=None).rules) == MAX_RULES + 1


def test_a_policy_of_max_rules_with_derived_check_names_loads_in_linear_time() -> None:
    """Ids that all need a derived name, and pairs that sanitise alike: the collision
    handling is a dict, not a scan per rule (5,000 rules in well under a second here)."""
    ids = [f"r-{i}" if i % 2 else f"r_{i - 1}" if i else "r.x" for i in range(MAX_RULES)]
    text = "rules:\n" + "".join(
        f"  - {{id: '{rule_id}', field: width, max: {i}, severity: warn}}\n"
        for i, rule_id in enumerate(ids)
    )
    t0 = time.perf_counter()
    policy = load_policy(text)
    seconds = time.perf_counter() - t0
    assert len({r.check_name for r in policy.rules}) == MAX_RULES
    assert seconds < 10, seconds  # generous: a quadratic check would take minutes


def test_small_policies_have_a_check_per_rule_and_big_ones_one_per_severity() -> None:
    assert GROUPING_THRESHOLD == 50
    at = load_policy(many_rules(GROUPING_THRESHOLD))
    groups = check_groups(at)
    assert list(groups) == [f"r{i}" for i in range(GROUPING_THRESHOLD)]
    assert all(rules == (rule,) for rule, rules in zip(at.rules, groups.values(), strict=True))

    text = many_rules(GROUPING_THRESHOLD + 1).replace(
        "{id: r7, field: width, max: 7, severity: warn}",
        "{id: r-7, field: width, max: 7, severity: error}",
    )
    above = load_policy(text)
    groups = check_groups(above)
    assert list(groups) == ["policy_error", "policy_warn"]
    assert [r.id for r in groups["policy_error"]] == ["r-7"]
    assert [r.id for r in groups["policy_warn"]] == [r.id for r in above.rules if r.id != "r-7"]
    # Only the severities the policy uses.
    assert list(check_groups(load_policy(many_rules(1000)))) == ["policy_warn"]
    assert GROUP_CHECK_NAMES == {"error": "policy_error", "warn": "policy_warn"}


@pytest.mark.parametrize("rule_id", ["policy_error", "policy_warn"])
def test_the_grouped_check_names_are_reserved(rule_id: str) -> None:
    severity = rule_id.removeprefix("policy_")
    with pytest.raises(PolicyError) as info:
        load_policy(one_rule(f"id: {rule_id}\nfield: width\nmax: 1\nseverity: warn"))
    assert str(info.value) == (
        f"rule {rule_id!r}: the id {rule_id!r} is reserved for the Dagster check of all "
        f"{severity} rules of a big policy; rename the rule"
    )
    # Only the exact names: a derived name always ends in _ and 8 hex digits.
    for other in ("policy-error", "policy_error_", "Policy_warn", "policy.warn"):
        text = one_rule(f"id: '{other}'\nfield: width\nmax: 1\nseverity: warn")
        assert load_policy(text).rules[0].check_name not in GROUP_CHECK_NAMES.values()


# Every condition, on rows that hold nulls, missing keys, ints for floats, strings in numeric
# fields and booleans: the column-wise path must give exactly what evaluate_rule gives.
MIXED_POLICY = """\
rules:
  - {id: a-min, field: height, min: 240, severity: warn}
  - {id: a.max, field: duration_s, max: 60.5, severity: error}
  - {id: in-num, field: width, in: [1920, 1280], severity: warn}
  - {id: in-str, field: video_codec, in: [h264, hevc], severity: warn}
  - {id: not-in, field: audio_codec, not_in: [mp2], severity: warn}
  - {id: eq-num, field: rotation, equals: 0, severity: warn}
  - {id: eq-str, field: format_name, equals: 'matroska,webm', severity: warn}
  - {id: same-field, field: height, max: 1080, severity: error}
"""
MIXED_ROWS = [
    {"height": 240, "duration_s": 60.5, "width": 1920.0, "video_codec": "h264",
     "audio_codec": "aac", "rotation": 0.0, "format_name": "matroska,webm"},
    {"height": 144, "duration_s": 61, "width": 1281, "video_codec": "HEVC", "audio_codec": "mp2",
     "rotation": 90, "format_name": "mov"},
    {"height": None, "duration_s": None, "width": None, "video_codec": None, "audio_codec": None,
     "rotation": None, "format_name": None},
    {},
    {"height": "1080", "duration_s": True, "width": "1920", "video_codec": 5, "rotation": False},
    {"height": 2160, "duration_s": float("nan"), "width": 1280, "audio_codec": "opus"},
]  # fmt: skip


def test_batch_evaluation_agrees_with_evaluate_rule() -> None:
    policy = load_policy(MIXED_POLICY)
    verdicts = evaluate_batch(policy.rules, MIXED_ROWS)
    for j, rule in enumerate(policy.rules):
        for i, row in enumerate(MIXED_ROWS):
            expected = evaluate_rule(rule, row)
            assert verdicts.passed[j][i] == expected.passed, (rule.id, row)
            assert verdicts.actual[rule.field][i] == expected.actual, (rule.id, row)
    # Spot checks that the agreement is about the documented semantics, not a shared bug.
    by_id = {r.id: verdicts.passed[j] for j, r in enumerate(policy.rules)}
    assert by_id["in-num"][:3] == [True, False, False]  # 1920.0 is in [1920, 1280]
    assert by_id["not-in"][2:4] == [True, True]  # null and missing pass not_in
    assert by_id["a-min"][4] is False  # the string "1080" is not a number
    assert by_id["a.max"][4] is False  # nor is a boolean
    assert by_id["a.max"][5] is False  # a NaN in the catalog fails a bound


def test_evaluate_rows_gives_one_checks_row_per_row_and_rule_in_order() -> None:
    policy = load_policy(MIXED_POLICY)
    rows = [
        {**row, "partition_key": f"pk{i}", "object_key": f"k{i}.mp4", "etag": f"e{i}"}
        for i, row in enumerate(MIXED_ROWS)
    ]
    check_rows, outcomes = evaluate_rows(policy.rules, rows)
    expected_rows = []
    for row in rows:
        for rule in policy.rules:
            result = evaluate_rule(rule, row)
            expected_rows.append(
                {
                    "partition_key": row["partition_key"],
                    "object_key": row["object_key"],
                    "etag": row["etag"],
                    "rule_id": rule.id,
                    "field": rule.field,
                    "severity": rule.severity,
                    "passed": result.passed,
                    "actual": result.actual,
                    "expected": result.expected,
                }
            )
    assert check_rows == expected_rows
    for outcome in outcomes:
        failing = [r for r in rows if not evaluate_rule(outcome.rule, r).passed]
        assert outcome.evaluated == len(rows)
        assert outcome.failing_partitions == [r["partition_key"] for r in failing]
        assert outcome.failing_keys == [r["object_key"] for r in failing]
    assert evaluate_rows(policy.rules, []) == ([], [type(outcomes[0])(r) for r in policy.rules])


def test_rules_pickle_and_compare_by_their_fields() -> None:
    # A rule carries its compiled test (a lambda, which pickle refuses on its own).
    (rule,) = load_policy(
        one_rule("id: max-duration\nfield: duration_s\nmax: 3600\nseverity: error")
    ).rules
    again = pickle.loads(pickle.dumps(rule))
    assert again == rule
    assert (again.passes(3600), again.passes(3600.5), again.passes(None)) == (True, False, False)
