"""Two featurize runs on one catalog share the clips: each clip is claimed by one run, and a dead
owner's claims lapse."""
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

from catalog import Catalog
from catalog.claims import ClaimOwner, claim_clips
from steps.ingest import run_ingest

NEARMISS = str(Path(sys.executable).with_name("nearmiss"))


def _catalog_with(db, clip_ids):
    with Catalog(db).write() as con:
        for c in clip_ids:
            con.execute("INSERT INTO clips (id, path, status) VALUES (?, ?, 'ok')", [c, f"/v/{c}.mp4"])
    return Catalog(db)


def _claim(catalog, owner, ids, n=10, lease_s=60.0):
    with catalog.write() as con:
        return claim_clips(con, "fs", owner, ids, n, lease_s)


def test_claims_go_to_one_owner_and_lapse_when_it_is_gone(db):
    ids = [f"c{k}" for k in range(6)]
    catalog = _catalog_with(db, ids)
    me, other_host = ClaimOwner.this_process(), ClaimOwner("another-host", os.getpid(), "x")
    assert _claim(catalog, other_host, ids, n=2) == ["c0", "c1"]
    assert _claim(catalog, me, ids, n=3) == ["c2", "c3", "c4"]   # in order, around the other's
    assert _claim(catalog, me, ids) == ["c2", "c3", "c4", "c5"]   # own claims are renewed, not lost
    with catalog.write() as con:   # c2 was finished meanwhile: nobody claims it again
        con.execute("INSERT INTO clip_features (clip_id, feature_set_id, status) VALUES ('c2', 'fs', 'ok')")
    assert _claim(catalog, me, ids) == ["c3", "c4", "c5"]

    # A dead process on this host frees its clips at once; another host's live-looking claim holds until
    # its lease runs out.
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    gone = ClaimOwner(socket.gethostname(), int(dead.stdout), "y")
    with catalog.write() as con:
        con.execute("DELETE FROM clip_claims")
    _claim(catalog, gone, ids, n=2)
    _claim(catalog, other_host, ["c3"], n=1, lease_s=-1.0)   # a lease already run out
    _claim(catalog, other_host, ["c4"], n=1)
    assert _claim(catalog, me, ids) == ["c0", "c1", "c3", "c5"]


def test_two_featurize_processes_share_the_clips(clips, db):
    run_ingest([str(clips)], db=db)
    env = {**os.environ, "CI": "1"}
    cmd = [NEARMISS, "--db", db, "featurize", "--untrained", "--fps", "4", "--device", "cpu",
           "--chunk-clips", "1", "--decode-in-process"]
    # A first run fits the feature set's projection (its first chunk covers those frames), so the two
    # below share clip by clip.
    subprocess.run(cmd + ["--limit", "1"], env=env, check=True, capture_output=True)
    procs = [subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
             for _ in range(2)]
    outs = [p.communicate(timeout=600)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    with Catalog(db).read() as con:
        done = [json.loads(c)["done"] for (c,) in con.execute(
            "SELECT counts FROM runs WHERE flow = 'featurize' ORDER BY started_at").fetchall()]
        stored = con.execute("SELECT count(*), count(DISTINCT clip_id) FROM clip_features WHERE status = 'ok'"
                             ).fetchall()[0]
        left = con.execute("SELECT count(*) FROM clip_claims").fetchall()[0][0]
    assert stored == (8, 8)
    assert done[0] == 1 and sum(done[1:]) == 7, done         # every clip computed once, not once per process
    assert min(done[1:]) >= 1, done      # and both took a share
    assert left == 0                     # claims are released when a run ends
