"""Rendering rows as a table, CSV or JSON for the ``edvmp`` commands, and making text that
came from outside (object keys, error messages, tags) safe to print on a terminal."""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Sequence
from datetime import date, datetime
from decimal import Decimal
from typing import Any

# What a terminal acts on instead of showing: C0 controls (ESC starts a sequence that can
# erase lines, move the cursor or set the title; CR returns to overwrite a line), DEL, C1
# controls (0x9b is a one-byte CSI), and the bidi controls that reorder what follows
# (U+061C, U+200E/F, U+202A-U+202E, U+2066-U+2069), plus the line/paragraph separators
# some terminals and viewers break lines on, and lone surrogates (an undecodable file name
# byte), which cannot even be encoded for printing.
_UNSAFE = re.compile(
    "[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028-\u202e\u2066-\u2069\ud800-\udfff]"
)
# What json.dumps(ensure_ascii=False) leaves raw although a terminal may act on it.
_JSON_RAW = re.compile("[\x7f-\x9f\ud800-\udfff]")
_SHORT = {"\t": "\\t", "\n": "\\n", "\r": "\\r"}


def _escape(match: re.Match[str]) -> str:
    char = match.group()
    if char in _SHORT:
        return _SHORT[char]
    code = ord(char)
    return f"\\x{code:02x}" if code <= 0xFF else f"\\u{code:04x}"


def terminal_safe(text: str) -> str:
    """``text`` with every control and bidi character shown as a visible escape (``\\x1b``,
    ``\\u202e``, ``\\n``), so names cannot move the cursor, rewrite lines or reorder what
    is printed. Everything else, including any letter, CJK or emoji, is kept as it is.

    For human output only: JSON output (:func:`json_text`) keeps every string exact.
    """
    return _UNSAFE.sub(_escape, text)


def json_text(value: Any) -> str:
    """``value`` as indented JSON for stdout: every string exact (bidi characters and any
    script as they are), with DEL, C1 controls and lone surrogates written as ``\\u``
    escapes, which json.dumps leaves raw (it escapes only C0 controls)."""
    text = json.dumps(value, indent=2, ensure_ascii=False, default=str)
    # These characters can only occur inside JSON strings, where a \u escape is the same
    # string to any parser.
    return _JSON_RAW.sub(lambda m: f"\\u{ord(m.group()):04x}", text)


def _jsonable(value: Any) -> Any:
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, bytes):
        return value.hex()
    return value


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, datetime):
        return value.isoformat(timespec="seconds")
    return str(value)


def _table_cell(value: Any) -> str:
    # A tab or newline inside a cell would also break the table's columns.
    return terminal_safe(_cell(value))


def render(columns: Sequence[str], rows: Sequence[Sequence[Any]], fmt: str = "table") -> str:
    """Render query results; ``fmt`` is ``table``, ``csv`` or ``json`` (array of objects).

    The table is for people: its cells and headers go through :func:`terminal_safe`. CSV and
    JSON are data for programs and keep every value exact.
    """
    if fmt == "json":
        objs = [{c: _jsonable(v) for c, v in zip(columns, row, strict=True)} for row in rows]
        return json_text(objs)
    if fmt == "csv":
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        writer.writerow(columns)
        writer.writerows([[_cell(v) for v in row] for row in rows])
        return buf.getvalue().rstrip("\n")
    columns = [terminal_safe(str(c)) for c in columns]
    cells = [[_table_cell(v) for v in row] for row in rows]
    widths = [len(c) for c in columns]
    for row in cells:
        widths = [max(w, len(v)) for w, v in zip(widths, row, strict=True)]
    lines = [
        "  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True)).rstrip(),
        "  ".join("-" * w for w in widths),
    ]
    lines += [
        "  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip() for row in cells
    ]
    lines.append(f"({len(rows)} row{'s' if len(rows) != 1 else ''})")
    return "\n".join(lines)
