"""SQL text from users and flow parameters can neither change the catalog nor read other files."""
import hashlib
from pathlib import Path

import pytest

from catalog import Catalog
from catalog.readonly import check_predicate, run_query
from nearmiss.cli import main


def _digest(path: str) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


@pytest.fixture
def catalog_file(tmp_path) -> str:
    db = str(tmp_path / "catalog.duckdb")
    with Catalog(db).write() as con:
        con.execute("INSERT INTO clips (id, path, status) VALUES ('a', '/v/a.mp4', 'ok')")
    return db


def _dump_dir(tmp_path: Path) -> Path:
    """What IMPORT DATABASE would run: a schema.sql that writes files and overwrites the catalog."""
    d = tmp_path / "dump"
    d.mkdir()
    (d / "schema.sql").write_text(f"COPY (SELECT 1) TO '{tmp_path / 'leak.csv'}';"
                                  f" ATTACH '{tmp_path / 'made.duckdb'}' AS m;")
    (d / "load.sql").write_text("")
    return d


@pytest.mark.parametrize("make_sql", [
    lambda db, tmp: f"SET log_query_path='{db}'; SELECT 1",
    lambda db, tmp: f"IMPORT DATABASE '{_dump_dir(tmp)}'",
    lambda db, tmp: "CALL checkpoint()",
    lambda db, tmp: "PRAGMA enable_profiling",
    lambda db, tmp: "SET threads = 1",
    lambda db, tmp: f"COPY clips TO '{tmp / 'out.csv'}'",
    lambda db, tmp: f"ATTACH '{tmp / 'other.duckdb'}' AS o",
    lambda db, tmp: f"SELECT * FROM read_text('{db}')",
    lambda db, tmp: "SELECT * FROM read_text('/etc/passwd')",
    lambda db, tmp: "SELECT * FROM glob('/root/*')",
    lambda db, tmp: "SELECT * FROM read_csv('/etc/passwd')",
    lambda db, tmp: f"SELECT * FROM '{tmp / 'x.parquet'}'",
    lambda db, tmp: "INSTALL httpfs",
    lambda db, tmp: "SELECT 1; DELETE FROM clips",
])
def test_query_cannot_write_or_read_files(catalog_file, tmp_path, capsys, make_sql):
    before = _digest(catalog_file)
    files_before = set(tmp_path.rglob("*"))
    sql = make_sql(catalog_file, tmp_path)
    files_before = set(tmp_path.rglob("*"))
    assert main(["--db", catalog_file, "query", sql]) == 2
    err = capsys.readouterr().err
    assert err.startswith("nearmiss query: ") and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert _digest(catalog_file) == before
    assert set(tmp_path.rglob("*")) == files_before, "the query created a file"
    assert run_query(Catalog(catalog_file), "SELECT count(*) FROM clips").rows == [(1,)]


@pytest.mark.parametrize("sql, named", [("IMPORT DATABASE '/tmp/x'", "IMPORT DATABASE"), ("INSTALL httpfs", "INSTALL"),
                                        ("PRAGMA enable_profiling", "PRAGMA"), ("CALL checkpoint()", "CALL")])
def test_a_refused_statement_is_called_what_the_user_wrote(catalog_file, capsys, sql, named):
    assert main(["--db", catalog_file, "query", sql]) == 2
    assert f"read-only: {named} statements are refused" in capsys.readouterr().err


def test_query_still_reads_and_describes(catalog_file):
    cat = Catalog(catalog_file)
    assert ("clips",) in run_query(cat, "SHOW TABLES").rows
    assert run_query(cat, "DESCRIBE clips").rows[0][0] == "id"
    assert run_query(cat, "FROM clips SELECT path").rows == [("/v/a.mp4",)]


def test_mistyped_table_is_one_clear_line(catalog_file, capsys):
    assert main(["--db", catalog_file, "query", "SELECT * FROM clipz"]) == 2
    err = capsys.readouterr().err
    assert "clipz" in err and "Traceback" not in err


@pytest.mark.parametrize("where", ["1=1); DELETE FROM clips; SELECT (1", "true; SET threads=1"])
def test_where_must_be_one_condition(where):
    with pytest.raises(ValueError):  # WriteRefused, or a parse error: refused either way
        check_predicate(where)


def test_where_cannot_read_a_file(catalog_copy, capsys):
    """The deployment `where` oracle: a predicate over a file's contents must fail, not answer."""
    assert main(["--db", catalog_copy, "train", "--head", "zeroshot", "--allow-untrained"]) == 0
    leak = "starts_with((SELECT content FROM read_text('/etc/passwd')), 'root')"
    assert main(["--db", catalog_copy, "score", "--where", leak]) == 2
    err = capsys.readouterr().err
    assert "/etc/passwd" in err and "Traceback" not in err
    with Catalog(catalog_copy).read() as con:
        assert con.execute("SELECT count(*) FROM predictions").fetchone()[0] == 0
        # refused before it began: no run recorded for it
        assert con.execute("SELECT count(*) FROM runs WHERE flow = 'score'").fetchone()[0] == 0
    # An ordinary predicate still works.
    assert main(["--db", catalog_copy, "score", "--where", "c.duration_s > 0"]) == 0
    assert main(["--db", catalog_copy, "rescore", "--head", "zeroshot", "--where", leak]) == 2
    assert main(["--db", catalog_copy, "report", "--out", str(Path(catalog_copy).parent / "r"),
                 "--where", leak]) == 2
