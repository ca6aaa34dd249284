"""Policies as people outside the project write them: YAML spellings of numbers, words YAML
turns into booleans or dates, and fields the catalog does not hold."""

from __future__ import annotations

import pytest

from edvmp_pipeline.domain.policy import FIELD_KINDS, PolicyError, evaluate_rule, load_policy


def _rule_policy(field: str, condition: str, value: str, severity: str = "error") -> str:
    return f"rules:\n  - {{id: r, field: {field}, {condition}: {value}, severity: {severity}}}\n"


@pytest.mark.parametrize(
    ("written", "number"),
    [
        # YAML 1.1 (PyYAML's) reads all of these as strings; YAML 1.2 and people read numbers.
        ("1e6", 1_000_000.0),
        ("5E9", 5_000_000_000.0),
        ("1.5e6", 1_500_000.0),
        ("-2e-3", -0.002),
        ("+3e+2", 300.0),
        (".25e1", 2.5),
        ("1_000e3", 1_000_000.0),
        # What YAML 1.1 already read as floats is unchanged.
        ("1.5e+6", 1_500_000.0),
        ("2.5", 2.5),
    ],
)
def test_exponent_notation_is_a_number(written: str, number: float) -> None:
    (rule,) = load_policy(_rule_policy("bit_rate", "max", written)).rules
    assert rule.value == number and isinstance(rule.value, float)


def test_exponent_limits_give_the_verdicts_they_say() -> None:
    (rule,) = load_policy(_rule_policy("bit_rate", "max", "1e6")).rules
    assert rule.expected == "<= 1000000"
    assert evaluate_rule(rule, {"bit_rate": 1_000_000}).passed
    over = evaluate_rule(rule, {"bit_rate": 1_879_468})
    assert not over.passed and over.actual == "1879468"
    (rule,) = load_policy(_rule_policy("size_bytes", "in", "[4e5, 1e3]")).rules
    assert rule.value == (400_000.0, 1000.0)
    assert evaluate_rule(rule, {"size_bytes": 400_000}).passed


def test_exponent_overflow_and_quoted_exponents_are_refused() -> None:
    # 1e309 is a float that overflows to inf: a typo, refused like .inf (it was the string
    # '1e309' before, refused as "not a number", which hid the cause).
    with pytest.raises(PolicyError, match=r"^rule 'r': max must be a finite number, got "):
        load_policy(_rule_policy("duration_s", "max", "1e309"))
    # Quoted, it is text: never parsed into a number.
    with pytest.raises(PolicyError, match=r"max must be a number, got the string '1e6'"):
        load_policy(_rule_policy("duration_s", "max", '"1e6"'))
    # ...and text where a string field wants one.
    (rule,) = load_policy(_rule_policy("video_codec", "not_in", '["1e3"]')).rules
    assert rule.value == ("1e3",)


@pytest.mark.parametrize(
    ("value", "shown"),
    [("yes", "true"), ("off", "false"), ("On", "true"), ("NO", "false")],
)
def test_yaml_booleans_in_a_string_rule_name_the_value_and_the_cure(value: str, shown: str) -> None:
    with pytest.raises(PolicyError) as info:
        load_policy(_rule_policy("interlace", "in", f"[progressive, {value}]"))
    message = str(info.value)
    assert message.startswith(
        f"rule 'r': every item of in must be a string, got a boolean ({shown};"
    )
    assert "quote" in message and "\n" not in message


def test_a_yaml_date_is_named_as_a_date() -> None:
    with pytest.raises(PolicyError) as info:
        load_policy(_rule_policy("format_name", "equals", "2024-01-01"))
    assert str(info.value) == (
        "rule 'r': equals must be a string, got the date 2024-01-01 "
        "(quote it if it is meant as text)"
    )


def test_the_raw_ffprobe_json_is_not_a_rule_field() -> None:
    # The videos view leaves it out: `edvmp check` read null where a run read the text.
    assert "ffprobe_json" not in FIELD_KINDS
    with pytest.raises(PolicyError, match=r"^rule 'j': unknown field 'ffprobe_json' \(fields: "):
        load_policy("rules:\n  - {id: j, field: ffprobe_json, not_in: ['{}'], severity: warn}\n")


def test_list_items_that_would_read_as_others_are_quoted_in_expected() -> None:
    policy = load_policy(
        "rules:\n"
        "  - {id: fmt, field: format_name, in: ['mov,mp4,m4a,3gp,3g2,mj2', 'matroska,webm']"
        ", severity: warn}\n"
        "  - {id: odd, field: video_codec, not_in: ['null', ' h264', '', 'a]b', h264]"
        ", severity: warn}\n"
    )
    fmt, odd = policy.rules
    assert fmt.expected == 'in ["mov,mp4,m4a,3gp,3g2,mj2", "matroska,webm"]'
    assert odd.expected == 'not in ["null", " h264", "", "a]b", h264]'
    # The verdicts are the values', not the display's.
    assert evaluate_rule(fmt, {"format_name": "matroska,webm"}).passed
    assert not evaluate_rule(fmt, {"format_name": "webm"}).passed
    assert evaluate_rule(odd, {"video_codec": None}).passed
