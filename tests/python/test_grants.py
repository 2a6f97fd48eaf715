"""Grants from Python: issuing, listing, revoking, rate changes, grant files,
public services; and their holder (Bob) in another process getting exactly
the granted services, Unauthorized outside them, RateLimited beyond the rate
and Revoked once revoked."""
import datetime
import json
import os
import stat
import subprocess
import sys

import pytest

import kith
from conftest import wait_until

HOLDER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "grant_holder.py")


@pytest.fixture
def alice(make_node):
    a = make_node("alice@localhost", services=["kvs", "echo"], discovery=False)
    return a


class Holder:
    """grant_holder.py in its own process: Bob's node, driven line by line."""

    def __init__(self, key_dir):
        self.proc = subprocess.Popen([sys.executable, HOLDER, str(key_dir)], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True)
        assert "ready" in self._read()

    def _read(self):
        line = self.proc.stdout.readline()
        assert line, "grant_holder.py ended"
        return json.loads(line)

    def ask(self, *req):
        self.proc.stdin.write(json.dumps(list(req)) + "\n")
        self.proc.stdin.flush()
        return self._read()

    def call(self, node, svc, fn, *args):
        return self.ask("call", node, svc, fn, list(args))

    def close(self):
        try:
            self.proc.stdin.close()
            self.proc.wait(30)
        finally:
            self.proc.kill()


@pytest.fixture
def bob(tmp_path):
    h = Holder(tmp_path / "bob")
    yield h
    h.close()


def row(node, label):
    return next(g for g in node.grants() if g["label"] == label)


def test_grant_object_and_file(alice, tmp_path):
    before = datetime.datetime.now(datetime.timezone.utc)
    g = alice.grant("bob", {"kvs": [], "echo": ["echo"]}, rate=(5, 7), expires=datetime.timedelta(days=1))
    assert isinstance(g, kith.Grant)
    assert (g.label, g.node, g.server_key) == ("bob", alice.name, alice.key)
    assert g.endpoints == [alice.endpoint]
    assert g.allow == {"echo": ["echo"], "kvs": []}
    assert g.scope == "echo:echo,kvs"
    assert g.rate == "5/s,burst=7"
    assert before + datetime.timedelta(hours=23) < g.expires < before + datetime.timedelta(days=1, minutes=1)
    assert g.version == 1
    assert "bob" in repr(g)

    path = tmp_path / "bob.grant"
    g.save(path)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    loaded = kith.load_grant(path)
    assert loaded.to_text() == g.to_text() == path.read_text()
    assert kith.parse_grant(g.to_text()).fingerprint == g.fingerprint

    (r,) = alice.grants()
    assert r["label"] == "bob" and r["fingerprint"] == g.fingerprint and r["scope"] == "echo:echo,kvs"
    assert r["rate"] == "5/s,burst=7" and not r["revoked"] and not r["connected"]
    assert r["expires"].endswith("Z")

    never = alice.grant("carol", "kvs")  # defaults: 10/s, never expires
    assert never.expires is None and never.rate == kith._kith._parse_rate("10/s,burst=20")


def test_grant_arguments_are_checked(alice):
    alice.grant("bob", ["kvs", "echo:echo"], rate="unlimited")
    with pytest.raises(kith.BadArg, match="bob"):
        alice.grant("bob", "kvs")  # duplicate label
    with pytest.raises(kith.BadArg):
        alice.grant("no spaces", "kvs")
    with pytest.raises(kith.BadArg):
        alice.grant("empty", "")
    with pytest.raises(kith.BadArg):
        alice.grant("badrate", "kvs", rate="fast")
    with pytest.raises(TypeError):
        alice.grant("x", 5)
    with pytest.raises(TypeError):
        alice.grant("x", "kvs", expires="tomorrow")
    with pytest.raises(kith.BadArg):
        alice.revoke_grant("nobody")
    with pytest.raises(kith.BadArg):
        alice.set_grant_rate("nobody", "1/s")
    assert kith._kith._parse_rate(2) == kith._kith._parse_rate("2/s,burst=4")
    for bad in (0, (0, 5), (1, 0), "0/s"):  # zero is not "unlimited": say it in words
        with pytest.raises(kith.BadArg):
            alice.grant("zero", "kvs", rate=bad)
    with pytest.raises(TypeError):
        alice.grant("yes", "kvs", rate=True)
    assert [g["label"] for g in alice.grants()] == ["bob"]


def test_bad_grant_files_say_what_is_wrong(alice, tmp_path):
    text = alice.grant("bob", "kvs").to_text()
    bad = {"": "empty", "hello": "not a kith grant file", text[: len(text) // 2]: "truncated",
           text.replace("label: bob", "label: eve"): "checksum", text.replace("kith-grant 1", "kith-grant 9"): "9"}
    for t, says in bad.items():
        with pytest.raises(kith.DecodeError) as e:
            kith.parse_grant(t)
        assert e.value.code == "decode" and says in e.value.detail, e.value.detail
    with pytest.raises(kith.DecodeError) as e:
        kith.load_grant(tmp_path / "missing.grant")
    assert "missing.grant" in e.value.detail
    (tmp_path / "junk.grant").write_text("kith-grant but not really\n")
    with pytest.raises(kith.DecodeError):
        kith.load_grant(tmp_path / "junk.grant")


def test_holder_gets_exactly_the_grant(alice, bob, tmp_path):
    # Bob, in another process and another cluster, holds a grant for kvs only.
    alice.grant("bob", "kvs", rate="unlimited").save(tmp_path / "bob.grant")
    assert bob.ask("connect", str(tmp_path / "bob.grant")) == {"ok": alice.name}
    assert bob.call(alice.name, "kvs", "store", "weather", "fine") == {"ok": True}
    assert bob.call(alice.name, "kvs", "lookup", "weather") == {"ok": ["ok", "fine"]}
    # echo is not in the grant: refused on Alice's node.
    r = bob.call(alice.name, "echo", "echo", "hi")
    assert r["error"] == "unauthorized", r
    wait_until(lambda: row(alice, "bob")["connected"], what="bob connected")
    r = row(alice, "bob")
    assert r["accepted"] >= 2 and r["refused"] >= 1
    # Alice herself still has everything.
    assert alice.call(alice.name, "kvs", "lookup", "weather") == ["ok", "fine"]


def test_rate_limited_then_raised_then_revoked(alice, bob, tmp_path):
    # A bucket of 3 that refills once in 100 s: the 4th quick call is refused.
    alice.grant("bob", "kvs", rate=(0.01, 3)).save(tmp_path / "bob.grant")
    assert bob.ask("connect", str(tmp_path / "bob.grant")) == {"ok": alice.name}
    answers = [bob.call(alice.name, "kvs", "lookup", "k") for _ in range(4)]
    assert answers[:3] == [{"ok": "undefined"}] * 3, answers
    assert answers[3]["error"] == "rate_limited", answers
    assert row(alice, "bob")["rate_limited"] >= 1

    alice.set_grant_rate("bob", "unlimited")  # effective for the next message
    assert row(alice, "bob")["rate"] == kith._kith._parse_rate("unlimited")
    assert bob.call(alice.name, "kvs", "lookup", "k") == {"ok": "undefined"}

    alice.revoke_grant("bob")
    r = bob.call(alice.name, "kvs", "lookup", "k")
    assert r["error"] == "revoked", r
    assert row(alice, "bob")["revoked"]
    # Reconnecting with the revoked grant is refused as revoked too.
    r = bob.ask("connect", str(tmp_path / "bob.grant"))
    assert r["error"] == "revoked", r


def test_expired_grant_is_refused(alice, bob, tmp_path):
    alice.grant("old", "kvs", expires=datetime.datetime(2001, 1, 1, tzinfo=datetime.timezone.utc)).save(
        tmp_path / "old.grant")
    assert row(alice, "old")["expired"]
    r = bob.ask("connect", str(tmp_path / "old.grant"))
    assert r["error"] == "revoked", r


def test_public_service_for_strangers(alice, make_node):
    alice.set_public("echo", rate="unlimited")
    assert alice.public_services() == ["echo"]
    # A node of another cluster, without any grant.
    stranger = make_node("stranger@localhost", cookie="another-cluster", discovery=False)
    # As a member it is refused (it cannot prove alice's cookie); as a visitor
    # it is a stranger there.
    with pytest.raises(kith.Unauthorized, match="did not prove membership"):
        stranger.connect(alice.endpoint, alice.key)
    assert stranger.connect(alice.endpoint, alice.key, visitor=True) == alice.name
    assert stranger.call(alice.name, "echo", "echo", "hi") == "hi"
    with pytest.raises(kith.Unauthorized):
        stranger.call(alice.name, "kvs", "lookup", "k")
    alice.set_public("echo", False)
    assert alice.public_services() == []
    with pytest.raises(kith.Unauthorized):
        stranger.call(alice.name, "echo", "echo", "hi")


def test_connect_with_a_grant_in_process(alice, make_node, tmp_path):
    # connect() also takes a Grant object or the path of its file.
    g = alice.grant("dave", "echo:echo")
    g.save(tmp_path / "dave.grant")
    dave = make_node("dave@localhost", cookie="daves-cluster", discovery=False)
    assert dave.connect(str(tmp_path / "dave.grant")) == alice.name
    assert dave.connect(g) == alice.name
    assert dave.call(alice.name, "echo", "echo", [1, "x"]) == [1, "x"]
    with pytest.raises(TypeError):
        dave.connect(g, alice.key)


LIMITS = {"pending": 64, "spawned": 256, "queued": 4 << 20, "relations": 4096}  # the defaults


def test_grant_limits_are_set_listed_and_checked(alice):
    g = alice.grant("bob", "kvs", limits="pending=8,spawned=4")
    assert isinstance(g, kith.Grant)
    alice.grant("carol", "kvs", limits={"queued": 65536, "relations": 100})
    alice.grant("dave", "kvs")  # the defaults
    assert row(alice, "bob")["limits"] == "pending=8,spawned=4"
    assert row(alice, "carol")["limits"] == "queued=65536,relations=100"
    assert row(alice, "dave")["limits"] == "default"
    assert kith._kith._parse_limits({}) == "default"
    # Each limit at 0 and above its maximum, as text and as a dict, alone and
    # beside another limit: BadArg naming that limit and its own bounds.
    for name, default in LIMITS.items():
        bounds = f"{name} must be 1..{16 * default} (16x the default {default}"
        other = "relations" if name != "relations" else "pending"
        for value in (0, 16 * default + 1):
            for limits in (f"{name}={value}", {name: value}, f"{other}=8,{name}={value}", {name: value, other: 8}):
                with pytest.raises(kith.BadArg) as e:
                    alice.grant("eve", "kvs", limits=limits)
                assert e.value.code == "badarg"
                assert bounds in e.value.detail and f"got {value})" in e.value.detail, (limits, e.value.detail)
                for o, d in LIMITS.items():  # never another limit's bounds
                    assert o == name or f"the default {d};" not in e.value.detail, e.value.detail
        assert kith._kith._parse_limits({name: 16 * default}) == f"{name}={16 * default}"
        assert kith._kith._parse_limits(f"{name}=1") == f"{name}=1"
    with pytest.raises(kith.BadArg, match='unknown limit "calls"'):
        alice.grant("eve", "kvs", limits={"calls": 3})
    with pytest.raises(TypeError, match="pending must be a whole number"):
        alice.grant("eve", "kvs", limits={"pending": True})
    with pytest.raises(TypeError, match="pending must be a whole number"):
        alice.grant("eve", "kvs", limits={"pending": 2.5})
    with pytest.raises(TypeError, match="pending=8,spawned=4"):
        alice.grant("eve", "kvs", limits=8)
    assert "eve" not in [g["label"] for g in alice.grants()]


def test_grant_limits_hold_the_holder(alice, make_node):
    # A grantee with spawned=2 spawns two echo servers; the third is refused
    # Overloaded, naming the limit and the grant's own figure.
    g = alice.grant("dave", "echo", rate="unlimited", limits={"spawned": 2})
    dave = make_node("dave@localhost", cookie="daves-cluster", discovery=False)
    assert dave.connect(g) == alice.name
    first = [dave.spawn_async(alice.name, "echo", "server") for _ in range(2)]
    pids = [f.result(10) for f in first]
    assert all(alice.alive(p) for p in pids)
    with pytest.raises(kith.Overloaded) as e:
        dave.spawn_async(alice.name, "echo", "server").result(10)
    assert "limit spawned" in e.value.detail and "2" in e.value.detail, e.value.detail
    # One ends: a slot is free again.
    alice.exit(pids[0], "kill")
    wait_until(lambda: not alice.alive(pids[0]), what="the echo server ended")
    wait_until(lambda: _spawns(dave, alice.name), what="a spawn after a slot was freed")


def _spawns(node, at):
    try:
        node.spawn_async(at, "echo", "server").result(10)
        return True
    except kith.Overloaded:
        return False


def test_grant_limits_change_on_a_live_session(alice, make_node, tmp_path):
    # The file carries the limits it was issued with; the owner changes them
    # (set_grant_limits) while the holder is connected: its next spawn is
    # held to the new figure; the holder cannot change them itself.
    g = alice.grant("erin", "echo", rate="unlimited", limits={"spawned": 1})
    assert (g.version, g.limits) == (3, "spawned=1")
    assert g.limits_in_force == {"pending": 64, "spawned": 1, "queued": 4194304, "relations": 4096}
    g.save(tmp_path / "erin.grant")
    assert kith.load_grant(tmp_path / "erin.grant").limits == "spawned=1"
    plain = alice.grant("frank", "echo")
    assert (plain.version, plain.limits) == (1, "default")
    erin = make_node("erin@localhost", cookie="erins-cluster", discovery=False)
    assert erin.connect(g) == alice.name
    assert isinstance(erin.spawn(alice.name, "echo", "server"), kith.Pid)
    with pytest.raises(kith.Overloaded, match="limit spawned: 1 actors"):
        erin.spawn(alice.name, "echo", "server")
    with pytest.raises(kith.Unauthorized):
        erin.call(alice.name, "grants", "set_limits", "erin", "spawned=4096")
    assert alice.set_grant_limits("erin", {"spawned": 2}) == "spawned=2"
    assert row(alice, "erin")["limits"] == "spawned=2"
    assert isinstance(erin.spawn(alice.name, "echo", "server"), kith.Pid)
    with pytest.raises(kith.Overloaded, match="limit spawned: 2 actors"):
        erin.spawn(alice.name, "echo", "server")
    # Replaced entirely; None or "default": every limit back to its default.
    assert alice.set_grant_limits("erin", "pending=8") == "pending=8"
    assert alice.set_grant_limits("erin", None) == "default"
    assert row(alice, "erin")["limits"] == "default"
    with pytest.raises(kith.BadArg, match="spawned must be 1..4096"):
        alice.set_grant_limits("erin", {"spawned": 0})
    with pytest.raises(kith.BadArg, match='no grant labelled "nobody"'):
        alice.set_grant_limits("nobody", "pending=1")
    alice.revoke_grant("frank")
    with pytest.raises(kith.BadArg, match="is revoked"):
        alice.set_grant_limits("frank", "pending=1")


def test_a_grantees_calls_occupy_at_most_guest_workers(make_node):
    # docs/security.md, "The workers' share": 3 workers, at most 1 of them
    # for non-members: the grantee's 4 calls to a function that naps run one
    # at a time (3 at once without the share), and a member is answered
    # meanwhile.
    import threading
    import time
    alice = make_node("alice@localhost", workers=3, guest_workers=1, discovery=False)
    lock, running, peak = threading.Lock(), [0], [0]
    slow = kith.Service("slow")

    @slow.function
    def nap(seconds: float) -> str:
        with lock:
            running[0] += 1
            peak[0] = max(peak[0], running[0])
        time.sleep(seconds)  # the GIL is free meanwhile
        with lock:
            running[0] -= 1
        return "ok"

    @slow.function
    def quick() -> str:
        return "quick"
    alice.add_service(slow)
    dave = make_node("dave@localhost", cookie="daves-cluster", discovery=False)
    assert dave.connect(alice.grant("dave", "slow")) == alice.name
    member = make_node("member@localhost", discovery=False)
    assert member.connect(alice.endpoint, alice.key) == alice.name
    calls = [dave.call_async(alice.name, "slow", "nap", 0.3) for _ in range(4)]
    wait_until(lambda: running[0] == 1, what="the grantee's first nap")
    assert member.call(alice.name, "slow", "quick") == "quick"
    assert [c.result(30) for c in calls] == ["ok"] * 4
    assert peak[0] == 1
