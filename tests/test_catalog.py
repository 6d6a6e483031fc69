import json

import duckdb
import pytest

from catalog import Catalog, LATEST_VERSION, SchemaTooNew
from catalog.readonly import WriteRefused, check_read_only, run_query
from catalog.schema import current_version, migrate
from nearmiss.cli import main


def test_new_catalog_has_latest_schema(db):
    Catalog(db).ensure()
    with Catalog(db).read() as con:
        assert current_version(con) == LATEST_VERSION
        tables = {r[0] for r in con.execute("SELECT table_name FROM information_schema.tables").fetchall()}
    assert {"clips", "clip_paths", "labels", "runs", "schema_version"} <= tables


def test_older_file_is_upgraded_with_its_data(db):
    con = duckdb.connect(db)
    assert migrate(con, db, target=1) == 1  # a catalog written by the first release
    con.execute("INSERT INTO clips (id, path, size_bytes, status) VALUES ('abc', '/v/a.mp4', 10, 'ok')")
    con.close()
    Catalog(db).ensure()
    with Catalog(db).read() as con:
        assert current_version(con) == LATEST_VERSION
        assert con.execute("SELECT clip_id, path, size_bytes FROM clip_paths").fetchall() == [("abc", "/v/a.mp4", 10)]
        assert con.execute("SELECT count(*) FROM clips").fetchone()[0] == 1


def test_newer_file_is_refused_untouched(db):
    Catalog(db).ensure()
    con = duckdb.connect(db)
    con.execute("INSERT INTO schema_version (version, description) VALUES (?, 'from the future')",
                [LATEST_VERSION + 5])
    con.close()
    with pytest.raises(SchemaTooNew, match="newer than this nearmiss"):
        Catalog(db).ensure()
    with Catalog(db).read() as con:
        assert current_version(con) == LATEST_VERSION + 5


@pytest.mark.parametrize("sql", [
    "INSERT INTO clips (id, path, status) VALUES ('x', 'y', 'ok')",
    "DELETE FROM clips",
    "UPDATE clips SET status = 'failed'",
    "DROP TABLE clips",
    "CREATE TABLE t (a INT)",
    "COPY clips TO '/tmp/out.csv'",
    "ATTACH '/tmp/other.duckdb' AS o",
    "SELECT 1; DELETE FROM clips",
])
def test_query_refuses_writes(db, sql):
    Catalog(db).ensure()
    with pytest.raises(WriteRefused, match="refused"):
        run_query(Catalog(db), sql)


def test_query_reads_and_cli_formats(db, capsys):
    cat = Catalog(db)
    with cat.write() as con:
        con.execute("INSERT INTO clips (id, path, duration_s, status) VALUES ('a', '/v/a.mp4', 2.5, 'ok')")
    check_read_only("SHOW TABLES")
    assert run_query(cat, "SELECT id, duration_s FROM clips").rows == [("a", 2.5)]
    assert main(["--db", db, "query", "SELECT id, duration_s FROM clips", "--format", "json"]) == 0
    assert json.loads(capsys.readouterr().out) == [{"id": "a", "duration_s": 2.5}]
    assert main(["query", "--db", db, "SELECT id FROM clips", "--format", "csv"]) == 0
    assert capsys.readouterr().out.splitlines() == ["id", "a"]
    assert main(["--db", db, "query", "DELETE FROM clips"]) == 2
    assert "read-only" in capsys.readouterr().err
    assert run_query(cat, "SELECT count(*) FROM clips").rows == [(1,)]


def test_nearmiss_db_env_var(tmp_path, monkeypatch, capsys):
    path = tmp_path / "env.duckdb"
    monkeypatch.setenv("NEARMISS_DB", str(path))
    Catalog(str(path)).ensure()
    assert main(["query", "SELECT count(*) AS n FROM clips", "--format", "csv"]) == 0
    assert capsys.readouterr().out.splitlines() == ["n", "0"]


def test_query_on_missing_catalog_is_a_clear_error(tmp_path, capsys):
    assert main(["--db", str(tmp_path / "nope.duckdb"), "query", "SELECT 1"]) == 2
    assert "no catalog at" in capsys.readouterr().err
