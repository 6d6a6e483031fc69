"""The demo's choices that need no run of it: which heads it shows, and hints that work from any folder."""
import subprocess

from nearmiss.demo import _nearmiss_command, demo_heads


def test_the_demo_leaves_out_heads_that_mean_nothing_on_random_clip_weights():
    assert "zeroshot" not in demo_heads(untrained=True)
    assert "zeroshot" in demo_heads(untrained=False)
    assert {"detection", "recognition"} <= set(demo_heads(untrained=True))
    assert not {"conflict", "ttc"} & set(demo_heads(untrained=False))     # the synthetic clips have no road users


def test_the_command_the_demo_prints_runs_from_another_folder(tmp_path, monkeypatch):
    monkeypatch.delenv("VIRTUAL_ENV", raising=False)
    exe = _nearmiss_command()
    assert exe.startswith("/")
    r = subprocess.run([exe, "--help"], cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and "demo" in r.stdout
