import crashers
from pipeline.isolation import IsolatedWorker


def test_worker_returns_values_and_errors():
    with IsolatedWorker(crashers.double, timeout_s=30) as w:
        assert w(21).value == 42
        out = w("x")  # "x" * 2 works; use a real failure instead
        assert out.ok and out.value == "xx"
    with IsolatedWorker(crashers.fail, timeout_s=30) as w:
        out = w(1)
        assert not out.ok and "clean, expected failure" in out.error


def test_segfault_costs_one_call_and_the_worker_recovers():
    with IsolatedWorker(crashers.segfault, timeout_s=30) as w:
        out = w(1)
        assert not out.ok
        assert "crashed" in out.error and "SIGSEGV" in out.error
        out = w(2)  # a fresh child takes the next input
        assert not out.ok and "SIGSEGV" in out.error


def test_hang_times_out():
    with IsolatedWorker(crashers.hang, timeout_s=1.0) as w:
        out = w(1)
        assert not out.ok and "timed out" in out.error
