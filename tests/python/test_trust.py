"""The trust model from Python (issue 12): the attacks a Python program can
express against real nodes over real CURVE on loopback. Each asserts the
exact error and that nothing happened on the victim. The wire-level attacks
(forged pids, refs, envelopes) are in tests/adversary/."""
import pytest

import kith
from conftest import wait_until


@pytest.fixture
def alice(make_node):
    return make_node("alice@localhost", services=["kvs", "echo", "demo"], discovery=False)


def test_admin_services_are_never_granted_or_public(alice):
    for svc in ("grants", "node"):
        with pytest.raises(kith.BadArg, match="admin service"):
            alice.grant("evil-" + svc, svc)
        with pytest.raises(kith.BadArg, match="admin service"):
            alice.set_public(svc)
    assert alice.public_services() == []
    assert [g["label"] for g in alice.grants()] == []


def test_rpc_server_acts_for_the_grantee_who_spawned_it(alice, make_node):
    g = alice.grant("bob", "demo")
    bob = make_node("bob@localhost", cookie="bobs-cluster", discovery=False)
    assert bob.connect(g) == alice.name
    server = bob.spawn(alice.name, "demo", "rpc_server")
    assert bob.call_pid(server, ["demo", "node", []]) == alice.name
    for req in (["grants", "create", ["evil", "kvs,echo,demo,node", "unlimited", None]],
                ["grants", "list", []], ["node", "info", []], ["kvs", "store", ["k", 1]]):
        with pytest.raises(kith.Unauthorized):
            bob.call_pid(server, req)
    # Nothing happened on Alice's node.
    assert alice.call(alice.name, "kvs", "keys") == []
    assert [x["label"] for x in alice.grants()] == ["bob"]


def test_dialling_a_stranger_never_makes_it_a_member(alice, make_node):
    stranger = make_node("mallory@localhost", cookie="mallorys-cluster", services=["echo", "kvs"], discovery=False)
    stranger.set_public("echo")
    # As a member: refused, the stranger cannot prove Alice's cookie.
    with pytest.raises(kith.Unauthorized, match="did not prove membership"):
        alice.connect(stranger.endpoint, stranger.key)
    assert stranger.name not in alice.nodes()
    # As a visitor: Alice uses the public echo; the stranger is a "server".
    assert alice.connect(stranger.endpoint, stranger.key, visitor=True) == stranger.name
    assert alice.call(stranger.name, "echo", "echo", "hi") == "hi"
    assert alice.info(stranger.name)["trust"] == "server"
    # The stranger saw Alice's own key, as a stranger: it has no right on Alice.
    assert stranger.info(alice.name)["trust"] == "stranger"
    assert stranger.info(alice.name)["fingerprint"] == alice.fingerprint
    with pytest.raises(kith.Unauthorized):
        stranger.call(alice.name, "kvs", "store", "k", "stolen")
    assert alice.call(alice.name, "kvs", "keys") == []


def test_a_stranger_cannot_take_a_members_name(alice, make_node, tmp_path):
    alice.set_public("echo")
    # An impostor of another cluster comes first under Carol's name.
    impostor = make_node("carol@localhost", cookie="impostors-cluster", services=["kvs"], discovery=False,
                         key_dir=tmp_path / "impostor")
    assert impostor.connect(alice.endpoint, alice.key, visitor=True) == alice.name
    assert alice.info("carol@localhost")["trust"] == "stranger"
    # Alice's calls to that name never reach it.
    with pytest.raises(kith.Unauthorized, match="not as a cluster member"):
        alice.call("carol@localhost", "kvs", "store", "secret", 1)
    assert impostor.call(impostor.name, "kvs", "keys") == []
    # The real Carol (Alice's cluster) connects: she takes her name back.
    carol = make_node("carol@localhost", services=["kvs"], discovery=False)
    assert carol.connect(alice.endpoint, alice.key) == alice.name
    wait_until(lambda: (alice.info("carol@localhost") or {}).get("trust") == "cluster")
    assert alice.call("carol@localhost", "kvs", "store", "secret", 1) is True
    assert carol.call(carol.name, "kvs", "keys") == ["secret"]
    assert impostor.call(impostor.name, "kvs", "keys") == []
    # The impostor cannot take the name again, now or while Carol is away.
    with pytest.raises(kith.Unauthorized, match="belongs to a cluster member"):
        impostor.connect(alice.endpoint, alice.key, visitor=True, timeout=2.0)
    carol.stop()
    wait_until(lambda: alice.info("carol@localhost") is None)
    with pytest.raises(kith.Unauthorized, match="belongs to a cluster member"):
        impostor.connect(alice.endpoint, alice.key, visitor=True, timeout=2.0)


def test_service_functions_see_their_principal(alice, make_node):
    seen = []
    svc = kith.Service("whoami")

    @svc.function
    def who() -> str:
        p = kith.current_principal()
        seen.append(p)
        return p["kind"]

    alice.add_service(svc)
    alice.set_public("whoami")
    assert kith.current_principal()["kind"] == "local"
    member = make_node("dave@localhost", discovery=False)
    assert member.connect(alice.endpoint, alice.key) == alice.name
    assert member.call(alice.name, "whoami", "who") == "member"
    visitor = make_node("erin@localhost", cookie="erins-cluster", discovery=False)
    assert visitor.connect(alice.endpoint, alice.key, visitor=True) == alice.name
    assert visitor.call(alice.name, "whoami", "who") == "stranger"
    assert seen[-1]["node"] == "erin@localhost"
    assert seen[-1]["fingerprint"] == visitor.fingerprint


def test_code_acting_for_a_stranger_is_no_deputy(alice, make_node):
    relay = kith.Service("relay")

    @relay.function
    def invoke(svc: str, fn: str, args: list) -> list:
        try:
            return ["ok", alice.call(alice.name, svc, fn, *args)]
        except kith.Error as e:
            return ["error", type(e).__name__]

    @relay.function
    def spawn(svc: str, typ: str) -> str:
        try:
            alice.spawn(alice.name, svc, typ)
            return "spawned"
        except kith.Error as e:
            return type(e).__name__

    alice.add_service(relay)
    alice.set_public("relay")
    mallory = make_node("mallory@localhost", cookie="mallorys-cluster", discovery=False)
    assert mallory.connect(alice.endpoint, alice.key, visitor=True) == alice.name
    # Re-dispatch inside alice keeps mallory's scope: only "relay" is public.
    assert mallory.call(alice.name, "relay", "invoke", "kvs", "store", ["k", 1]) == ["error", "Unauthorized"]
    assert mallory.call(alice.name, "relay", "invoke", "relay", "spawn", ["demo", "rpc_server"]) == \
        ["ok", "Unauthorized"]
    assert mallory.call(alice.name, "relay", "spawn", "demo", "rpc_server") == "Unauthorized"
    assert alice.call(alice.name, "kvs", "keys") == []
    # The owner's own code is not limited.
    assert alice.call(alice.name, "relay", "invoke", "kvs", "store", ["k", 1]) == ["ok", True]
