"""A Python node and C++ nodes calling each other both ways, over real CURVE
on loopback: Python -> kith_test_node (a C++ process), and kith_py_peer (a C++
process) -> Python; plus two Python nodes: spawn on a node, links, monitors,
node events, multicall."""
import os
import subprocess

import pytest

import kith
from conftest import COOKIE, CppNode, wait_until


def test_python_calls_cpp_node(make_node, cpp_node):
    py = make_node("py@localhost")
    assert py.connect(cpp_node.endpoint, cpp_node.key) == "cpp@localhost"
    assert "cpp@localhost" in py.nodes()
    assert py.ping("cpp@localhost")
    assert py.call("cpp@localhost", "kvs", "store", "weather", "fine") is True
    assert py.call("cpp@localhost", "kvs", "lookup", "weather") == ["ok", "fine"]
    assert py.call("cpp@localhost", "echo", "echo", [1, 2.5, b"x", {"k": None}]) == [1, 2.5, b"x", {"k": None}]
    assert py.call("cpp@localhost", "demo", "node") == "cpp@localhost"
    py.cast("cpp@localhost", "kvs", "store", "cast", 1)
    wait_until(lambda: py.call("cpp@localhost", "kvs", "lookup", "cast") == ["ok", 1], what="cast")
    with pytest.raises(kith.BadArgs, match="expected 2 arguments, got 1"):
        py.call("cpp@localhost", "kvs", "store", "only-key")
    with pytest.raises(kith.NoSuchService):
        py.call("cpp@localhost", "nope", "x")
    with pytest.raises(kith.NoSuchFunction):
        py.call("cpp@localhost", "kvs", "nope")
    with pytest.raises(kith.Timeout):
        py.call("cpp@localhost", "slow", "wait", timeout=0.3)


def test_python_spawns_on_cpp_node(make_node, cpp_node):
    py = make_node("py@localhost")
    py.connect(cpp_node.endpoint, cpp_node.key)
    # the seeds' echo server: answers [Client, M] by sending M to Client
    p = py.spawn("cpp@localhost", "echo", "server")
    assert p.node == "cpp@localhost"
    py.send(p, [py.self, "hello"])
    assert py.receive(timeout=10) == "hello"
    # dist_demo's rpc server, monitored
    q, ref = py.spawn_monitor("cpp@localhost", "demo", "rpc_server")
    assert py.call_pid(q, ["demo", "node", []]) == "cpp@localhost"
    py.exit(q, "kill")
    d = py.receive(timeout=10, match=lambda m: isinstance(m, kith.Down))
    assert d.ref == ref and d.pid == q and d.reason == "killed"
    # linked; losing the node gives noconnection
    s = py.spawn_link("cpp@localhost", "echo", "server")
    with pytest.raises(kith.NoSuchFunction):
        py.spawn("cpp@localhost", "echo", "nope")
    cpp_node.stop()
    x = py.receive(timeout=20, match=lambda m: isinstance(m, kith.Exit))
    assert x.pid == s and x.reason == "noconnection"
    with pytest.raises(kith.NodeDown):
        py.call("cpp@localhost", "kvs", "keys")


def peer(py, mode, node, svc, fn, *args, key_dir):
    out = subprocess.run([os.environ["KITH_PY_PEER"], str(key_dir), COOKIE, py.endpoint, py.key, mode, node,
                          svc, fn, *map(str, args)], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr
    return out.stdout.strip()


def test_cpp_calls_python_service(make_node, tmp_path):
    py = make_node("py@localhost")
    math = py.service("math")

    @math.function
    def add(a: int, b: int) -> int:
        return a + b

    @math.function
    def div(a: int, b: int) -> float:
        return a / b

    @math.function
    def shout(s: str) -> str:
        return s.upper()

    @math.function
    def refuse(x):
        raise kith.Unauthorized("not you")

    @math.function
    def give_function():
        return print

    kd = tmp_path / "peer"
    assert peer(py, "call", py.name, "math", "add", 1, 2, key_dir=kd) == "ok 3"
    assert peer(py, "call", py.name, "math", "shout", "hi", key_dir=kd) == 'ok "HI"'
    assert peer(py, "call", py.name, "math", "add", 1, key_dir=kd) == "error bad_args expected 2 arguments, got 1"
    assert peer(py, "call", py.name, "math", "add", 1, "x", key_dir=kd) == \
        "error bad_args argument 2: expected integer, got 'x'"
    assert peer(py, "call", py.name, "math", "div", 1, 0, key_dir=kd).startswith(
        "error exception ZeroDivisionError: division by zero")
    assert peer(py, "call", py.name, "math", "refuse", 1, key_dir=kd) == "error unauthorized not you"
    assert peer(py, "call", py.name, "math", "give_function", key_dir=kd).startswith(
        "error exception TypeError: functions cannot be sent")
    assert peer(py, "call", py.name, "math", "nope", key_dir=kd).startswith("error no_such_function")
    assert peer(py, "call", py.name, "nope", "x", key_dir=kd).startswith("error no_such_service")


def test_cpp_spawns_python_actor_type(make_node, tmp_path):
    py = make_node("py@localhost")
    svc = py.service("adders")

    @svc.actor
    class Adder:
        def __init__(self, base: int):
            self.base = base

        def receive(self, actor, msg):
            if isinstance(msg, kith.Request):
                actor.reply(msg, self.base + msg.body)

    @svc.actor(name="doubler")
    def double(actor, msg):
        if isinstance(msg, kith.Request):
            actor.reply(msg, msg.body * 2)

    kd = tmp_path / "peer"
    assert peer(py, "spawn", py.name, "adders", "Adder", 5, 100, key_dir=kd) == "ok 105"
    assert peer(py, "spawn", py.name, "adders", "doubler", 21, key_dir=kd) == "ok 42"
    assert peer(py, "spawn", py.name, "adders", "Adder", 5, key_dir=kd).startswith("error bad_args")


def test_two_python_nodes(make_node):
    a = make_node("a@localhost")
    b = make_node("b@localhost")
    events = []
    sub = a.on_nodes(events.append)
    with a.node_events(timeout=20) as it:
        assert a.connect(b.endpoint, b.key) == "b@localhost"
        ev = next(it)
        assert ev.kind == "up" and ev.node == "b@localhost" and isinstance(ev.info, dict)
        wait_until(lambda: events and events[0].kind == "up", what="callback nodeup")

        kv = b.service("kv")
        store = {}

        @kv.function
        def put(k: str, v) -> bool:
            store[k] = v
            return True

        @kv.actor
        def relay(actor, msg, to):
            actor.send(to, msg)

        assert a.call("b@localhost", "kv", "put", "x", [1]) is True and store == {"x": [1]}
        good, bad = a.multicall(["a@localhost", "b@localhost", "zz@nowhere"], "kv", "put", "y", 2, timeout=5)
        assert good == {"b@localhost": True}
        assert isinstance(bad["a@localhost"], kith.NoSuchService)
        assert isinstance(bad["zz@nowhere"], kith.NodeDown)
        # send to (name, node), relay actor spawned from Python on a Python node
        b.register("inbox_b")
        a.send(("inbox_b", "b@localhost"), {"from": a.self})
        assert b.receive(timeout=10) == {"from": a.self}
        r = a.spawn("b@localhost", "kv", "relay", a.self)
        a.send(r, "via relay")
        assert a.receive(timeout=10) == "via relay"

        a.monitor_node("b@localhost")
        b.stop()
        ev = next(it)
        assert ev.kind == "down" and ev.node == "b@localhost" and ev.reason == "shutdown"
        assert a.receive(timeout=20, match=lambda m: isinstance(m, list) and m[0] == "nodedown")[1] == "b@localhost"
        wait_until(lambda: len(events) == 2 and events[1].kind == "down", what="callback nodedown")
    sub.cancel()
    assert a.nodes() == []
    assert not a.ping("b@localhost", timeout=0.2)


def test_wrong_cookie_is_unauthorized(make_node):
    a = make_node("a@localhost")
    b = make_node("b@localhost", cookie="another-cookie")
    with pytest.raises(kith.Unauthorized):
        a.connect(b.endpoint, b.key, timeout=10)


def test_connect_to_nothing_times_out(make_node):
    a = make_node("a@localhost")
    import socket
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    with pytest.raises(kith.Timeout):
        a.connect(f"tcp://127.0.0.1:{port}", a.key, timeout=0.5)


def test_bad_key_is_badarg(make_node):
    a = make_node("a@localhost")
    with pytest.raises(kith.BadArg):
        a.connect("tcp://127.0.0.1:1", "short")


def test_setup_error(make_node, tmp_path):
    a = make_node("a@localhost")
    with pytest.raises(kith.SetupError):
        kith.Node("b@localhost", listen=a.endpoint, cookie=COOKIE, key_dir=tmp_path / "b")
    with pytest.raises(kith.BadArg):
        kith.Node("no spaces@here")


def test_member_port(make_node):
    # A node has a member port beside its public endpoint; a member connects
    # there, anyone else is refused there (docs/security.md, "The member port").
    a = make_node("a@localhost")
    assert a.member_endpoint.startswith("tcp://127.0.0.1:") and a.member_endpoint != a.endpoint
    b = make_node("b@localhost")
    assert b.connect(a.member_endpoint, a.key) == "a@localhost"
    assert "a@localhost" in b.nodes()
    outsider = make_node("c@localhost", cookie="another-cookie-entirely")
    with pytest.raises(kith.Unauthorized):
        outsider.connect(a.member_endpoint, a.key, timeout=3, visitor=True)
    none = make_node("d@localhost", member_listen="off")
    assert none.member_endpoint == ""
    fixed = make_node("e@localhost", member_listen="tcp://127.0.0.1:0")
    assert fixed.member_endpoint.startswith("tcp://127.0.0.1:")
