"""Every earlier schema version's catalog (a committed fixture) upgrades to the newest with its data."""
import gzip
import shutil
from pathlib import Path

import pytest

from catalog import LATEST_VERSION, Catalog
from catalog.schema import current_version
from nearmiss.cli import main

FIXTURES = Path(__file__).parent / "fixtures"


@pytest.mark.parametrize("version", range(1, LATEST_VERSION))
def test_each_earlier_version_upgrades_with_its_data(version, tmp_path, capsys):
    db = tmp_path / "catalog.duckdb"
    with gzip.open(FIXTURES / f"catalog_v{version}.duckdb.gz", "rb") as f, open(db, "wb") as out:
        shutil.copyfileobj(f, out)
    cat = Catalog(str(db))
    with cat.read() as con:
        assert current_version(con) == version
    cat.ensure()   # opening for writing upgrades it
    with cat.read() as con:
        assert current_version(con) == LATEST_VERSION
        assert con.execute("SELECT id, status FROM clips ORDER BY id").fetchall() == [("c1", "ok"), ("c2", "failed")]
        assert con.execute("SELECT path FROM clip_paths ORDER BY path").fetchall() == [("/v/a.mp4",), ("/v/b.mp4",)]
        assert con.execute("SELECT class, event_peak_s FROM labels").fetchall() == [("vehicle", None)]
        if version >= 3:
            assert con.execute("SELECT count(*), any_value(object_summary) FROM motion_features").fetchall() == [(1, None)]
        if version >= 4:
            assert con.execute("SELECT predicted_class, note FROM latest_predictions").fetchall() == [("vehicle", None)]
        if version >= 5:
            assert con.execute("SELECT class, ttc_s FROM objects").fetchall() == [("vehicle", 1.25)]
    assert main(["--db", str(db), "check"]) == 0
    assert f"schema version {LATEST_VERSION}" in capsys.readouterr().out
