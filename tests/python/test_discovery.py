"""LAN discovery from Python, on loopback only: every test has its own beacon
port and sends beacons to 127.255.255.255 (never the LAN)."""
import pytest

import kith
from conftest import COOKIE, free_port, loopback_discovery, wait_until


def test_cluster_members_find_and_connect_each_other(make_node):
    port = free_port()
    a = make_node("disca@localhost", discovery=loopback_discovery(port))
    b = make_node("discb@localhost", discovery=loopback_discovery(port))
    assert a.discovery and b.discovery
    found = a.find("discb", timeout=20)
    assert found["name"] == b.name and found["trust"] == "cluster"
    assert found["endpoint"] == b.endpoint and found["key"] == b.key and found["fingerprint"] == b.fingerprint
    wait_until(lambda: b.name in a.nodes() and a.name in b.nodes(), what="auto-connect")
    wait_until(lambda: any(s["name"] == a.name and s["connected"] for s in b.seen()), what="b sees a connected")
    assert [s["name"] for s in a.seen()] == [b.name]
    assert a.seen()[0]["age"] >= 0
    stats = a.discovery_stats()
    assert stats["beacons_sent"] > 0 and stats["beacons_received"] > 0 and stats["bad_hmac"] == 0

    # Stopping a node (discovery first, then the node) takes it off the other's list.
    a.stop()
    wait_until(lambda: a.name not in b.nodes(), what="a gone")


def test_other_clusters_are_strangers(make_node):
    port = free_port()
    a = make_node("mine@localhost", services=["echo"], discovery=loopback_discovery(port))
    other = make_node("theirs@localhost", cookie="another-cluster", services=["kvs", "echo"],
                      discovery=loopback_discovery(port))
    other.set_public("echo")
    s = a.find("theirs", timeout=20, connect=False)
    assert s["trust"] == "stranger" and s["services"] == ["echo"] and not s["connected"]
    assert other.name not in a.nodes()
    # find() connects to a stranger with public services as a visitor: usable at once.
    s = a.find("theirs", timeout=20)
    assert s["connected"]
    assert a.call("theirs", "echo", "echo", "hi") == "hi"
    with pytest.raises(kith.Unauthorized):
        a.call("theirs", "kvs", "keys")


def test_find_returns_once_usable_and_short_names_work(make_node):
    # issue 14: an immediate call after find() never fails with "not connected".
    for i in range(6):
        port = free_port()
        g = make_node(f"gandalf{i}@localhost", services=["kvs"], discovery=loopback_discovery(port))
        me = make_node(f"student{i}@localhost", discovery=loopback_discovery(port))
        found = me.find(f"gandalf{i}", timeout=20)
        assert found["connected"] and found["name"] == g.name
        assert me.call(f"gandalf{i}", "kvs", "store", "weather", "fine") is True
        assert me.ping(f"gandalf{i}")
        assert me.resolve(f"gandalf{i}") == g.name
        g.stop()
        me.stop()


def test_short_name_ambiguous_is_badarg(make_node):
    port = free_port()
    make_node("twin@hosta", discovery=loopback_discovery(port))
    make_node("twin@hostb", discovery=loopback_discovery(port))
    me = make_node("asker@localhost", discovery=loopback_discovery(port))
    wait_until(lambda: len([n for n in me.nodes() if n.startswith("twin@")]) == 2, what="both twins")
    with pytest.raises(kith.BadArg, match="ambiguous"):
        me.call("twin", "kvs", "keys")


def test_find_times_out_with_what_was_heard(make_node):
    a = make_node("lonely@localhost", discovery=loopback_discovery(free_port()))
    with pytest.raises(kith.Timeout) as e:
        a.find("nobody", timeout=0.5)
    assert e.value.code == "timeout"


def test_listen_only_without_auto_connect(make_node):
    port = free_port()
    quiet = make_node("quiet@localhost", discovery=loopback_discovery(port, announce=False, auto_connect=False))
    loud = make_node("loud@localhost", discovery=loopback_discovery(port, auto_connect=False))
    assert quiet.find("loud", timeout=20)["name"] == loud.name
    with pytest.raises(kith.Timeout):
        loud.find("quiet", timeout=0.6)  # it never announces


def test_discovery_off_and_options_checked(make_node):
    n = make_node("plain@localhost")  # loopback listen: discovery off by default
    assert not n.discovery
    with pytest.raises(kith.BadArg, match="discovery"):
        n.seen()
    with pytest.raises(ValueError, match="beacon_port"):
        make_node("typo@localhost", discovery={"beacon_prot": 1})
    with pytest.raises(kith.BadArg):
        make_node("badport@localhost", discovery={"beacon_port": 0})
    with pytest.raises(kith.BadArg, match="listening"):
        kith.Node("local@localhost", discovery=True)


def test_default_is_on_for_lan_listeners_only():
    # The rule Node(discovery=None) follows (not started here: a LAN node
    # would broadcast beyond loopback).
    opts = kith._discovery_options
    assert opts(None, "tcp://*:4370", False) == {}
    assert opts(None, "tcp://0.0.0.0:4370", False) == {}
    assert opts(None, "tcp://192.0.2.7:4370", False) == {}
    assert opts(None, "tcp://eth0:4370", False) == {}
    assert opts(None, "tcp://127.0.0.1:0", False) is None
    assert opts(None, "tcp://localhost:4370", False) is None
    assert opts(None, "tcp://[::1]:4370", False) is None
    assert opts(None, "", False) is None
    assert opts(None, "tcp://*:4370", True) is None  # hidden nodes stay quiet
    assert opts(True, "tcp://127.0.0.1:0", False) == {}
    assert opts(False, "tcp://*:4370", False) is None
    with pytest.raises(TypeError):
        opts("yes", "tcp://*:1", False)


def test_dropping_a_node_with_discovery_stops_both(make_node, tmp_path):
    # No stop(): the destructor stops discovery, then the node (GIL released).
    port = free_port()
    b = make_node("stays@localhost", discovery=loopback_discovery(port))
    a = kith.Node("dropped@localhost", listen="tcp://127.0.0.1:0", cookie=COOKIE,
                  key_dir=tmp_path / "dropped", discovery=loopback_discovery(port))
    wait_until(lambda: a.name in b.nodes(), what="auto-connect")
    name = a.name
    del a
    wait_until(lambda: name not in b.nodes(), what="dropped node gone")
