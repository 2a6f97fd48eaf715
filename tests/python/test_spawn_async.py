"""Node.spawn_async (Erlang's spawn_request): a Future per spawn, many in
flight from one thread; its Pid or the error spawn() would raise; callbacks,
asyncio, a node that stops first, and arguments refused at once."""
import asyncio
import concurrent.futures
import signal
import threading

import pytest

import kith
from conftest import CppNode


@pytest.fixture
def pair(make_node):
    a = make_node("a@localhost", services=["echo"], discovery=False)
    b = make_node("b@localhost", discovery=False)
    assert b.connect(a.endpoint, a.key) == a.name
    return a, b


def test_many_spawns_in_flight_from_one_thread(pair):
    a, b = pair
    futs = [b.spawn_async(a.name, "echo", "server", timeout=10) for _ in range(64)]
    assert all(isinstance(f, concurrent.futures.Future) for f in futs)
    pids = [f.result(20) for f in futs]
    assert len(set(pids)) == 64 and all(isinstance(p, kith.Pid) and p.node == a.name for p in pids)
    assert all(a.alive(p) for p in pids)
    # The actors work: echo:server sends [Pid, M]'s M to Pid.
    b.send(pids[0], [b.self, "hello"])
    assert b.receive(timeout=5) == "hello"
    # The short name works as for spawn().
    assert b.spawn_async("a", "echo", "server").result(10).node == a.name


def test_python_actor_types_and_this_node(make_node):
    n = make_node("n@localhost", discovery=False)
    svc = n.service("py")

    @svc.actor("adder")  # named by a plain string, as @svc.actor(name="adder")
    def add(actor, msg, base):
        actor.send(msg[0], msg[1] + base)
    m = make_node("m@localhost", discovery=False)
    m.connect(n.endpoint, n.key)
    pid = m.spawn_async(n.name, "py", "adder", 40).result(10)
    m.send(pid, [m.self, 2])
    assert m.receive(timeout=5) == 42
    # On its own node too (answered on a kith thread, never in the caller).
    local = n.spawn_async(n.name, "py", "adder", 0).result(10)
    assert local.node == n.name and n.alive(local)


def test_errors_arrive_through_the_future(pair):
    a, b = pair
    cases = {
        (a.name, "nope", "server"): kith.NoSuchService,
        (a.name, "echo", "nope"): kith.NoSuchFunction,
        ("zzz@localhost", "echo", "server"): kith.NodeDown,
    }
    for (node, svc, typ), exc in cases.items():
        f = b.spawn_async(node, svc, typ)
        with pytest.raises(exc) as e:
            f.result(10)
        assert isinstance(f.exception(), kith.Error) and e.value.code == exc.code
    with pytest.raises(kith.NoSuchService) as e:
        b.spawn_async(a.name, "nope", "server").result(10)
    assert e.value.detail == "nope"
    # Arguments that cannot be sent are refused at once, as by spawn().
    with pytest.raises(TypeError):
        b.spawn_async(a.name, "echo", "server", lambda: 1)
    with pytest.raises(TypeError, match="node is a str, got 5"):
        b.spawn_async(5, "echo", "server")
    assert not b._pending  # nothing left waiting


def test_callbacks_and_asyncio(pair):
    a, b = pair
    got, done = [], threading.Event()

    def cb(f):
        got.append(f.result())
        done.set()
    f = b.spawn_async(a.name, "echo", "server")
    f.add_done_callback(cb)
    assert done.wait(10) and got == [f.result()]
    assert not f.cancel()  # a spawn cannot be taken back

    async def spawn_many():
        return await asyncio.gather(*(asyncio.wrap_future(b.spawn_async(a.name, "echo", "server"))
                                      for _ in range(8)))
    pids = asyncio.run(spawn_many())
    assert len(set(pids)) == 8


def test_timeout_and_a_node_that_stops_first(make_node, tmp_path):
    # A C++ node stopped with SIGSTOP never answers: the Future times out; and
    # when the asking node stops first, its pending Futures fail with Shutdown.
    cpp = CppNode(tmp_path / "cpp")
    try:
        n = make_node("n@localhost", discovery=False, heartbeat_timeout=60)
        assert n.connect(cpp.endpoint, cpp.key) == cpp.name
        assert n.spawn_async(cpp.name, "echo", "server").result(10).node == cpp.name
        cpp.freeze()  # SIGSTOP; returns once every thread has stopped
        short = n.spawn_async(cpp.name, "echo", "server", timeout=0.3)
        with pytest.raises(kith.Timeout):
            short.result(10)
        long = [n.spawn_async(cpp.name, "echo", "server", timeout=60) for _ in range(3)]
        n.stop()
        for f in long:  # failed by the stopping node (NodeDown "shutdown"), or by stop() itself
            with pytest.raises((kith.NodeDown, kith.Shutdown)) as e:
                f.result(10)
            assert "shutdown" in str(e.value) or "stopped" in e.value.detail, e.value
        with pytest.raises(kith.Shutdown):
            n.spawn_async(cpp.name, "echo", "server")
    finally:
        cpp.proc.send_signal(signal.SIGCONT)
        cpp.stop()  # SIGTERM: the node stops cleanly after SIGSTOP/SIGCONT too
