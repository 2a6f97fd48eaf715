"""The replicated kvs from Python (issue 17): node.rkvs(replicas) on three
Python nodes over real CURVE on loopback; store through one, lookup through
another, one replica stopped (the acknowledged value still answers, writes
still acknowledged by the two left), then the other nodes stopped (writes
not acknowledged, then refused; lookups answer); bad lists refused. Every wait has a deadline."""
import pytest

import kith
from conftest import wait_until

NAMES = ["rka@localhost", "rkb@localhost", "rkc@localhost"]


@pytest.fixture
def trio(make_node):
    nodes = [make_node(n, heartbeat_interval=0.2, heartbeat_timeout=1.0) for n in NAMES]
    for i, x in enumerate(nodes):
        for y in nodes[i + 1:]:
            x.connect(y.endpoint, y.key)
    return nodes, [n.rkvs(NAMES) for n in nodes]


def test_store_through_one_lookup_through_another(trio):
    (a, b, c), (ka, kb, kc) = trio
    assert kb.write_quorum == 2 and kb.service == "rkvs" and kb.replicas == NAMES
    assert a.call("rkb@localhost", "rkvs", "store", "weather", "sunny") is True
    assert kb.local("weather") == "sunny"  # the coordinator stored it
    assert c.call("rkc@localhost", "rkvs", "lookup", "weather") == ["ok", "sunny"]
    assert a.call("rka@localhost", "rkvs", "lookup", "nothing") == "undefined"
    assert b.call("rkb@localhost", "rkvs", "store", "n", [1, 2.5, None, {"x": "y"}]) is True
    assert a.call("rkc@localhost", "rkvs", "lookup", "n") == ["ok", [1, 2.5, None, {"x": "y"}]]
    wait_until(lambda: ka.digest == kb.digest == kc.digest, 10.0, "the replicas to hold the same entries")
    assert ka.size == 2

    # One replica stopped: its service answers Shutdown; the others answer.
    kb.stop()
    assert kb.stopped and "stopped" in repr(kb)
    with pytest.raises(kith.Shutdown):
        a.call("rkb@localhost", "rkvs", "lookup", "weather")
    with pytest.raises(kith.Shutdown):
        kb.local("weather")
    assert a.call("rkc@localhost", "rkvs", "lookup", "weather") == ["ok", "sunny"]
    assert c.call("rka@localhost", "rkvs", "store", "weather", "rain", timeout=10.0) is True
    assert a.call("rkc@localhost", "rkvs", "lookup", "weather") == ["ok", "rain"]
    assert c.call("rka@localhost", "rkvs", "delete", "n", timeout=10.0) is True
    assert a.call("rka@localhost", "rkvs", "keys") == ["weather"]

    # rkc's node gone: rka still reaches rkb's node, whose replica is
    # stopped: the write is tried, stored on rka only, NOT acknowledged.
    c.stop()
    wait_until(lambda: "rkc@localhost" not in a.nodes(), 10.0, "a to see rkc down")
    with pytest.raises(kith.Timeout, match="stored on 1 of 3 replicas, 2 needed .*NOT acknowledged"):
        a.call("rka@localhost", "rkvs", "store", "other", "x")
    # rkb's node gone too: one replica of three refuses at once; it still reads.
    b.stop()
    wait_until(lambda: "rkb@localhost" not in a.nodes(), 10.0, "a to see rkb down")
    with pytest.raises(kith.NodeDown, match="needs 2 to write; nothing was stored"):
        a.call("rka@localhost", "rkvs", "store", "weather", "snow")
    assert a.call("rka@localhost", "rkvs", "lookup", "weather") == ["ok", "rain"]
    assert ka.local("weather") == "rain"


def test_bad_replica_lists_are_refused(make_node):
    n = make_node("rkx@localhost")
    with pytest.raises(kith.BadArg, match="must include this node"):
        n.rkvs(["p@localhost", "q@localhost"])
    with pytest.raises(kith.BadArg, match="names a node twice"):
        n.rkvs(["rkx@localhost", "rkx@localhost"])
    with pytest.raises(kith.BadArg, match="write_quorum 3 exceeds"):
        n.rkvs(["rkx@localhost", "y@localhost"], write_quorum=3)
    with pytest.raises(kith.BadArg, match="invalid"):
        n.rkvs(["rkx@localhost"], service="no spaces")
    with pytest.raises(TypeError, match="list of node names"):
        n.rkvs("rkx@localhost")
    kv = n.rkvs(["rkx@localhost"])
    with pytest.raises(kith.BadArg, match="already runs"):
        n.rkvs(["rkx@localhost"])
    assert n.call("rkx@localhost", "rkvs", "store", "k", 1) is True  # a list of one: its own majority
    with kv:
        pass  # stops it
    again = n.rkvs(["rkx@localhost"])  # a fresh, empty replica
    assert again.local("k") is None
    n.stop()
    with pytest.raises(kith.Shutdown):
        again.size
