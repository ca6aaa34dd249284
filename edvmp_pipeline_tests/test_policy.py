"""Loading (strictly) and evaluating the YAML compliance policy."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from edvmp_pipeline.domain.errors import ConfigError
from edvmp_pipeline.domain.policy import (
    DEFAULT_POLICY_PATH,
    FIELD_KINDS,
    CheckResult,
    PolicyError,
    evaluate,
    load_default_policy,
    load_policy,
)


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
