"""Relays from Python (docs/relay.md): a node serving as a relay, Alice
registered at it with a relay grant, Bob reaching her with a grant that
carries the relay's route (direct endpoints first), the directory, and the
refusals: a name registered by another key, a stranger registering at an
open relay. Three people, three cookies: nobody is a member of another's
cluster."""
import hashlib
import os
import re

import pytest

import kith
from conftest import wait_until


@pytest.fixture
def world(make_node):
    r = make_node("relay@localhost", cookie="relay-owner-cookie", services=[], discovery=False)
    relay = r.serve_relay("127.0.0.1:0", open=True)
    alice = make_node("alice@localhost", cookie="alice-cookie", services=["kvs", "echo"], discovery=False)
    bob = make_node("bob@localhost", cookie="bob-cookie", services=[], discovery=False)
    rg = r.grant("alice", "relay")
    return r, relay, alice, bob, rg


def unreachable_copy(g):
    """The grant with its direct endpoint replaced by one nobody answers (as
    seen from outside Alice's home router); the checksum made again."""
    text = re.sub(r"(?m)^endpoint: .*$", "endpoint: tcp://127.0.0.1:9", g.to_text())
    body = text[:text.rindex("checksum: ")]
    return kith.parse_grant(body + "checksum: " + hashlib.blake2b(body.encode(), digest_size=32).hexdigest()[:32] + "\n")


def test_bob_reaches_alice_through_the_relay(world, tmp_path):
    r, relay, alice, bob, rg = world
    reg = alice.use_relay(rg)
    assert reg.relay == r.name
    g = alice.grant("bob", "kvs").with_relay(rg)
    assert g.version == 2 and g.relays == [{"node": r.name, "endpoint": rg.endpoints[0], "key": r.key}]
    assert "client-secret-key: " + rg.to_text().split("client-secret-key: ")[1].split()[0] not in g.to_text()
    g.save(tmp_path / "bob.grant")
    assert kith.load_grant(tmp_path / "bob.grant").relays == g.relays

    home = unreachable_copy(g)
    assert bob.connect_via(home, timeout=4) == alice.name
    bob.call(alice.name, "kvs", "store", "weather", "rain")
    assert bob.call(alice.name, "kvs", "lookup", "weather") == ["ok", "rain"]
    assert relay.counters()["sessions"] == 1
    # Authorization on Alice's node is her grant's, as on a direct link.
    with pytest.raises(kith.Unauthorized):
        bob.call(alice.name, "echo", "echo", 1)
    listed = bob.relay_directory(home)
    assert [e["name"] for e in listed] == [alice.name]
    # WTD's directory: the services Alice offers and the key she registered with.
    assert listed[0]["services"] == ["echo", "kvs"]
    # She registered with a relay grant: the relay knows only the grant's key,
    # which the directory does not show as if it were hers (Bob checks her
    # node key, from her grant file, end to end).
    assert listed[0]["registered_with"] == "grant"
    assert listed[0]["key"] is None and listed[0]["fingerprint"] is None
    assert [e["name"] for e in reg.directory()] == [alice.name]


def test_a_direct_endpoint_that_works_is_preferred(world):
    r, relay, alice, bob, rg = world
    ac = alice.use_relay(rg)
    assert ac.registration_error() is None
    g = alice.grant("bob", "kvs").with_relay(rg)
    assert bob.connect_via(g) == alice.name
    assert bob.call(alice.name, "kvs", "keys") == []
    assert relay.counters()["sessions_total"] == 0


def test_a_name_registered_by_another_key_is_refused(world, make_node, tmp_path):
    r, relay, alice, bob, rg = world
    alice.use_relay(rg)
    alice.stop()
    wait_until(lambda: relay.counters()["registrations"] == 0, 5)
    eve = make_node("alice@localhost", cookie="eve-cookie", key_dir=tmp_path / "eve", discovery=False)
    with pytest.raises(kith.Unauthorized, match="registered at this relay by another key"):
        eve.use_relay(r.grant("eve", "relay"))


def test_a_stranger_may_dial_an_open_relay_but_not_register(world):
    r, relay, alice, bob, rg = world
    route = {"node": r.name, "endpoint": rg.endpoints[0], "key": r.key}
    with pytest.raises(kith.Unauthorized, match="strangers dial but not register"):
        bob.use_relay(route)
    with pytest.raises(kith.NoProc):
        bob.use_relay(route, register=False).connect(alice.grant("bob", "kvs"))


def test_relay_errors_keep_their_codes(world, make_node, tmp_path):
    """Relay refusals raise by the relay's error code, not by its wording: a
    relay that is full is Overloaded, a relay this node has no link to is
    NodeDown (never guessed from the message's text)."""
    r, relay, alice, bob, rg = world
    with pytest.raises(kith.NodeDown):
        alice.use_relay("nobody@nowhere", timeout=1)
    small = make_node("small@localhost", cookie="small-cookie", services=[], discovery=False)
    small.serve_relay("127.0.0.1:0", max_registrations=1)
    alice.use_relay(small.grant("alice", "relay"))
    carol = make_node("carol@localhost", cookie="carol-cookie", services=[], discovery=False)
    with pytest.raises(kith.Overloaded, match="maximum of 1 registrations"):
        carol.use_relay(small.grant("carol", "relay"))


def test_a_relay_grant_limits_the_names_its_holder_may_register(world, make_node, tmp_path):
    r, relay, alice, bob, rg = world
    relay.set_grant_limits("alice", names=["alice@*"], sessions=2, bytes_per_s=1 << 20)
    with pytest.raises(kith.BadArg):
        relay.set_grant_limits("alice", names=["not a name"])
    with pytest.raises(kith.BadArg, match="at least 4096"):
        relay.set_grant_limits("alice", names=["alice@*"], bytes_per_s=100)
    x = make_node("x@localhost", cookie="x-cookie", key_dir=tmp_path / "x", discovery=False)
    with pytest.raises(kith.Unauthorized, match="lets you register only alice@\\*, not x@localhost"):
        x.use_relay(rg)
    assert alice.use_relay(rg).relay == r.name


def test_kernel_forwarding_mode_from_python(world, make_node):
    """serve_relay(kernel_forward=...): "off" forwards in user space and says
    so; a bad value is BadArg; with "auto" as root, Bob's session to Alice
    is forwarded in the kernel (its bytes counted, never read by the relay's
    thread)."""
    r, _, alice, bob, rg = world
    r = make_node("kr@localhost", cookie="kernel-relay-cookie", services=[], discovery=False)
    relay = r.serve_relay("127.0.0.1:0", open=True, kernel_forward="auto")
    rg = r.grant("alice", "relay")
    off = make_node("off@localhost", cookie="off-cookie", services=[], discovery=False)
    assert off.serve_relay("127.0.0.1:0", kernel_forward="off").forwarding == "user space: kernel forwarding is off"
    bad = make_node("bad@localhost", cookie="bad-cookie", services=[], discovery=False)
    with pytest.raises(kith.BadArg, match="kernel_forward is 'sometimes'"):
        bad.serve_relay("127.0.0.1:0", kernel_forward="sometimes")
    # Left out: the default of every relay, off unless KITH_RELAY_KERNEL_FORWARD
    # says otherwise (a bad value there is named).
    env = os.environ.pop("KITH_RELAY_KERNEL_FORWARD", None)
    try:
        dflt = make_node("dflt@localhost", cookie="dflt-cookie", services=[], discovery=False)
        assert dflt.serve_relay("127.0.0.1:0").forwarding == "user space: kernel forwarding is off"
        os.environ["KITH_RELAY_KERNEL_FORWARD"] = "auto"
        envd = make_node("envd@localhost", cookie="envd-cookie", services=[], discovery=False)
        assert envd.serve_relay("127.0.0.1:0").forwarding == relay.forwarding
        os.environ["KITH_RELAY_KERNEL_FORWARD"] = "often"
        envb = make_node("envb@localhost", cookie="envb-cookie", services=[], discovery=False)
        with pytest.raises(kith.BadArg, match="KITH_RELAY_KERNEL_FORWARD is .often."):
            envb.serve_relay("127.0.0.1:0")
    finally:
        os.environ.pop("KITH_RELAY_KERNEL_FORWARD", None)
        if env is not None:
            os.environ["KITH_RELAY_KERNEL_FORWARD"] = env
    if not relay.forwarding.startswith("kernel"):
        pytest.skip("in-kernel forwarding unavailable here: " + relay.forwarding)
    alice.use_relay(rg)
    home = unreachable_copy(alice.grant("bob", "kvs").with_relay(rg))
    assert bob.connect_via(home, timeout=4) == alice.name
    bob.call(alice.name, "kvs", "store", "k", "x" * 100000)
    c = relay.counters()
    assert c["kernel_sessions"] == 1 and c["user_reads"] == 0
    assert c["bytes_forwarded"] > 100000


def test_serve_relay_options_are_checked(make_node):
    """Every relay option has a keyword; one out of its bounds or unknown is
    BadArg saying which and what it must be; none is half applied."""
    r = make_node("relay@localhost", cookie="relay-owner-cookie", services=[], discovery=False)
    with pytest.raises(kith.BadArg, match="session_port_idle.*from 1 s to 24 h"):
        r.serve_relay("127.0.0.1:0", session_port_idle=0.5)
    with pytest.raises(kith.BadArg, match="pair_timeout"):
        r.serve_relay("127.0.0.1:0", pair_timeout=0)
    with pytest.raises(kith.BadArg, match="max_tokens_per_dialler"):
        r.serve_relay("127.0.0.1:0", max_tokens=0)
    with pytest.raises(kith.BadArg, match="session_ports wants"):
        r.serve_relay("127.0.0.1:0", session_ports=(5000, 4000))
    with pytest.raises(kith.BadArg, match="dead_peer_timeout=\\) is 200 ms: it must be from 1 s to 900 s"):
        r.serve_relay("127.0.0.1:0", dead_peer_timeout=0.2)
    with pytest.raises(kith.BadArg, match="no option idle"):
        r.serve_relay("127.0.0.1:0", idle=3)
    relay = r.serve_relay("127.0.0.1:0", session_port_idle=2.5, pair_timeout=1.5, handshake_timeout=2,
                          token_lifetime=600, name_lifetime=86400, max_connections=64, max_dialler_sessions=2,
                          max_tokens=8, max_names=2, session_ports=False, dead_peer_timeout=20)
    assert relay.counters()["port_pairs"] == 0


def test_a_link_the_client_cannot_move_is_given_up_saying_why(world):
    """repair_timeout: a link whose pair the relay closed (Alice left it) is
    moved for that long, then left; gave_up says why (BadArg out of bounds)."""
    r, relay, alice, bob, rg = world
    ac = alice.use_relay(rg)
    assert ac.registration_error() is None
    g = alice.grant("bob", "kvs").with_relay(rg)
    with pytest.raises(kith.BadArg, match=r"repair_timeout \(Python repair_timeout=\) is 500 ms"):
        bob.use_relay(g.relays[0], register=False, repair_timeout=0.5)
    bc = bob.use_relay(g.relays[0], register=False, repair_timeout=2)
    assert bc.connect(g) == alice.name
    bob.call(alice.name, "kvs", "store", "k", "v")
    assert bc.gave_up(alice.name) is None
    assert bc.registration_error() is None  # a dial-only client
    alice.call(r.name, "relay", "unregister")
    wait_until(lambda: bc.gave_up(alice.name) is not None, 20, "the relay client to give up the link")
    why = bc.gave_up(alice.name)
    assert why is not None and "no node named " + alice.name + " is registered at this relay" in why
