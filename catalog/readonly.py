"""SQL text from a user or a flow parameter: `nearmiss query` and `--where` predicates.

Two locks, either of which alone would stop the writes seen so far:
1. statement types are allow-listed before anything runs (SELECT, SHOW, DESCRIBE,
   SUMMARIZE, EXPLAIN, PIVOT): no SET, PRAGMA, CALL, IMPORT, COPY or ATTACH;
2. the connection is read-only, cannot touch any file but the catalog, and its
   configuration is locked (`Catalog.read(sandboxed=True)`).
"""
from __future__ import annotations

from dataclasses import dataclass

import duckdb

from catalog.connection import Catalog

_READ_TYPES = {
    duckdb.StatementType.SELECT,   # also SHOW, DESCRIBE, SUMMARIZE, VALUES, FROM-first queries
    duckdb.StatementType.EXPLAIN,
    duckdb.StatementType.MULTI,    # PIVOT (a table write inside one fails on the read-only handle)
}


class WriteRefused(ValueError):
    pass


@dataclass
class QueryResult:
    columns: list[str]
    rows: list[tuple]


def _statements(sql: str) -> list:
    try:
        return duckdb.connect().extract_statements(sql)
    except duckdb.Error as exc:
        raise ValueError(f"SQL does not parse: {str(exc).splitlines()[0]}") from None


def check_read_only(sql: str) -> None:
    for st in _statements(sql):
        if st.type not in _READ_TYPES:
            raise WriteRefused(
                f"read-only: {st.type.name} statements are refused "
                "(use SHOW TABLES, DESCRIBE t or SELECT). The catalog is written only by nearmiss "
                "commands and flows (ingest, featurize, score, rescore, train).")


def check_predicate(where: str) -> str:
    """A `--where` filter must be one boolean expression, not a way to append statements."""
    probe = f"SELECT 1 FROM clips c WHERE ({where})"
    statements = _statements(probe)
    if len(statements) != 1 or statements[0].type != duckdb.StatementType.SELECT:
        raise WriteRefused(f"--where must be one SQL condition on the clips, got {where!r}")
    return where


def run_query(catalog: Catalog, sql: str) -> QueryResult:
    check_read_only(sql)
    with catalog.read(sandboxed=True) as con:
        try:
            cur = con.execute(sql)
            if cur.description is None:
                return QueryResult([], [])
            return QueryResult([d[0] for d in cur.description], cur.fetchall())
        except duckdb.PermissionException as exc:
            raise WriteRefused(f"read-only, the catalog alone: {str(exc).splitlines()[0]}") from None
        except (duckdb.CatalogException, duckdb.BinderException, duckdb.ParserException,
                duckdb.ConversionException, duckdb.InvalidInputException) as exc:
            raise ValueError(str(exc).splitlines()[0]) from None
