"""The compliance policy: YAML rules over the fields of a ``videos`` row.

A policy file looks like::

    version: 1            # optional
    rules:
      - id: max-duration
        field: duration_s
        max: 3600
        severity: error
        description: Videos longer than an hour are not accepted.

Each rule names one field of the ``videos`` record (the scalar fields of
:class:`~edvmp_pipeline.domain.records.VideoRecord` plus ``size_bytes`` and ``object_key``), or
one the video analysis measures (:data:`ANALYSIS_FIELD_KINDS`, with ``EDVMP_ANALYSIS=on``),
and exactly one condition: ``min``, ``max`` (numbers, inclusive), ``in``, ``not_in`` (non-empty
lists) or ``equals``. Loading is strict: a typo in a policy must fail loudly at load time rather
than silently check nothing, so every problem raises :class:`PolicyError` naming the rule.

Rule ids are what people write (``max-duration``, ``codec.video``, ``R_001``): 1 to
:data:`MAX_ID_LENGTH` ASCII letters, digits, ``_``, ``-`` and ``.``, starting with a letter,
digit or underscore. The id is what the ``checks`` table, the verdict index and
``edvmp check`` show; the Dagster asset check gets :func:`check_name_for` of it, since
Dagster names allow only ``[A-Za-z0-9_]``. Numbers in rules must be finite: ``.nan`` or
``.inf`` would make a rule that every video fails (or none), which is a typo, not a policy.

How a policy reaches Dagster depends on its size (:func:`check_groups`). Each Dagster asset
check costs every run about three event-log writes (evaluation planned, step output,
evaluation), measured at about 73 ms per check on the SQLite instance whatever the number of
versions (a run with 0, 10 and 100 checks took 0.56, 1.49 and 7.90 s), and the event path
runs one version per run. So a policy of up to :data:`GROUPING_THRESHOLD` rules has one check
per rule, named :func:`check_name_for` of its id; a bigger one has one check per severity it
uses, :data:`GROUP_CHECK_NAMES` (``policy_error``, ``policy_warn``), whose result covers every
rule of that severity: past the threshold the run's Dagster cost is at most two checks however
many rules there are. Those two names are reserved: a rule may not be called ``policy_error``
or ``policy_warn`` (a derived name always ends in ``_`` and 8 hex digits, so only the id
itself could take them), or a policy growing past the threshold would hand a rule's check
history to a group.

A policy has at most :data:`MAX_RULES` rules, and loading refuses a bigger one. What bounds it
now is the work per version, not Dagster: every rule is evaluated on every version a run
checks and lands one ``checks`` row per (version, rule), so 5,000 rules × 1,000 versions is
five million rows for one run (``benchmarks/policy_scale.py`` measures it). Loading and
evaluation are linear in the number of rules (ids and check names are checked with sets,
evaluation is column-wise).

Null values: a field whose value is missing or ``None`` *fails* ``min``, ``max``, ``in`` and
``equals`` rules (with actual ``"null"``) — an unknown duration has not been shown to be under
the limit — and *passes* ``not_in`` rules, since null is not one of the forbidden values.
String comparisons are exact and case-sensitive (ffprobe names are lower case).
"""

from __future__ import annotations

import dataclasses
import datetime
import hashlib
import json
import math
import os
import re
import stat
import types
import typing
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import yaml

from edvmp_pipeline.domain.errors import ConfigError
from edvmp_pipeline.domain.records import VideoRecord

CONDITIONS = ("min", "max", "in", "not_in", "equals")
SEVERITIES = ("error", "warn")
DEFAULT_POLICY_PATH = Path(__file__).resolve().parent.parent / "default_policy.yaml"

# Long enough for any descriptive id, short enough for a table column and a check name.
MAX_ID_LENGTH = 64
# See the module doc: the work per (version, rule) of a run sets this; Dagster's cost is
# bounded by GROUPING_THRESHOLD.
MAX_RULES = 5000
# Up to this many rules, one Dagster asset check per rule; above it, one per severity.
GROUPING_THRESHOLD = 50
# The Dagster check of all rules of one severity, for a policy past GROUPING_THRESHOLD. No
# rule may have one of these as its check name (parse_policy refuses it).
GROUP_CHECK_NAMES = {"error": "policy_error", "warn": "policy_warn"}
_RULE_ID = re.compile(rf"^[A-Za-z0-9_][A-Za-z0-9_.-]{{0,{MAX_ID_LENGTH - 1}}}$")
# What Dagster accepts as an asset check name (its definition-name validation).
_CHECK_NAME = re.compile(r"^[A-Za-z0-9_]+$")
_NOT_IN_CHECK_NAME = re.compile(r"[^A-Za-z0-9_]")
_RULE_KEYS = {"id", "field", "severity", "description", *CONDITIONS}
_TOP_LEVEL_KEYS = {"version", "rules"}
# The most bytes of policy YAML (a file or text) loading reads. A 5,000-rule (MAX_RULES)
# policy written as in the module doc, with a description per rule, is about 0.7 MB; with
# 64-character ids, a seven-item `in` list and a long description per rule about 1.3 MB.
# 4 MiB is three times that, and stops a wrong path (/dev/zero, a video) being read without end.
MAX_POLICY_BYTES = 4 * 1024 * 1024

# libyaml when installed: the same safe loader (same types), several times faster.
_BASE_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_MERGE_TAG = "tag:yaml.org,2002:merge"


class _SafeLoader(_BASE_LOADER):  # type: ignore[misc, valid-type]
    """The safe loader, refusing a mapping that repeats a key (YAML would keep the last one
    silently: a rule's second ``min:`` would quietly replace its first)."""

    def flatten_mapping(self, node: Any) -> None:
        # Every mapping passes here before it is built, and so does a mapping merged into
        # another (<<), possibly first: check each node's own keys once, before the merge
        # rewrites them (a key written next to << rightly overrides the merged one).
        checked = self.__dict__.setdefault("_edvmp_checked", set())
        if id(node) not in checked:
            checked.add(id(node))
            first_line: dict[Any, int] = {}
            for key_node, _ in node.value:
                if key_node.tag == _MERGE_TAG:
                    continue
                key = self.construct_object(key_node, deep=False)
                line = key_node.start_mark.line + 1
                try:
                    if key in first_line:
                        raise yaml.constructor.ConstructorError(
                            None,
                            None,
                            f"duplicate key {key!r} at line {line} "
                            f"(first at line {first_line[key]})",
                        )
                except TypeError:
                    continue  # unhashable: the base class refuses it with its own message
                first_line[key] = line
        super().flatten_mapping(node)


# YAML 1.1 (PyYAML) reads a float only with a dot and a signed exponent, so `max: 1e6`,
# `5E9` and `1.5e6` were the strings '1e6', '5E9', '1.5e6' and the rule was refused as "not a
# number". YAML 1.2 and every other YAML library read them as numbers, and so do people
# writing byte and bit-rate limits: resolve them as floats (a quoted "1e6" stays text, and
# 1e309 reads as inf, which the finite check refuses).
_SafeLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*(?:\.[0-9_]*)?|\.[0-9][0-9_]*)[eE][-+]?[0-9]+$"),
    list("-+0123456789."),
)
_SAFE_LOADER = _SafeLoader


# VideoRecord fields the `videos` view leaves out. ffprobe_json (the raw probe, kilobytes of
# JSON) is landed beside the row: `edvmp check` read it as null while a run's step read the
# text, so one rule gave two verdicts, and the checks table stored the whole JSON as `actual`.
_NOT_IN_VIDEOS = frozenset({"ffprobe_json"})


def _field_kinds() -> dict[str, str]:
    """Field name → ``"number"`` or ``"string"`` for every field a rule may name."""
    hints = typing.get_type_hints(VideoRecord)
    kinds: dict[str, str] = {}
    for f in fields(VideoRecord):
        if f.name in _NOT_IN_VIDEOS:
            continue
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


# Fields the video analysis measures (EDVMP_ANALYSIS=on; see domain/media_analysis.py):
# the loudness figures are the first audio stream's; ``near_duplicates`` counts the versions
# of *other* objects, analysed before this one, that it is a near-duplicate of.
ANALYSIS_FIELD_KINDS: dict[str, str] = {
    "integrated_lufs": "number",
    "loudness_range_lu": "number",
    "true_peak_dbtp": "number",
    "leading_black_s": "number",
    "trailing_black_s": "number",
    "black_total_s": "number",
    "freeze_total_s": "number",
    "scene_cut_count": "number",
    "decode_errors": "number",
    "interlace": "string",
    "hdr_class": "string",
    "near_duplicates": "number",
}

FIELD_KINDS: dict[str, str] = {**_field_kinds(), **ANALYSIS_FIELD_KINDS}


class PolicyError(ConfigError):
    """The policy file is malformed; the message names the rule and the problem."""


def check_name_for(rule_id: str) -> str:
    """The Dagster asset check name of a rule id.

    An id Dagster accepts (``[A-Za-z0-9_]+``) is its own name. Any other id has each other
    character replaced by ``_`` and 8 hex digits of its SHA-256 appended, so that
    ``max-duration`` and ``max_duration`` in one policy are two checks, and the name of a
    rule never depends on the other rules (it survives adding or removing one).
    """
    if _CHECK_NAME.fullmatch(rule_id):
        return rule_id
    digest = hashlib.sha256(rule_id.encode("utf-8")).hexdigest()[:8]
    return f"{_NOT_IN_CHECK_NAME.sub('_', rule_id)}_{digest}"


@dataclass(frozen=True)
class Rule:
    """One compliance rule: ``field`` must satisfy ``condition`` (against ``value``)."""

    id: str
    field: str
    condition: str
    value: Any
    severity: str
    description: str | None = None
    # The condition compiled once (evaluation calls it for every row); not part of equality.
    _test: Callable[[Any], bool] = dataclasses.field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_test", _predicate(self.condition, self.value))

    def __reduce__(self) -> tuple[Any, ...]:
        # The compiled test is a lambda, which pickle refuses: rebuild it from the fields.
        return (
            Rule,
            (self.id, self.field, self.condition, self.value, self.severity, self.description),
        )

    @property
    def check_name(self) -> str:
        """The name of this rule's Dagster asset check (see :func:`check_name_for`)."""
        return check_name_for(self.id)

    def passes(self, value: Any) -> bool:
        """Whether one field value satisfies the rule (null as the module doc says)."""
        return self._test(value)

    @property
    def expected(self) -> str:
        """The condition in words: ``<= 3600``, ``in [h264, hevc]``, ``== 0``."""
        if self.condition == "min":
            return f">= {_show(self.value)}"
        if self.condition == "max":
            return f"<= {_show(self.value)}"
        if self.condition == "equals":
            return f"== {_show(self.value)}"
        items = ", ".join(_show_item(v) for v in self.value)
        return f"{'in' if self.condition == 'in' else 'not in'} [{items}]"


@dataclass(frozen=True)
class Policy:
    """A validated list of rules (ids and their Dagster check names unique)."""

    rules: tuple[Rule, ...]
    source: str | None = None

    @property
    def analysis_rules(self) -> tuple[Rule, ...]:
        """The rules on fields only the video analysis measures."""
        return tuple(r for r in self.rules if r.field in ANALYSIS_FIELD_KINDS)

    def without_analysis_rules(self) -> Policy:
        """This policy with its analysis rules left out."""
        return Policy(tuple(r for r in self.rules if r.field not in ANALYSIS_FIELD_KINDS),
                      self.source)  # fmt: skip


def rules_digest(rules: Sequence[Rule]) -> str:
    """A digest of what ``rules`` decide: each rule's id, field, condition and value (not
    its severity or description, which change no verdict), independent of rule order.

    The verdict index holds verdicts of versions checked under some set of rules; when this
    digest changes (a rule added, changed under the same id, or the analysis turned on), the
    verdicts held no longer answer for the policy in force.
    """
    decided = sorted(
        [r.id, r.field, r.condition, list(r.value) if isinstance(r.value, tuple) else r.value]
        for r in rules
    )
    text = json.dumps(decided, default=str, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


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


def _show_item(value: Any) -> str:
    """One item of an ``in``/``not_in`` list as ``expected`` shows it: as :func:`_show`, but
    a string that would read as something else is JSON-quoted. ffprobe's format names hold
    commas (``in [mov,mp4,m4a,3gp,3g2,mj2, matroska,webm]`` read as eight codecs), and an item
    "null" or " h264" looked like a null or like "h264"."""
    if isinstance(value, str) and (
        not value
        or value != value.strip()
        or any(c in value for c in ',[]"')
        or value in ("null", "true", "false")
    ):
        return json.dumps(value, ensure_ascii=False)
    return _show(value)


def _is_number(value: Any) -> bool:
    # YAML reads "yes"/"true" as bool, and bool is an int subclass: do not accept it.
    return isinstance(value, int | float) and not isinstance(value, bool)


def _type_name(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        # YAML 1.1 reads unquoted yes/no/on/off/true/false as booleans: `in: [on, off]`
        # is two booleans, and the plain "got a boolean" named neither the value nor the cure.
        return (
            f"a boolean ({'true' if value else 'false'}; YAML reads unquoted yes, no, on, off, "
            "true and false as booleans: quote a word meant as text)"
        )
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, datetime.date):
        # YAML reads an unquoted 2024-01-01 as a date, which no field holds.
        return f"the date {value.isoformat()} (quote it if it is meant as text)"
    if _is_number(value):
        return f"the number {value!r}"
    return f"the string {value!r}" if isinstance(value, str) else type(value).__name__


def _is_finite(value: Any) -> bool:
    # Only floats can be nan/inf; math.isfinite would overflow on a huge YAML integer.
    return not isinstance(value, float) or math.isfinite(value)


def _check_number(label: str, value: Any, what: str) -> None:
    if not _is_number(value):
        raise PolicyError(f"{label}: {what} must be a number, got {_type_name(value)}")
    if not _is_finite(value):
        raise PolicyError(f"{label}: {what} must be a finite number, got {_type_name(value)}")


def _check_scalar(label: str, condition: str, kind: str, value: Any, what: str) -> None:
    if kind == "number":
        _check_number(label, value, what)
    if kind == "string" and not isinstance(value, str):
        raise PolicyError(f"{label}: {what} must be a string, got {_type_name(value)}")


def _parse_rule(index: int, raw: Any, seen: set[str]) -> Rule:
    label = f"rule #{index + 1}"
    if not isinstance(raw, dict):
        raise PolicyError(f"{label}: must be a mapping, got {_type_name(raw)}")

    rule_id = raw.get("id")
    if rule_id is None:
        raise PolicyError(f"{label}: missing id")
    # fullmatch: "$" alone would let a trailing newline through.
    if not isinstance(rule_id, str) or not _RULE_ID.fullmatch(rule_id):
        raise PolicyError(
            f"{label}: id must be 1 to {MAX_ID_LENGTH} ASCII letters, digits, '_', '-' or '.', "
            f"starting with a letter, digit or '_', got {_type_name(rule_id)}"
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
        _check_number(label, value, condition)
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


def parse_policy(
    data: Any, source: str | None = None, *, max_rules: int | None = MAX_RULES
) -> Policy:
    """Validate an already-parsed policy document (as YAML loads it) into a :class:`Policy`.

    ``max_rules`` (default :data:`MAX_RULES`; None for no limit, which only benchmarks of
    evaluation want) bounds the number of rules.
    """
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
    if max_rules is not None and len(rules) > max_rules:
        raise PolicyError(
            f"policy: {len(rules)} rules, more than the limit of {max_rules} "
            "(every run evaluates every rule on each of its versions and lands a checks row "
            "per version and rule)"
        )
    seen: set[str] = set()
    parsed = tuple(_parse_rule(i, raw, seen) for i, raw in enumerate(rules))
    named: dict[str, str] = {}
    reserved = {name: severity for severity, name in GROUP_CHECK_NAMES.items()}
    for rule in parsed:
        name = rule.check_name
        if name in reserved:
            raise PolicyError(
                f"rule {rule.id!r}: the id {name!r} is reserved for the Dagster check of all "
                f"{reserved[name]} rules of a big policy; rename the rule"
            )
        other = named.setdefault(name, rule.id)
        if other != rule.id:
            # Only an id written to look like another's derived name can get here.
            raise PolicyError(
                f"rule {rule.id!r}: its Dagster check name {rule.check_name!r} is also that "
                f"of rule {other!r}; rename one of them"
            )
    return Policy(parsed, source)


def check_groups(policy: Policy) -> dict[str, tuple[Rule, ...]]:
    """The policy's Dagster asset checks: check name → the rules its result covers.

    Up to :data:`GROUPING_THRESHOLD` rules, one check per rule (``rule.check_name`` → that
    rule); above it, one check per severity the policy uses (:data:`GROUP_CHECK_NAMES`) →
    its rules, in policy order. See the module doc for why.
    """
    if len(policy.rules) <= GROUPING_THRESHOLD:
        return {rule.check_name: (rule,) for rule in policy.rules}
    by_severity: dict[str, list[Rule]] = {}
    for rule in policy.rules:
        by_severity.setdefault(rule.severity, []).append(rule)
    return {
        GROUP_CHECK_NAMES[severity]: tuple(by_severity[severity])
        for severity in SEVERITIES
        if severity in by_severity
    }


def _looks_like_path(text: str) -> bool:
    # YAML text always has a newline or a colon-and-space ("rules: ..."); a path has neither
    # a newline nor, usually, ": ". Anything ending in .yaml/.yml is meant as a file.
    if "\n" in text:
        return False
    return text.endswith((".yaml", ".yml")) or os.path.isfile(text)


def _file_kind(mode: int) -> str:
    for test, kind in (
        (stat.S_ISDIR, "a directory"),
        (stat.S_ISFIFO, "a FIFO"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISSOCK, "a socket"),
    ):
        if test(mode):
            return kind
    return "not a regular file"


def _read_policy_file(path: Path) -> str:
    """The text of a policy file: a regular file of at most :data:`MAX_POLICY_BYTES` bytes
    of UTF-8, else :class:`PolicyError`."""
    try:
        # O_NONBLOCK: opening a FIFO must not wait for a writer (it is refused just below).
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except FileNotFoundError:
        raise PolicyError(f"policy file not found: {path}") from None
    except OSError as exc:
        raise PolicyError(f"policy file {path} could not be read: {exc}") from exc
    mode = os.fstat(fd).st_mode
    if not stat.S_ISREG(mode):
        os.close(fd)
        raise PolicyError(
            f"policy file {path} is {_file_kind(mode)}, not a regular file: a YAML policy is "
            "expected"
        )
    with os.fdopen(fd, "rb") as fh:
        try:
            data = fh.read(MAX_POLICY_BYTES + 1)
        except OSError as exc:
            raise PolicyError(f"policy file {path} could not be read: {exc}") from exc
    if len(data) > MAX_POLICY_BYTES:
        raise PolicyError(f"policy file {path} is over {MAX_POLICY_BYTES} bytes")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise PolicyError(
            f"policy file {path} is not UTF-8 text (byte {exc.start}): a YAML policy is expected"
        ) from None


def _yaml_problem(exc: yaml.YAMLError) -> str:
    """A YAML error on one line: what is wrong and where (PyYAML's text spans lines)."""
    if not isinstance(exc, yaml.MarkedYAMLError):
        return " ".join(str(exc).split())
    what = "; ".join(" ".join(p.split()) for p in (exc.context, exc.problem) if p)
    mark = exc.problem_mark or exc.context_mark
    if mark is not None:
        what += f" at line {mark.line + 1}, column {mark.column + 1}"
    return what


def load_policy(
    path_or_text: str | os.PathLike[str], *, max_rules: int | None = MAX_RULES
) -> Policy:
    """Load and strictly validate a policy from a file path or from YAML text.

    A :class:`pathlib.Path` (or a one-line string naming an existing file or ending in
    ``.yaml``/``.yml``) is read as a file; any other string is parsed as YAML text.
    Raises :class:`PolicyError` for a missing file, one that is not a regular file (a FIFO, a
    device), more than :data:`MAX_POLICY_BYTES` bytes of file or text, bad YAML (a key
    repeated in a mapping included), any invalid rule or more than ``max_rules`` rules (see
    :func:`parse_policy`).
    """
    source: str | None = None
    if isinstance(path_or_text, os.PathLike) or _looks_like_path(str(path_or_text)):
        path = Path(path_or_text)
        source = str(path)
        text = _read_policy_file(path)
    else:
        text = str(path_or_text)
        # len() first: a text of more characters than the cap is over it in any encoding.
        if (
            len(text) > MAX_POLICY_BYTES
            or len(text.encode("utf-8", "surrogatepass")) > MAX_POLICY_BYTES
        ):
            raise PolicyError(f"policy: the policy text is over {MAX_POLICY_BYTES} bytes")
    try:
        # bandit B506 waived: _SAFE_LOADER is a yaml.SafeLoader subclass
        data = yaml.load(text, Loader=_SAFE_LOADER)  # nosec B506
    except yaml.YAMLError as exc:
        where = source or "policy"
        raise PolicyError(f"{where}: not valid YAML: {_yaml_problem(exc)}") from exc
    try:
        return parse_policy(data, source, max_rules=max_rules)
    except PolicyError as exc:
        if source is None:
            raise
        raise PolicyError(f"{source}: {exc}") from None


def load_default_policy(*, analysis: bool = False) -> Policy:
    """The policy shipped with the package (``edvmp_pipeline/default_policy.yaml``); its
    opt-in analysis rules only with ``analysis`` (the video analysis runs)."""
    policy = load_policy(DEFAULT_POLICY_PATH)
    return policy if analysis else policy.without_analysis_rules()


POLICY_ENV = "EDVMP_POLICY"


def configured_policy(
    environ: Mapping[str, str] | None = None, *, analysis: bool = False
) -> Policy:
    """The policy file named by ``EDVMP_POLICY``, else the packaged default.

    ``analysis`` says whether the video analysis runs (``EDVMP_ANALYSIS``). Without it the
    default policy's analysis rules (its opt-in examples) are left out, and a configured
    policy naming an analysis field is refused: its rules would fail every version on a
    null no run ever fills.

    Raises :class:`PolicyError` (message prefixed with the variable name) for a missing or
    malformed file, so a bad setting stops the code location from loading.
    """
    env = os.environ if environ is None else environ
    value = (env.get(POLICY_ENV) or "").strip()
    if not value:
        return load_default_policy(analysis=analysis)
    try:
        policy = load_policy(Path(value).expanduser())
    except PolicyError as exc:
        raise PolicyError(f"{POLICY_ENV}: {exc.reason}") from None
    return require_measured(policy, POLICY_ENV, analysis=analysis)


def require_measured(policy: Policy, where: str, *, analysis: bool) -> Policy:
    """``policy`` itself, unless it names an analysis field while the analysis is off.

    Such a rule would read null for every version and fail them all; that is refused
    (:class:`PolicyError` prefixed with ``where``, the variable or file the policy came
    from) rather than reported as violations.
    """
    if not analysis and policy.analysis_rules:
        rule = policy.analysis_rules[0]
        raise PolicyError(
            f"{where}: rule {rule.id!r} checks {rule.field}, which only the video "
            "analysis measures; set EDVMP_ANALYSIS=on or drop the rule"
        )
    return policy


def _predicate(condition: str, target: Any) -> Callable[[Any], bool]:
    """The test of one value for a condition: null fails all but ``not_in``."""
    # _is_number inlined: these run once per (row, rule), and a call costs as much as the test.
    if condition == "min":
        return lambda v: isinstance(v, int | float) and not isinstance(v, bool) and v >= target
    if condition == "max":
        return lambda v: isinstance(v, int | float) and not isinstance(v, bool) and v <= target
    if condition in ("in", "not_in"):
        # A set: a long list costs one lookup per value, not one comparison per item. Field
        # values are str or numbers (hashable), and 1 == 1.0 hash alike, as `in` on a tuple.
        members = frozenset(target)
        if condition == "in":
            return lambda v: v is not None and v in members
        return lambda v: v is None or v not in members
    return lambda v: v is not None and bool(v == target)


def evaluate_rule(rule: Rule, row: Mapping[str, Any]) -> CheckResult:
    """Check one rule against one ``videos`` row; a missing key counts as null."""
    value = row.get(rule.field)
    return CheckResult(
        rule_id=rule.id,
        field=rule.field,
        severity=rule.severity,
        passed=rule.passes(value),
        actual=_show(value),
        expected=rule.expected,
        description=rule.description,
    )


@dataclass(frozen=True)
class BatchVerdicts:
    """Every rule on every row of a batch, column by column (what a run's step needs)."""

    rules: tuple[Rule, ...]
    passed: tuple[list[bool], ...]
    """Per rule (in ``rules`` order), per row: whether the row passes it."""
    actual: dict[str, list[str]]
    """Per field some rule names, per row: the value as ``CheckResult.actual`` shows it."""


def evaluate_batch(rules: Sequence[Rule], rows: Sequence[Mapping[str, Any]]) -> BatchVerdicts:
    """Check every rule against every row, the same verdicts as :func:`evaluate_rule`.

    Column-wise: each field is read and shown once per row however many rules name it, and
    each rule is one pass over its field's column: 1,000 rules × 1,000 rows take about half a
    second, where a CheckResult per (row, rule) took about 15.
    """
    columns: dict[str, list[Any]] = {}
    actual: dict[str, list[str]] = {}
    for rule in rules:
        if rule.field not in columns:
            column = [row.get(rule.field) for row in rows]
            columns[rule.field] = column
            actual[rule.field] = [_show(v) for v in column]
    passed = tuple(list(map(rule._test, columns[rule.field])) for rule in rules)
    return BatchVerdicts(tuple(rules), passed, actual)


def evaluate(policy: Policy, row: Mapping[str, Any]) -> list[CheckResult]:
    """Check every rule of ``policy`` against ``row``, in policy order."""
    return [evaluate_rule(rule, row) for rule in policy.rules]
