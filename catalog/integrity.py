"""`nearmiss check`: read every table of the catalog in full, so that DuckDB verifies each block's
checksum. A damaged page otherwise shows only when a query happens to touch it."""
from __future__ import annotations

from dataclasses import dataclass

import duckdb

from catalog.connection import Catalog, damaged, is_damage
from catalog.schema import NotACatalog, current_version


@dataclass
class CheckResult:
    schema_version: int
    tables: int
    rows: int


def check_catalog(catalog: Catalog) -> CheckResult:
    """Raises CatalogDamaged naming the first table that fails."""
    with catalog.read() as con:
        try:
            version = current_version(con)
            tables = [t for (t,) in con.execute("SELECT table_name FROM information_schema.tables"
                                                " WHERE table_schema = 'main' AND table_type = 'BASE TABLE'"
                                                " ORDER BY 1").fetchall()]
            rows = 0
            for t in tables:
                cur = con.execute(f'SELECT * FROM "{t}"')
                while batch := cur.fetchmany(8192):
                    rows += len(batch)
        except duckdb.Error as exc:
            if is_damage(exc):
                raise damaged(catalog.path, exc) from None
            raise
    if version == 0 and tables:
        raise NotACatalog(f"{catalog.path} is a DuckDB database of another application ({len(tables)} tables, "
                          "no nearmiss schema)")
    return CheckResult(version, len(tables), rows)
