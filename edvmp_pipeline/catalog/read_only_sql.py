"""Which statements ``edvmp query`` runs: one SELECT, or an EXPLAIN [ANALYZE] of one.

Statements are classified by DuckDB's own parser, never by keywords: a keyword filter is
fooled by comments, quoting and statements nested in EXPLAIN ANALYZE (which *executes* its
statement, so ``EXPLAIN ANALYZE COPY ... TO 'file'`` writes the file). The classifier is one
half of the sandbox; the other is the connection's settings (see ``Catalog.read_only_query``),
which keep a SELECT from reading or writing anything outside the catalog's tables.
"""

from __future__ import annotations

import duckdb

from edvmp_pipeline.domain.errors import ConfigError

__all__ = ["read_only_refusal", "require_read_only"]

_SELECT = duckdb.StatementType.SELECT
_EXPLAIN = duckdb.StatementType.EXPLAIN
_ALLOWED = "only SELECT statements (and EXPLAIN [ANALYZE] of one) run"


def _statements(sql: str) -> list[duckdb.Statement]:
    # A private connection: parsing must not depend on (or touch) the module's default one.
    con = duckdb.connect(":memory:")
    try:
        return con.extract_statements(sql)
    finally:
        con.close()


def _explained(text: str) -> duckdb.Statement | None:
    """The statement an EXPLAIN statement explains (None when it cannot be found).

    The inner statement is the first suffix of the text, starting at a token after
    ``EXPLAIN``, that parses as one whole statement. Anything earlier is ``ANALYZE`` or an
    option list: a suffix starting at ``ANALYZE`` is an ANALYZE statement (never a SELECT) and
    one starting inside ``( ... )`` has an unmatched parenthesis, so the first parseable
    suffix is the statement DuckDB runs, and a non-SELECT can never pass as a SELECT.
    """
    tokens = [offset for offset, kind in duckdb.tokenize(text) if kind != duckdb.token_type.comment]
    for offset in tokens[1:]:
        try:
            inner = _statements(text[offset:])
        except duckdb.Error:
            continue
        return inner[0] if len(inner) == 1 else None
    return None


def read_only_refusal(sql: str) -> str | None:
    """Why ``sql`` is refused, or None when it is one read-only statement.

    Raises ``duckdb.ParserException`` for SQL that does not parse (its message names the
    syntax error, which is more use to the user than "refused").
    """
    statements = _statements(sql)
    if len(statements) != 1:
        return f"give exactly one SQL statement (got {len(statements)})"
    statement = statements[0]
    kind = statement.type
    if kind == _EXPLAIN:
        inner = _explained(statement.query)
        if inner is None:
            return f"EXPLAIN of a statement that could not be classified is refused; {_ALLOWED}"
        if inner.type != _SELECT:
            return f"EXPLAIN of {inner.type.name} statements is refused; {_ALLOWED}"
        return None
    if kind == duckdb.StatementType.MULTI:
        # PIVOT without an IN list is run as several statements (it creates a type first).
        return (
            f"statements that DuckDB runs as several (MULTI) are refused; {_ALLOWED} "
            "(a PIVOT runs when its values are listed: PIVOT ... ON col IN (...))"
        )
    if kind != _SELECT:
        return f"{kind.name} statements are refused; {_ALLOWED}"
    return None


def require_read_only(sql: str) -> None:
    """Raise :class:`ConfigError` unless ``sql`` is one read-only statement."""
    if not _statements(sql):
        # Nothing to run is not a write refused: say what is missing.
        raise ConfigError('no SQL statement given, e.g. edvmp query "SELECT * FROM videos"')
    reason = read_only_refusal(sql)
    if reason is not None:
        raise ConfigError(f"edvmp query is read-only: {reason}")
