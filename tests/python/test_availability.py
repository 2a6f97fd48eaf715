"""Availability from Python (issue 17): supervisors (strategies, intensity,
child kinds, a remote child on a C++ node process), process groups, global
names (call by global name) and a failover service over three Python nodes,
all over real CURVE on loopback. Every wait has a deadline."""
import pytest

import kith
from conftest import wait_until


class Worker:
    """A child: reports ("started", id, pid) to `report` from its init; quits with
    the reason it is sent as ["quit", reason]; answers requests with its id."""

    def __init__(self, id, report):
        self.id, self.report = id, report

    def init(self, actor):
        actor.send(self.report, ["started", self.id, actor.self])

    def receive(self, actor, msg):
        if isinstance(msg, kith.Request):
            actor.reply(msg, self.id)
        elif isinstance(msg, list) and msg[:1] == ["quit"]:
            actor.quit(msg[1])


def started(node, n, timeout=10.0):
    """The next n ("started", id, pid) reports, as {id: pid}, in arrival order."""
    got = {}
    for _ in range(n):
        m = node.receive(timeout=timeout, match=lambda m: isinstance(m, list) and m[:1] == ["started"])
        got[m[1]] = m[2]
    return got


def pids(node, sup):
    return {c["id"]: c["pid"] for c in node.which_children(sup)}


def test_one_for_one_restarts_within_intensity_and_gives_up_beyond(make_node):
    a = make_node("sup@localhost")
    sup = a.start_supervisor([kith.Child("w1", Worker, "w1", a.self), kith.Child("w2", Worker, "w2", a.self)],
                             strategy="one_for_one", intensity=1, period=10.0)
    first = started(a, 2)
    assert set(first) == {"w1", "w2"} and pids(a, sup) == first
    assert a.call_pid(first["w1"], "who") == "w1"
    ref = a.monitor(sup)
    a.send(first["w1"], ["quit", "boom"])
    again = started(a, 1)
    assert again["w1"] != first["w1"]
    kids = {c["id"]: c for c in a.which_children(sup)}
    assert kids["w1"]["restarts"] == 1 and kids["w1"]["state"] == "running"
    assert kids["w2"]["pid"] == first["w2"]  # one_for_one: the other is untouched
    # A second restart within the period is beyond intensity 1: it gives up.
    a.send(again["w1"], ["quit", "boom"])
    down = a.receive(timeout=10.0, match=lambda m: isinstance(m, kith.Down) and m.ref == ref)
    assert down.reason == "shutdown"
    wait_until(lambda: not a.alive(first["w2"]), 10.0, "the supervisor to stop its other child")


@pytest.mark.parametrize("strategy,restarted", [("one_for_all", {"a", "b", "c"}), ("rest_for_one", {"b", "c"})])
def test_strategies_restart_the_right_children(make_node, strategy, restarted):
    n = make_node("strat@localhost")
    sup = n.start_supervisor([kith.Child(i, Worker, i, n.self) for i in "abc"], strategy=strategy, intensity=3)
    before = started(n, 3)
    n.send(before["b"], ["quit", "boom"])
    after = started(n, len(restarted))
    assert set(after) == restarted
    now = pids(n, sup)
    for i in "abc":
        assert (now[i] != before[i]) == (i in restarted), (i, strategy)
    n.stop_supervisor(sup)
    assert not any(n.alive(p) for p in now.values())


def test_child_kinds(make_node):
    n = make_node("kinds@localhost")
    sup = n.start_supervisor([kith.Child("perm", Worker, "perm", n.self),
                              kith.Child("trans", Worker, "trans", n.self, restart="transient"),
                              kith.Child("temp", Worker, "temp", n.self, restart="temporary")], intensity=10)
    first = started(n, 3)
    # permanent: restarted even after a normal exit
    n.send(first["perm"], ["quit", "normal"])
    assert "perm" in started(n, 1)
    # transient: not after a normal exit (after a crash: the next test)
    n.send(first["trans"], ["quit", "normal"])
    wait_until(lambda: {c["id"]: c["state"] for c in n.which_children(sup)}["trans"] == "stopped", 10.0, "trans stopped")
    # temporary: never restarted, even after a crash; it leaves the list (as in OTP)
    n.send(first["temp"], ["quit", "boom"])
    wait_until(lambda: [c["id"] for c in n.which_children(sup)] == ["perm", "trans"], 10.0, "temp removed")
    with pytest.raises(Exception):
        n.receive(timeout=0.3, match=lambda m: isinstance(m, list) and m[:1] == ["started"])
    with pytest.raises(ValueError, match="restart must be"):
        kith.Child("x", Worker, "x", n.self, restart="sometimes")
    with pytest.raises(kith.BadArg, match="strategy must be"):
        n.start_supervisor([kith.Child("x", Worker, "x", n.self)], strategy="all_for_none")


def test_transient_child_is_restarted_after_a_crash(make_node):
    n = make_node("trans@localhost")
    n.start_supervisor([kith.Child("t", Worker, "t", n.self, restart="transient")], intensity=5)
    first = started(n, 1)
    n.send(first["t"], ["quit", "boom"])
    assert started(n, 1)["t"] != first["t"]


def test_remote_child_on_a_cpp_node(make_node, cpp_node):
    py = make_node("py@localhost")
    py.connect(cpp_node.endpoint, cpp_node.key)
    sup = py.start_supervisor([kith.Child.remote("echo", "cpp@localhost", "echo", "server")])
    kids = py.which_children(sup)
    assert kids[0]["node"] == "cpp@localhost" and kids[0]["state"] == "running"
    assert kids[0]["pid"].node == "cpp@localhost"
    py.exit(kids[0]["pid"], "kill")
    wait_until(lambda: (lambda k: k["state"] == "running" and k["pid"] != kids[0]["pid"])(py.which_children(sup)[0]),
               10.0, "the remote child restarted")
    py.stop_supervisor(sup)


def mesh(*nodes):
    for i, x in enumerate(nodes):
        for y in nodes[i + 1:]:
            x.connect(y.endpoint, y.key)


def test_process_groups_across_nodes(make_node):
    a, b = make_node("pga@localhost"), make_node("pgb@localhost")
    mesh(a, b)
    ga, gb = a.pg(), b.pg()
    assert a.pg() is ga and ga.scope == "default"
    events = b.mailbox()
    assert gb.monitor(events.self) == {}
    member = a.spawn(lambda actor, msg: actor.send(msg[0], ["got", actor.self, msg[1]]))
    ga.join("room", member)
    wait_until(lambda: gb.members("room") == [member], 10.0, "b to see a's member")
    ev = events.receive(timeout=10.0)
    assert ev == ["pg", "default", "join", "room", [member]]
    assert gb.groups() == ["room"] and gb.local_members("room") == []
    assert gb.send_all("room", [b.self, "hello"]) == 1
    assert b.receive(timeout=10.0) == ["got", member, "hello"]
    # a member that ends leaves everywhere
    a.exit(member, "kill")
    wait_until(lambda: gb.members("room") == [], 10.0, "the ended member to leave")
    assert events.receive(timeout=10.0) == ["pg", "default", "leave", "room", [member]]
    # errors: a pid of another node, leave of a non-member
    with pytest.raises(kith.BadArg):
        gb.join("room", a.self)
    with pytest.raises(kith.BadArg):
        ga.leave("room", a.self)
    # a node that stops takes its members with it
    m2 = a.spawn(lambda actor, msg: None)
    ga.join("room", m2)
    wait_until(lambda: gb.members("room") == [m2], 10.0, "b to see the second member")
    a.stop()
    wait_until(lambda: gb.members("room") == [], 10.0, "the stopped node's members to leave")
    with pytest.raises(kith.Shutdown):
        ga.members("room")


def test_global_names_and_call_by_global_name(make_node):
    a, b = make_node("gla@localhost"), make_node("glb@localhost")
    mesh(a, b)
    na, nb = a.global_names(), b.global_names()
    kvs = a.spawn(Worker, "kvs", a.self)
    na.register("kvs", kvs)
    wait_until(lambda: _where(nb, "kvs") == kvs, 10.0, "b to learn the name")
    assert nb.call("kvs", "who") == "kvs"  # call by global name, from the other node
    assert [(n, p) for n, p, _ in nb.registered()] == [("kvs", kvs)]
    other = b.spawn(Worker, "other", b.self)
    with pytest.raises(kith.BadArg, match="held"):
        nb.register("kvs", other)
    nb.send("kvs", ["quit", "normal"])
    wait_until(lambda: _where(nb, "kvs") is None, 10.0, "the name to be freed when its holder ends")
    with pytest.raises(kith.NoProc):
        nb.whereis("kvs")
    with pytest.raises(kith.NoProc):
        nb.call("kvs", "who")
    nb.register("kvs", other)
    wait_until(lambda: _where(na, "kvs") == other, 10.0, "a to learn the new holder")
    nb.unregister("kvs")
    wait_until(lambda: _where(na, "kvs") is None, 10.0, "a to learn the unregister")
    with pytest.raises(kith.BadArg):
        na.register("", kvs)


def _where(names, name):
    try:
        return names.whereis(name)
    except kith.NoProc:
        return None


class Answer:
    """A failover instance: answers a request with (its node, its pid)."""

    def receive(self, actor, msg):
        if isinstance(msg, kith.Request):
            actor.reply(msg, [actor.node, actor.self])


def test_failover_moves_with_its_global_name(make_node):
    names = ["foa@localhost", "fob@localhost", "foc@localhost"]
    nodes = [make_node(n, heartbeat_interval=0.2, heartbeat_timeout=1.0) for n in names]
    mesh(*nodes)
    fos = [n.failover("svc", names, Answer, delay=0.2) for n in nodes]
    a, b, c = nodes
    wait_until(lambda: fos[0].running_here, 15.0, "the first node to run the instance")
    assert not fos[1].running_here and not fos[2].running_here
    wait_until(lambda: _where(c.global_names(), "svc") == fos[0].instance, 10.0, "c to learn the name")
    assert c.global_names().call("svc", "where")[0] == "foa@localhost"
    a.stop()
    wait_until(lambda: fos[1].running_here, 15.0, "b to take over")
    wait_until(lambda: _answer(c) == "fob@localhost", 10.0, "the call by global name to reach b")
    assert not fos[2].running_here
    with pytest.raises(kith.BadArg, match="failover"):
        c.failover("svc", names, Answer)  # a second one of that name here
    with pytest.raises(kith.BadArg):
        c.failover("lonely", ["x@localhost", "y@localhost"], Answer)  # a list without this node


def _answer(node):
    try:
        return node.global_names().call("svc", "where", timeout=1.0)[0]
    except (kith.NoProc, kith.Timeout, kith.NodeDown):
        return None
