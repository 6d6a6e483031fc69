"""The DuckDB incident catalog: schema, connections, writes and named queries. All SQL lives here."""
from catalog.connection import Catalog, CatalogDamaged, CatalogLocked, CatalogMissing, default_db_path
from catalog.schema import CLASSES, LATEST_VERSION, NotACatalog, SchemaTooNew

__all__ = ["Catalog", "CatalogDamaged", "CatalogLocked", "CatalogMissing", "default_db_path", "CLASSES",
           "LATEST_VERSION", "NotACatalog", "SchemaTooNew"]
