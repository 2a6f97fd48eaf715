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
    assert s["trust"] == "stranger" and not s["connected"]
    # A beacon sent before set_public("echo") may be the one heard first.
    wait_until(lambda: [x["services"] for x in a.seen() if x["name"] == other.name] == [["echo"]],
               what="the stranger's public services in its next beacon")
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


def stranger_query():
    """An unauthenticated discovery query (docs/protocol.md, "Discovery
    beacon"): no name, no cluster section, padded to 1200 bytes."""
    import os
    import struct
    import time
    b = b"kith" + bytes([1, 3, 0, 0]) + struct.pack(">QQH", int(time.time() * 1000), 1, 4370)
    b += os.urandom(32) + b"\x00" + b"\x00"  # key; no endpoint; no public services
    return b + bytes(1200 - len(b))


def test_flood_limits_and_their_counters(make_node):
    # issue 13: the options and counters of the flood limits, from Python.
    import socket
    port = free_port()
    n = make_node("limited@localhost", discovery=loopback_discovery(
        port, max_answers_per_s=2, max_stranger_beacons_per_s=50, max_clock_skew=5.0))
    stats = n.discovery_stats()
    assert {"stale", "answers_limited", "rate_limited", "replayed", "queries_answered"} <= set(stats)
    assert stats["stale"] == 0 and stats["answers_limited"] == 0
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", 0))
    try:
        for _ in range(10):
            s.sendto(stranger_query(), ("127.0.0.1", port))
        wait_until(lambda: n.discovery_stats()["queries_answered"] + n.discovery_stats()["answers_limited"] >= 10,
                   what="every query answered or limited")
        stats = n.discovery_stats()
        # At most 2 a second in all (and 3 per source): the rest are limited.
        assert stats["queries_answered"] <= 3 and stats["answers_limited"] >= 7, stats
        s.settimeout(5)
        answer, _ = s.recvfrom(2048)
        assert answer[:4] == b"kith" and answer[5] == 1 and len(answer) <= 1200  # an announce, no bigger
    finally:
        s.close()


def test_flood_limit_options_checked(make_node):
    with pytest.raises(kith.BadArg, match="max_answers_per_s"):
        make_node("neg@localhost", discovery=loopback_discovery(free_port(), max_answers_per_s=-1))
    with pytest.raises(kith.BadArg, match="max_stranger_beacons_per_s"):
        make_node("big@localhost", discovery=loopback_discovery(free_port(), max_stranger_beacons_per_s=10**9))
    with pytest.raises(kith.BadArg, match="max_clock_skew"):
        make_node("skew@localhost", discovery=loopback_discovery(free_port(), max_clock_skew=0))
    with pytest.raises(ValueError, match="max_clock_skew"):  # the list of known options
        make_node("typo@localhost", discovery={"max_clock_skwe": 1})
    with pytest.raises(TypeError, match="callable"):
        make_node("log@localhost", discovery=loopback_discovery(free_port(), log="stderr"))


def test_discovery_hints_go_to_the_node_log_or_its_own(make_node):
    # A stranger (another cookie) on the beacon port: discovery says so once
    # (source "discovery"), to the node's log= or to discovery's own "log".
    port = free_port()
    node_log, disc_log = [], []
    a = make_node("hinted@localhost", log=node_log.append, discovery=loopback_discovery(port))
    b = make_node("hinted2@localhost", log=node_log.append,
                  discovery=loopback_discovery(port, log=disc_log.append))
    make_node("stranger@localhost", cookie="another-cluster", discovery=loopback_discovery(port))
    wait_until(lambda: any(r.source == "discovery" and r.node == a.name and "stranger" in r.text
                           for r in node_log), what="a's stranger hint in its node log")
    wait_until(lambda: any(r.source == "discovery" and r.node == b.name and "stranger" in r.text
                           for r in disc_log), what="b's stranger hint in its discovery log")
    assert not any(r.source == "discovery" and r.node == b.name for r in node_log)
