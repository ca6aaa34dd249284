"""The compliance policy: YAML rules over the fields of a ``videos`` row.

A policy file looks like::

    version: 1            # optional
    rules:
      - id: max_duration
        field: duration_s
        max: 3600
        severity: error
        description: Videos longer than an hour are not accepted.

Each rule names one field of the ``videos`` record (the scalar fields of
:class:`~edvmp_pipeline.domain.records.VideoRecord` plus ``size_bytes`` and ``object_key``)
and exactly one condition: ``min``, ``max`` (numbers, inclusive), ``in``, ``not_in`` (non-empty
lists) or ``equals``. Loading is strict: a typo in a policy must fail loudly at load time rather
than silently check nothing, so every problem raises :class:`PolicyError` naming the rule.

Null values: a field whose value is missing or ``None`` *fails* ``min``, ``max``, ``in`` and
``equals`` rules (with actual ``"null"``) — an unknown duration has not been shown to be under
the limit — and *passes* ``not_in`` rules, since null is not one of the forbidden values.
String comparisons are exact and case-sensitive (ffprobe names are lower case).
"""

from __future__ import annotations

import os
import re
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import yaml

from edvmp_pipeline.domain.errors import ConfigError
from edvmp_pipeline.domain.records import VideoRecord

CONDITIONS = ("min", "max", "in", "not_in", "equals")
SEVERITIES = ("error", "warn")
DEFAULT_POLICY_PATH = Path(__file__).resolve().parent.parent / "default_policy.yaml"

# Rule ids become Dagster asset check names, which allow only letters, digits and underscores.
_RULE_ID = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_RULE_KEYS = {"id", "field", "severity", "description", *CONDITIONS}
_TOP_LEVEL_KEYS = {"version", "rules"}


def _field_kinds() -> dict[str, str]:
    """Field name → ``"number"`` or ``"string"`` for every field a rule may name."""
    hints = typing.get_type_hints(VideoRecord)
    kinds: dict[str, str] = {}
    for f in fields(VideoRecord):
        hint = hints[f.name]
        args = set(typing.get_args(hint)) if isinstance(hint, types.UnionType) else {hint}
        args.discard(type(None))
        if args <= {int, float}:
            kinds[f.name] = "number"
        elif args == {str}:
            kinds[f.name] = "string"
        # tags (dict) and streams (tuple) are not scalar columns: no rules on them.
    kinds["size_bytes"] = "number"
    kinds["object_key"] = "string"
    return kinds


FIELD_KINDS: dict[str, str] = _field_kinds()


class PolicyError(ConfigError):
    """The policy file is malformed; the message names the rule and the problem."""


@dataclass(frozen=True)
class Rule:
    """One compliance rule: ``field`` must satisfy ``condition`` (against ``value``)."""

    id: str
    field: str
    condition: str
    value: Any
    severity: str
    description: str | None = None

    @property
    def expected(self) -> str:
        """The condition in words: ``<= 3600``, ``in [h264, hevc]``, ``== 0``."""
        if self.condition == "min":
            return f">= {_show(self.value)}"
        if self.condition == "max":
            return f"<= {_show(self.value)}"
        if self.condition == "equals":
            return f"== {_show(self.value)}"
        items = ", ".join(_show(v) for v in self.value)
        return f"{'in' if self.condition == 'in' else 'not in'} [{items}]"


@dataclass(frozen=True)
class Policy:
    """A validated list of rules (ids unique)."""

    rules: tuple[Rule, ...]
    source: str | None = None


@dataclass(frozen=True)
class CheckResult:
    """The outcome of one rule on one row."""

    rule_id: str
    field: str
    severity: str
    passed: bool
    actual: str
    expected: str
    description: str | None = None


def _show(value: Any) -> str:
    """A value as text for ``actual``/``expected``: ``null``, ``true``, ``3600``, ``29.97``."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _is_number(value: Any) -> bool:
    # YAML reads "yes"/"true" as bool, and bool is an int subclass: do not accept it.
    return isinstance(value, int | float) and not isinstance(value, bool)


def _type_name(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    if _is_number(value):
        return f"the number {value!r}"
    return f"the string {value!r}" if isinstance(value, str) else type(value).__name__


def _check_scalar(label: str, condition: str, kind: str, value: Any, what: str) -> None:
    if kind == "number" and not _is_number(value):
        raise PolicyError(f"{label}: {what} must be a number, got {_type_name(value)}")
    if kind == "string" and not isinstance(value, str):
        raise PolicyError(f"{label}: {what} must be a string, got {_type_name(value)}")


def _parse_rule(index: int, raw: Any, seen: set[str]) -> Rule:
    label = f"rule #{index + 1}"
    if not isinstance(raw, dict):
        raise PolicyError(f"{label}: must be a mapping, got {_type_name(raw)}")

    rule_id = raw.get("id")
    if rule_id is None:
        raise PolicyError(f"{label}: missing id")
    if not isinstance(rule_id, str) or not _RULE_ID.match(rule_id):
        raise PolicyError(
            f"{label}: id must be letters, digits and underscores (not starting with a digit), "
            f"got {_type_name(rule_id)}"
        )
    label = f"rule {rule_id!r}"
    if rule_id in seen:
        raise PolicyError(f"{label}: duplicate id")

    for key in raw:
        if key not in _RULE_KEYS:
            raise PolicyError(
                f"{label}: unknown condition {key!r} "
                f"(conditions: {', '.join(CONDITIONS)}; other keys: id, field, severity, "
                "description)"
            )

    field_name = raw.get("field")
    if field_name is None:
        raise PolicyError(f"{label}: missing field")
    if not isinstance(field_name, str) or field_name not in FIELD_KINDS:
        raise PolicyError(
            f"{label}: unknown field {field_name!r} (fields: {', '.join(sorted(FIELD_KINDS))})"
        )
    kind = FIELD_KINDS[field_name]

    conditions = [c for c in CONDITIONS if c in raw]
    if not conditions:
        raise PolicyError(f"{label}: no condition (give exactly one of {', '.join(CONDITIONS)})")
    if len(conditions) > 1:
        raise PolicyError(
            f"{label}: two or more conditions ({', '.join(conditions)}); give exactly one"
        )
    condition = conditions[0]
    value = raw[condition]

    if condition in ("min", "max"):
        if not _is_number(value):
            raise PolicyError(f"{label}: {condition} must be a number, got {_type_name(value)}")
        if kind != "number":
            raise PolicyError(
                f"{label}: {condition} needs a numeric field, {field_name!r} is a string"
            )
    elif condition in ("in", "not_in"):
        if not isinstance(value, list):
            raise PolicyError(f"{label}: {condition} must be a list, got {_type_name(value)}")
        if not value:
            raise PolicyError(f"{label}: {condition} must not be empty")
        for item in value:
            _check_scalar(label, condition, kind, item, f"every item of {condition}")
        value = tuple(value)
    else:
        _check_scalar(label, condition, kind, value, condition)

    severity = raw.get("severity")
    if severity is None:
        raise PolicyError(f"{label}: missing severity (error or warn)")
    if severity not in SEVERITIES:
        raise PolicyError(
            f"{label}: bad severity {severity!r} (must be one of {', '.join(SEVERITIES)})"
        )

    description = raw.get("description")
    if description is not None and not isinstance(description, str):
        raise PolicyError(f"{label}: description must be a string, got {_type_name(description)}")

    seen.add(rule_id)
    return Rule(rule_id, field_name, condition, value, severity, description)


def parse_policy(data: Any, source: str | None = None) -> Policy:
    """Validate an already-parsed policy document (as YAML loads it) into a :class:`Policy`."""
    if not isinstance(data, dict):
        raise PolicyError(
            f"policy: the top level must be a mapping with a 'rules' list, got {_type_name(data)}"
        )
    for key in data:
        if key not in _TOP_LEVEL_KEYS:
            raise PolicyError(f"policy: unknown top-level key {key!r} (allowed: rules, version)")
    if "version" in data and (data["version"] != 1 or isinstance(data["version"], bool)):
        raise PolicyError(f"policy: unsupported version {data['version']!r} (only 1)")
    rules = data.get("rules")
    if not isinstance(rules, list):
        raise PolicyError(
            f"policy: 'rules' must be a list of rules, got "
            f"{'nothing' if rules is None else _type_name(rules)}"
        )
    seen: set[str] = set()
    return Policy(tuple(_parse_rule(i, raw, seen) for i, raw in enumerate(rules)), source)


def _looks_like_path(text: str) -> bool:
    # YAML text always has a newline or a colon-and-space ("rules: ..."); a path has neither
    # a newline nor, usually, ": ". Anything ending in .yaml/.yml is meant as a file.
    if "\n" in text:
        return False
    return text.endswith((".yaml", ".yml")) or os.path.isfile(text)


def load_policy(path_or_text: str | os.PathLike[str]) -> Policy:
    """Load and strictly validate a policy from a file path or from YAML text.

    A :class:`pathlib.Path` (or a one-line string naming an existing file or ending in
    ``.yaml``/``.yml``) is read as a file; any other string is parsed as YAML text.
    Raises :class:`PolicyError` for a missing file, bad YAML or any invalid rule.
    """
    source: str | None = None
    if isinstance(path_or_text, os.PathLike) or _looks_like_path(str(path_or_text)):
        path = Path(path_or_text)
        source = str(path)
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise PolicyError(f"policy file not found: {path}") from None
        except OSError as exc:
            raise PolicyError(f"policy file {path} could not be read: {exc}") from exc
    else:
        text = str(path_or_text)
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        where = source or "policy"
        raise PolicyError(f"{where}: not valid YAML: {exc}") from exc
    try:
        return parse_policy(data, source)
    except PolicyError as exc:
        if source is None:
            raise
        raise PolicyError(f"{source}: {exc}") from None


def load_default_policy() -> Policy:
    """The policy shipped with the package (``edvmp_pipeline/default_policy.yaml``)."""
    return load_policy(DEFAULT_POLICY_PATH)


POLICY_ENV = "EDVMP_POLICY"


def configured_policy(environ: Mapping[str, str] | None = None) -> Policy:
    """The policy file named by ``EDVMP_POLICY``, else the packaged default.

    Raises :class:`PolicyError` (message prefixed with the variable name) for a missing or
    malformed file, so a bad setting stops the code location from loading.
    """
    env = os.environ if environ is None else environ
    value = (env.get(POLICY_ENV) or "").strip()
    if not value:
        return load_default_policy()
    try:
        return load_policy(Path(value).expanduser())
    except PolicyError as exc:
        raise PolicyError(f"{POLICY_ENV}: {exc.reason}") from None


def _passes(rule: Rule, value: Any) -> bool:
    if value is None:
        return rule.condition == "not_in"
    if rule.condition == "min":
        return _is_number(value) and value >= rule.value
    if rule.condition == "max":
        return _is_number(value) and value <= rule.value
    if rule.condition == "in":
        return value in rule.value
    if rule.condition == "not_in":
        return value not in rule.value
    return bool(value == rule.value)


def evaluate_rule(rule: Rule, row: dict[str, Any]) -> CheckResult:
    """Check one rule against one ``videos`` row; a missing key counts as null."""
    value = row.get(rule.field)
    return CheckResult(
        rule_id=rule.id,
        field=rule.field,
        severity=rule.severity,
        passed=_passes(rule, value),
        actual=_show(value),
        expected=rule.expected,
        description=rule.description,
    )


def evaluate(policy: Policy, row: dict[str, Any]) -> list[CheckResult]:
    """Check every rule of ``policy`` against ``row``, in policy order."""
    return [evaluate_rule(rule, row) for rule in policy.rules]
