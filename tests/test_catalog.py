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


def test_two_catalog_objects_on_one_file_never_open_it_from_two_threads_at_once(tmp_path):
    """The crash of a long featurize: its clip store (one Catalog, registering an Arrow table) and the claims
    heartbeat (another Catalog, on its own thread) opened the file at once, and DuckDB's shared instance
    broke ("python_arrow_scan does not exist", "Unique file handle conflict")."""
    import threading
    import time

    from catalog.connection import clip_id_table

    db = str(tmp_path / "c.duckdb")
    Catalog(db).ensure()
    inside, spans, errors, stop = threading.Event(), [], [], threading.Event()

    def holder():
        with Catalog(db).write() as con:
            inside.set()
            time.sleep(0.3)
            con.execute("SELECT count(*) FROM clips").fetchall()
            spans.append(("holder", time.monotonic()))

    def beat():
        c = Catalog(db)
        while not stop.wait(0.002):
            try:
                with c.write() as con:
                    con.execute("SELECT count(*) FROM clips").fetchall()
            except Exception as exc:
                errors.append(repr(exc))

    t = threading.Thread(target=holder)
    t.start()
    inside.wait(5)
    with Catalog(db).write() as con:   # another object, another thread: waits for the holder's transaction
        spans.append(("second", time.monotonic()))
    t.join()
    assert [who for who, _ in sorted(spans, key=lambda s: s[1])] == ["holder", "second"]

    b = threading.Thread(target=beat)
    b.start()
    try:
        store = Catalog(db)
        for _ in range(50):
            try:
                with store.write() as con, clip_id_table(con, [str(k) for k in range(50)]):
                    con.execute("SELECT count(*) FROM clips WHERE id IN (SELECT clip_id FROM _ids)").fetchall()
            except Exception as exc:
                errors.append(repr(exc))
    finally:
        stop.set()
        b.join()
    assert errors == []


def test_a_long_json_cell_wraps_between_words_in_the_table_format():
    """`runs.counts` in `query`'s table: every key and value whole, on continuation lines, never cut mid-word."""
    from nearmiss.formatting import format_rows

    counts = json.dumps({"files": 4, "new": 4, "skipped": 0, "failed": 0, "still_writing": 0, "featurized": 4,
                         "featurize_failed": 0, "incidents": 3})
    lines = format_rows(["flow", "counts"], [("pipeline", counts)]).splitlines()
    body = lines[2:-1]
    assert len(body) > 1 and all(len(line) <= len(lines[1]) for line in body)
    cells = [line.split(" | ", 1)[1].strip() for line in body]
    assert json.loads(" ".join(cells)) == json.loads(counts)
    assert body[0].startswith("pipeline") and all(line.startswith(" " * len("pipeline")) for line in body[1:])
