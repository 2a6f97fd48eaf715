"""One Python node: actors, mailboxes, names, links, monitors, selective
receive, services called from Python, and the GIL under load."""
import threading

import pytest

import kith
from conftest import wait_until


def echo(actor, msg):
    if isinstance(msg, kith.Request):
        actor.reply(msg, msg.body)


def test_spawn_function_and_call():
    with kith.Node("local@localhost", workers=2) as n:
        p = n.spawn(echo)
        assert isinstance(p, kith.Pid) and p.node == "local@localhost"
        assert n.call_pid(p, ["hi", 1]) == ["hi", 1]


class Counter:
    def __init__(self, start=0):
        self.count = start

    def receive(self, actor, msg):
        if msg == "inc":
            self.count += 1
        elif isinstance(msg, list) and msg[0] == "get":
            actor.send(msg[1], self.count)


def test_spawn_class_with_receive():
    with kith.Node("local@localhost", workers=2) as n:
        c = n.spawn(Counter, 10)
        for _ in range(5):
            n.send(c, "inc")
        n.send(c, ["get", n.self])
        assert n.receive(timeout=10) == 15


def test_send_to_registered_name_and_whereis():
    with kith.Node("local@localhost", workers=2) as n:
        c = n.spawn(Counter())
        n.register("counter", c)
        assert n.whereis("counter") == c
        assert n.whereis("nobody") is None
        n.send("counter", "inc")
        n.send(("counter", n.name), "inc")
        n.send("counter", ["get", n.self])
        assert n.receive(timeout=10) == 2
        with pytest.raises(kith.BadArg):
            n.register("counter", n.self)
        n.unregister("counter")
        with pytest.raises(kith.BadArg):
            n.unregister("counter")


def test_selective_receive_keeps_order():
    with kith.Node("local@localhost", workers=2) as n:
        for x in [1, "a", 2, "b", 3]:
            n.send(n.self, x)
        assert n.receive(timeout=5, match=lambda m: isinstance(m, str)) == "a"
        assert n.receive(timeout=5, match=lambda m: isinstance(m, str)) == "b"
        assert [n.receive(timeout=5) for _ in range(3)] == [1, 2, 3]
        with pytest.raises(kith.Timeout):
            n.receive(timeout=0.05, match=lambda m: m == "never")


def test_actor_exception_ends_it_with_the_traceback():
    def bad(actor, msg):
        return 1 / 0

    with kith.Node("local@localhost", workers=2) as n:
        p, r = n.spawn_monitor(bad)
        n.send(p, "go")
        d = n.receive(timeout=10, match=lambda m: isinstance(m, kith.Down))
        assert d.ref == r and d.pid == p
        assert "Traceback" in d.reason and "ZeroDivisionError" in d.reason and "bad" in d.reason
        assert not n.alive(p)


def test_link_delivers_exit_to_the_mailbox():
    def quitter(actor, msg):
        actor.quit("boom")

    with kith.Node("local@localhost", workers=2) as n:
        p = n.spawn_link(quitter)
        n.send(p, "go")
        x = n.receive(timeout=10, match=lambda m: isinstance(m, kith.Exit))
        assert x.pid == p and x.reason == "boom"


def test_monitor_a_dead_pid_gives_noproc():
    with kith.Node("local@localhost", workers=2) as n:
        r = n.monitor(kith.Pid(n.name, 999999))
        d = n.receive(timeout=10)
        assert isinstance(d, kith.Down) and d.ref == r and d.reason == "noproc"


def test_call_pid_of_dead_actor_is_noproc():
    with kith.Node("local@localhost", workers=2) as n:
        with pytest.raises(kith.NoProc):
            n.call_pid(kith.Pid(n.name, 999999), "x", timeout=5)


def test_actor_context_spawns_and_uses_timers():
    def parent(actor, msg):
        if msg[0] == "start":
            child = actor.spawn(echo)
            actor.send_after(0.01, actor.self, ["child", child, msg[1]])
        elif msg[0] == "child":
            actor.send(msg[2], ["got", msg[1]])

    with kith.Node("local@localhost", workers=2) as n:
        p = n.spawn(parent)
        n.send(p, ["start", n.self])
        got = n.receive(timeout=10)
        assert got[0] == "got" and isinstance(got[1], kith.Pid)
        assert n.call_pid(got[1], 5) == 5


def test_actor_init_and_stale_context():
    kept = []

    class WithInit:
        def init(self, actor):
            actor.register("inited")

        def receive(self, actor, msg):
            kept.append(actor)
            actor.send(msg, "ok")

    with kith.Node("local@localhost", workers=2) as n:
        p = n.spawn(WithInit)
        wait_until(lambda: n.whereis("inited") == p, what="init to register")
        n.send(p, n.self)
        assert n.receive(timeout=10) == "ok"
        with pytest.raises(ValueError, match="only valid inside its handler"):
            kept[0].send(n.self, "late")


def test_many_python_actors_message_each_other():
    """GIL sanity: a ring of 200 Python actors passes a token 20 times round
    while 4 Python threads call an echo actor; nothing is lost or stuck."""
    N, ROUNDS = 200, 20

    table = {}

    def member(actor, msg):
        if msg[0] == "next":
            table[actor.self] = msg[1]
            return
        token, left, home = msg
        if left == 0:
            actor.send(home, ["done", token])
        else:
            actor.send(table[actor.self], [token + 1, left - 1, home])

    with kith.Node("ring@localhost", workers=2) as n:
        pids = [n.spawn(member) for _ in range(N)]
        for i, p in enumerate(pids):
            n.send(p, ["next", pids[(i + 1) % N]])
        wait_until(lambda: len(table) == N, what="ring set up")
        e = n.spawn(echo)
        errors = []

        def caller(k):
            try:
                mb = n.mailbox()
                for j in range(200):
                    assert mb.call(e, [k, j], timeout=30) == [k, j]
                mb.close()
            except Exception as ex:  # reported below
                errors.append(ex)
        threads = [threading.Thread(target=caller, args=(k,)) for k in range(4)]
        for t in threads:
            t.start()
        n.send(pids[0], [0, N * ROUNDS, n.self])
        assert n.receive(timeout=60) == ["done", N * ROUNDS]
        for t in threads:
            t.join(60)
        assert not errors


def test_service_called_from_python():
    with kith.Node("svc@localhost", listen="tcp://127.0.0.1:0", cookie="c") as n:
        math = n.service("math")

        @math.function
        def add(a: int, b: int) -> int:
            return a + b

        @math.function(name="div")
        def divide(a: float, b: float) -> float:
            return a / b

        assert n.call(n.name, "math", "add", 1, 2) == 3
        assert n.call(n.name, "math", "div", 1, 4) == 0.25
        assert sorted(n.services()) == ["math"]


def test_service_class_decorator():
    with kith.Node("svc@localhost", listen="tcp://127.0.0.1:0", cookie="c") as n:
        @n.service("greeter")
        class Greeter:
            def hello(self, who: str) -> str:
                return "hello " + who

        assert n.call(n.name, "greeter", "hello", "bob") == "hello bob"


def test_builtin_cpp_services_in_a_python_node():
    with kith.Node("svc@localhost", listen="tcp://127.0.0.1:0", cookie="c", services=["kvs", "echo"]) as n:
        assert n.call(n.name, "kvs", "store", "k", [1, 2]) is True
        assert n.call(n.name, "kvs", "lookup", "k") == ["ok", [1, 2]]
        assert n.call(n.name, "echo", "echo", {"x": b"\x01"}) == {"x": b"\x01"}


def test_stop_is_idempotent_and_context_manager():
    n = kith.Node("stop@localhost")
    with n:
        n.spawn(echo)
    assert n.stopped
    n.stop()
    with pytest.raises(kith.Shutdown):
        n.spawn(echo)


def test_concurrent_selective_receivers_on_one_mailbox():
    """Two threads receive from one mailbox, each selecting its own tag, while
    actors send; every message is received exactly once, by the right one."""
    N = 500

    def sender(actor, msg):
        to, tag = msg
        for i in range(N):
            actor.send(to, [tag, i])

    with kith.Node("sel@localhost", workers=2) as n:
        mb = n.mailbox()
        got = {"a": [], "b": []}
        errors = []

        def recv(tag):
            try:
                for _ in range(N):
                    m = mb.receive(timeout=30, match=lambda m, tag=tag: m[0] == tag)
                    got[tag].append(m[1])
            except Exception as e:  # reported below
                errors.append(e)
        threads = [threading.Thread(target=recv, args=(t,)) for t in "ab"]
        for t in threads:
            t.start()
        n.send(n.spawn(sender), [mb.self, "a"])
        n.send(n.spawn(sender), [mb.self, "b"])
        for t in threads:
            t.join(60)
        assert not errors
        assert got["a"] == list(range(N)) and got["b"] == list(range(N))
        mb.close()
        with pytest.raises(kith.Shutdown):
            mb.receive(timeout=0.01)


def test_raising_match_loses_no_message():
    with kith.Node("sel@localhost", workers=2) as n:
        n.send(n.self, "first")

        def bad(m):
            raise RuntimeError("bad predicate")
        with pytest.raises(RuntimeError):
            n.receive(timeout=5, match=bad)
        assert n.receive(timeout=5) == "first"


def test_stop_from_a_handler_is_refused():
    with kith.Node("stopper@localhost", workers=2) as n:
        def stopper(actor, msg):
            try:
                n.stop()
            except kith.BadArg as e:
                actor.send(msg, str(e))
        n.send(n.spawn(stopper), n.self)
        assert "cannot be stopped from its own actors" in n.receive(timeout=10)
        assert not n.stopped


def test_actor_links_monitors_and_trap_exit():
    def watcher(actor, msg):
        if msg == "start":
            actor.trap_exit(True)
            child = actor.spawn_link(lambda a, m: a.quit("child-done"))
            watcher.mon = actor.monitor(child)
            actor.register("watcher")
            actor.send(child, "go")
        elif isinstance(msg, kith.Exit):
            watcher.events.append(("exit", msg.reason))
        elif isinstance(msg, kith.Down):
            watcher.events.append(("down", msg.reason, msg.ref == watcher.mon))
            actor.send(watcher.home, watcher.events)
    watcher.events = []

    with kith.Node("links@localhost", workers=2) as n:
        watcher.home = n.self
        w = n.spawn(watcher)
        n.send(w, "start")
        events = n.receive(timeout=10)
        assert ["exit", "child-done"] in events and ["down", "child-done", True] in events  # tuples arrive as lists
        assert n.whereis("watcher") == w
        n.exit(w, "kill")
        wait_until(lambda: not n.alive(w), what="killed actor")


def test_mailbox_answers_requests_and_counts():
    with kith.Node("mb@localhost", workers=2) as n:
        mb = n.mailbox()
        mb.register("server")
        assert n.whereis("server") == mb.self
        out = {}
        t = threading.Thread(target=lambda: out.setdefault("r", n.call_pid(mb.self, "ping", timeout=30)))
        t.start()
        req = mb.receive(timeout=30)
        assert isinstance(req, kith.Request) and req.body == "ping" and req.sender.node == n.name
        mb.reply(req, "pong")
        t.join(30)
        assert out["r"] == "pong"
        n.send(mb.self, 1)
        n.send(mb.self, 2)
        wait_until(lambda: len(mb) == 2, what="two queued messages")
        assert mb.receive(timeout=5, match=lambda m: m == 2) == 2 and len(mb) == 1
        mb.close()


def test_node_events_callback_survives_an_exception(make_node):
    a = make_node("a@localhost")
    b = make_node("b@localhost")
    seen = []

    def cb(ev):
        seen.append(ev)
        raise RuntimeError("callback bug")
    sub = a.on_nodes(cb)
    a.connect(b.endpoint, b.key)
    wait_until(lambda: len(seen) == 1, what="nodeup")
    b.stop()
    wait_until(lambda: len(seen) == 2, what="nodedown after a raising callback")
    sub.cancel()
