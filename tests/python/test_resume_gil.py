"""A Python actor woken by a reply (spawn_async's helper, which completes
the Futures) may run that turn on the node's network I/O thread
(dist::resume_here), taking the GIL there. Attacks: a done-callback that
calls back into the network synchronously and tries to stop its node; the
main thread holding the GIL while replies come; stop() while completions
are queued. Behaviour only, with deadlines."""
import threading
import time

import pytest

import kith


@pytest.fixture
def pair(make_node):
    a = make_node("a@localhost", services=["echo"], discovery=False)
    b = make_node("b@localhost", services=["echo"], discovery=False)
    assert b.connect(a.endpoint, a.key) == a.name
    return a, b


def test_a_done_callback_calls_both_nodes_and_cannot_stop_its_node(pair):
    a, b = pair
    got, done = [], threading.Event()

    def cb(f):
        f.result()
        try:
            got.append(b.call(a.name, "echo", "echo", "there", timeout=10))
            got.append(b.call(b.name, "echo", "echo", "here", timeout=10))
            if threading.current_thread() is not threading.main_thread():
                try:
                    b.stop()
                    got.append("stopped")
                except kith.BadArg:
                    got.append("refused")
        except Exception as e:  # recorded, asserted below
            got.append(e)
        done.set()
    b.spawn_async(a.name, "echo", "server", timeout=10).add_done_callback(cb)
    assert done.wait(30), got
    assert got[:2] == ["there", "here"]
    assert got[2:] in ([], ["refused"])
    assert b.call(a.name, "echo", "echo", 1, timeout=10) == 1  # b still runs
    assert a.call(b.name, "echo", "echo", 2, timeout=10) == 2


def test_replies_while_the_main_thread_holds_the_gil_then_stop(pair):
    a, b = pair
    futs = [b.spawn_async(a.name, "echo", "server", timeout=30) for _ in range(32)]
    # Pure Python: the GIL changes hands only at the switch interval.
    end = time.monotonic() + 0.5
    x = 0
    while time.monotonic() < end:
        x += 1
    pids = [f.result(30) for f in futs]
    assert len(set(pids)) == 32
    # Completions queued when the node stops: stop returns, each Future ends.
    more = [b.spawn_async(a.name, "echo", "server", timeout=30) for _ in range(32)]
    b.stop()
    for f in more:
        try:
            f.result(30)
        except (kith.NodeDown, kith.Shutdown):
            pass
    assert all(f.done() for f in more)


def test_a_done_callback_may_wait_for_another_spawn_async(pair):
    # Each Future has its own completer: a callback that waits for a Future
    # made in it, or for one made earlier, does not wait for itself (with one
    # completer for all, both waited until their timeout).
    a, b = pair
    got, done = [], threading.Event()
    later = b.spawn_async(a.name, "echo", "server", timeout=10)

    def cb(f):
        try:
            got.append(b.spawn_async(a.name, "echo", "server", timeout=10).result(8))
            got.append(later.result(8))
        except BaseException as e:  # recorded, asserted below
            got.append(e)
        done.set()
    first = b.spawn_async(a.name, "echo", "server", timeout=10)
    first.add_done_callback(cb)
    assert done.wait(30)
    assert len(got) == 2 and all(isinstance(p, kith.Pid) for p in got), got


def test_a_refused_spawn_async_leaves_no_completer_behind(pair):
    a, b = pair
    made = []
    orig = b._async_helper

    def recording():
        made.append(orig())
        return made[-1]
    b._async_helper = recording
    for _ in range(5):
        with pytest.raises(TypeError):
            b.spawn_async(a.name, "echo", "server", lambda: 1)
    assert len(made) == 5
    end = time.monotonic() + 10
    while any(b.alive(p) for p in made) and time.monotonic() < end:
        time.sleep(0.01)
    assert not any(b.alive(p) for p in made)
    assert b.spawn_async(a.name, "echo", "server").result(10).node == a.name
    assert not b._pending
