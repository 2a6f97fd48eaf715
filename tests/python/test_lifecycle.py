"""Stopping and dropping nodes from several threads at once, and at
interpreter exit while other threads drop the last references (issue 15:
the atexit hook used raw pointers to nodes after releasing the GIL)."""
import gc
import inspect
import os
import socket
import threading

import kith
import pytest
from conftest import COOKIE, run_python


def port_of(node):
    return int(node.endpoint.rsplit(":", 1)[1])


def listening(port):
    s = socket.socket()
    try:
        s.connect(("127.0.0.1", port))
        return True
    except OSError:
        return False
    finally:
        s.close()


def test_concurrent_stops_each_return_once_stopped(make_node):
    # Every stop() returns only when the node is stopped, not only the
    # first caller's: afterwards nothing listens on its port any more.
    for i in range(5):
        node = make_node(f"n{i}@localhost", services=["echo"])
        port = port_of(node)
        barrier = threading.Barrier(6)
        still_listening = []
        errors = []

        def stop():
            try:
                barrier.wait()
                node.stop()
                if listening(port):
                    still_listening.append(port)
                assert node.stopped
            except Exception as e:  # noqa: BLE001 (reported below)
                errors.append(e)
        threads = [threading.Thread(target=stop) for _ in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        assert not any(t.is_alive() for t in threads)
        assert (errors, still_listening) == ([], [])


def test_stop_races_with_dropping_the_last_reference(tmp_path):
    # Threads stop a node while the main thread drops its last reference and
    # collects: one of them tears it down, none uses it after it is freed.
    for i in range(10):
        node = kith.Node(f"r{i}@localhost", listen="tcp://127.0.0.1:0", cookie=COOKIE,
                         key_dir=tmp_path / "k", workers=2, services=["echo"])
        inner = node._n
        barrier = threading.Barrier(5)
        stops = [inner.stop] * 4
        del inner

        def stop(f):
            barrier.wait()
            f()
        threads = [threading.Thread(target=stop, args=(f,)) for f in stops]
        del stops
        for t in threads:
            t.start()
        barrier.wait()
        del node
        gc.collect()
        for t in threads:
            t.join(30)
        assert not any(t.is_alive() for t in threads)


def test_exit_while_another_thread_drops_nodes(tmp_path):
    # The atexit hook stops every running node with the GIL released, one
    # after the other; meanwhile another thread drops the last references to
    # the nodes not yet stopped. Before the fix the hook then called stop()
    # on freed nodes (a crash at exit).
    code = f"""
import atexit, threading, time, kith
nodes = [kith.Node(f"x{{i}}@localhost", listen="tcp://127.0.0.1:0", cookie="c",
                   key_dir={str(tmp_path / 'k')!r}, workers=1, services=["echo"])
         for i in range(16)]

def drop():
    while nodes:
        nodes.pop()
        time.sleep(0.002)

# Registered after `import kith`, so it runs just before kith's hook.
atexit.register(lambda: threading.Thread(target=drop, daemon=True).start())
print("ok", flush=True)
"""
    for _ in range(8):  # a race: the old code crashed in about half the runs
        r = run_python(code, timeout=60)
        assert (r.returncode, r.stdout.strip()) == (0, "ok"), r.stdout + r.stderr


def test_network_cpu_auto_a_number_or_none_and_bad_values_named(make_node):
    # "auto" and a CPU this process may run on start nodes that answer calls;
    # anything else is refused before a node is made, saying what is wanted.
    a = make_node("a@localhost", services=["echo"], discovery=False, network_cpu="auto")
    b = make_node("b@localhost", discovery=False, network_cpu=sorted(os.sched_getaffinity(0))[0])
    assert b.connect(a.endpoint, a.key) == a.name
    assert b.call(a.name, "echo", "echo", "hi") == "hi"
    # "auto" is the default; None leaves the threads to the scheduler.
    assert inspect.signature(kith.Node).parameters["network_cpu"].default == "auto"
    c = make_node("c@localhost", discovery=False, network_cpu=None)
    assert c.connect(a.endpoint, a.key) == a.name
    assert c.call(a.name, "echo", "echo", "off") == "off"
    with pytest.raises(TypeError, match='network_cpu wants a CPU number, "auto" or None'):
        kith.Node("c@localhost", network_cpu="fast")
    with pytest.raises(ValueError, match="network_cpu wants a CPU number from 0 to 1023"):
        kith.Node("c@localhost", network_cpu=5000)


def test_conns_per_address_set_reported_and_bad_values_named(make_node):
    # A node that rations connections per address starts and reports its
    # blocks in net_stats; bad values are refused before a node is made.
    a = make_node("a@localhost", services=["echo"], discovery=False, conns_per_address=2)
    b = make_node("b@localhost", discovery=False, conns_per_address=0)
    assert b.connect(a.endpoint, a.key) == a.name
    assert b.call(a.name, "echo", "echo", "hi") == "hi"
    assert a.net_stats()["address_blocks"] == 0  # loopback is not rationed by default
    with pytest.raises(TypeError, match="conns_per_address wants connections a second"):
        kith.Node("c@localhost", conns_per_address="many")
    with pytest.raises(ValueError, match="conns_per_address wants 0 \\(unlimited\\) to 100000"):
        kith.Node("c@localhost", conns_per_address=-1)
