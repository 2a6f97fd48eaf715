"""Log records in Python: Node(log=...), kith.set_log_sink, a raising
callable, and callables released at stop and at interpreter exit."""
import gc
import sys
import threading
import weakref

import pytest

import kith
from kith import _kith
from conftest import run_python, wait_until


class Collector:
    """A log callable keeping its records (called on kith's log thread)."""

    def __init__(self):
        self.records = []
        self.lock = threading.Lock()

    def __call__(self, rec):
        with self.lock:
            self.records.append(rec)

    def matching(self, pred):
        with self.lock:
            return [r for r in self.records if pred(r)]


@pytest.fixture
def default_sink():
    """The process default sink replaced by a collector for the test (debug and up)."""
    c = Collector()
    kith.set_log_sink(c, level="debug")
    yield c
    kith.set_log_sink(None)


def refused(rec):
    return rec.source == "dist" and "refused" in rec.text


def provoke_refusal(victim, make_node):
    """A stranger (another cookie) dials victim as a member: refused."""
    stranger = make_node("stranger@localhost", cookie="another-cookie")
    with pytest.raises(kith.Unauthorized):
        stranger.connect(victim.endpoint, victim.key, timeout=5)


def test_refused_connection_reaches_the_node_log(make_node, default_sink):
    log = Collector()
    alice = make_node("alice@localhost", log=log)
    provoke_refusal(alice, make_node)
    wait_until(lambda: log.matching(lambda r: refused(r) and "connection from" in r.text),
               what="a refused-connection record in alice's log")
    rec = log.matching(refused)[0]
    assert isinstance(rec, kith.LogRecord) and isinstance(rec, tuple)
    assert (rec.level, rec.source, rec.node) == ("warning", "dist", "alice@localhost")
    level, source, node, text = rec
    assert text.startswith("connection from 127.0.0.1 refused: ")
    # The record went to alice's callable, not to the default sink.
    assert not default_sink.matching(lambda r: r.node == "alice@localhost")
    stats = alice.net_stats()
    assert stats["refused_connections"] >= 1, stats
    assert {"frames_in", "refused_overloaded", "refused_rate_limited", "overload_drops", "rate_drops",
            "refused_unanswered"} <= set(stats)


def test_a_raising_log_callable_does_not_take_the_node_down(make_node, default_sink):
    calls = []

    def broken(rec):
        calls.append(rec)
        raise RuntimeError("log sink on fire")

    alice = make_node("alice@localhost", log=broken, services=["echo"])
    provoke_refusal(alice, make_node)
    wait_until(lambda: default_sink.matching(lambda r: r.source == "python" and "log sink on fire" in r.text),
               what="the failure reported through the default sink")
    failure = default_sink.matching(lambda r: r.source == "python")[0]
    assert failure.level == "error" and failure.node == "alice@localhost"
    assert "RuntimeError: log sink on fire" in failure.text and "of node alice@localhost" in failure.text
    assert "connection from 127.0.0.1 refused" in failure.text  # the record it was given
    assert calls and refused(calls[0])
    # The node still serves, and the callable keeps getting records.
    assert alice.call(alice.name, "echo", "echo", "still here") == "still here"
    before = len(calls)
    provoke_refusal(alice, make_node)
    wait_until(lambda: len(calls) > before, what="a second record for the raising callable")


def test_set_log_sink_filters_by_level_and_keeps_order(default_sink):
    c = Collector()
    kith.set_log_sink(c, level="warning")
    _kith._log("info", "test", "", "below the threshold")
    _kith._log("warning", "test", "", "first")
    _kith._log("error", "test", "n@h", "second")
    wait_until(lambda: len(c.matching(lambda r: r.source == "test")) == 2, what="two records")
    assert [(r.level, r.node, r.text) for r in c.matching(lambda r: r.source == "test")] == [
        ("warning", "", "first"), ("error", "n@h", "second")]


def test_a_raising_default_sink_goes_to_unraisablehook(default_sink):
    seen = []
    old = sys.unraisablehook
    sys.unraisablehook = lambda u: seen.append(u)
    try:
        def broken(rec):
            raise ValueError("default sink on fire")
        kith.set_log_sink(broken)
        _kith._log("error", "test", "", "x")
        wait_until(lambda: seen, what="sys.unraisablehook called")
        assert isinstance(seen[0].exc_value, ValueError)
        kith.set_log_sink(None)
    finally:
        sys.unraisablehook = old


def test_bad_log_arguments(make_node):
    with pytest.raises(TypeError, match="callable"):
        make_node("alice@localhost", log=42)
    with pytest.raises(TypeError, match="callable"):
        kith.set_log_sink("stderr")
    with pytest.raises(ValueError, match="unknown log level 'loud'"):
        kith.set_log_sink(print, level="loud")


def test_stop_releases_the_log_callable(make_node):
    class Sink:
        def __call__(self, rec):
            pass
    sink = Sink()
    ref = weakref.ref(sink)
    alice = make_node("alice@localhost", log=sink)
    del sink
    gc.collect()
    assert ref() is not None  # the node holds it while it runs
    alice.stop()
    gc.collect()
    assert ref() is None


def test_log_callables_at_interpreter_exit(tmp_path):
    # Nodes left running with log callables, a default sink, a record in
    # flight: the process exits cleanly (the atexit hook stops the nodes and
    # the log thread before the interpreter finalizes).
    code = f"""
import kith
kith.set_log_sink(lambda r: None, level="debug")
seen = []
a = kith.Node("a@localhost", listen="tcp://127.0.0.1:0", cookie="one", key_dir={str(tmp_path / 'a')!r},
              log=seen.append)
b = kith.Node("b@localhost", listen="tcp://127.0.0.1:0", cookie="two", key_dir={str(tmp_path / 'b')!r},
              log=lambda r: 1 / 0)
try:
    b.connect(a.endpoint, a.key, timeout=5)
except kith.Unauthorized:
    print("refused")
"""
    r = run_python(code, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout.strip() == "refused"


def test_a_forked_child_gets_its_own_log_thread(default_sink):
    # The parent's log thread runs (a record went through it); a child made
    # by fork() has none: its records must still arrive.
    import os
    _kith._log("info", "test", "", "parent")
    wait_until(lambda: default_sink.matching(lambda r: r.text == "parent"), what="the parent's record")
    pid = os.fork()
    if pid == 0:
        ok = False
        try:
            child = Collector()
            kith.set_log_sink(child)
            _kith._log("info", "test", "", "child")
            wait_until(lambda: child.matching(lambda r: r.text == "child"), timeout=10, what="the child's record")
            ok = True
        finally:
            os._exit(0 if ok else 1)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
