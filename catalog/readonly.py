"""`nearmiss query`: a user's SQL on a read-only connection.

Write statements are refused before anything runs, by statement type, so a
COPY ... TO or ATTACH cannot slip past the read-only file handle either.
"""
from __future__ import annotations

from dataclasses import dataclass

import duckdb

from catalog.connection import Catalog

_READ_TYPES = {
    duckdb.StatementType.SELECT,   # also SHOW, DESCRIBE, SUMMARIZE, FROM-first queries
    duckdb.StatementType.EXPLAIN,
    duckdb.StatementType.PRAGMA,
    duckdb.StatementType.CALL,
    duckdb.StatementType.SET,      # session settings only
    duckdb.StatementType.MULTI,    # PIVOT
}


class WriteRefused(ValueError):
    pass


@dataclass
class QueryResult:
    columns: list[str]
    rows: list[tuple]


def check_read_only(sql: str) -> None:
    try:
        statements = duckdb.connect().extract_statements(sql)
    except duckdb.ParserException as exc:
        raise ValueError(f"SQL does not parse: {exc}") from exc
    for st in statements:
        if st.type not in _READ_TYPES:
            kind = st.type.name
            raise WriteRefused(
                f"nearmiss query is read-only: {kind} statements are refused. "
                "The catalog is written only by nearmiss commands and flows "
                "(ingest, featurize, score, rescore, train)."
            )


def run_query(catalog: Catalog, sql: str) -> QueryResult:
    check_read_only(sql)
    with catalog.read() as con:
        cur = con.execute(sql)
        if cur.description is None:
            return QueryResult([], [])
        return QueryResult([d[0] for d in cur.description], cur.fetchall())
