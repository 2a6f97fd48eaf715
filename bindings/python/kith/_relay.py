"""Relays (docs/relay.md): friends behind home routers reach each other
through a node both can reach. As methods of kith.Node:

    # On the VPS: a relay; its owner gives Alice a relay grant.
    relay = vps.serve_relay("0.0.0.0:4380", open=True)
    vps.grant("alice", "relay").save("alice-relay.grant")

    # Alice at home: registered, and her grant for Bob names the relay.
    reg = alice.use_relay("alice-relay.grant")
    alice.grant("bob", "kvs").with_relay(kith.load_grant("alice-relay.grant")).save("bob.grant")

    # Bob: his grant's direct endpoints first, then its relay routes.
    bob.connect_via("bob.grant")            # -> "alice@home"
    bob.call("alice@home", "kvs", "lookup", "weather")
    bob.relay_directory("bob.grant")        # [{name, key, fingerprint, services}]

The relay splices bytes it cannot read: CURVE, the membership proof and the
grant check stay end to end between Alice and Bob.
"""
from __future__ import annotations

import os
from typing import Any, Optional

from ._kith import Error, Grant, NoProc, Revoked, load_grant
from ._node import Node
from ._options import _endpoint


def _grant_of(g: Any) -> Grant:
    return g if isinstance(g, Grant) else load_grant(os.fspath(g))


class Relay:
    """The relay this node serves (node.serve_relay). Ends when the node stops."""

    def __init__(self, r: Any) -> None:
        self._r = r

    @property
    def endpoint(self) -> str:
        """The data plane's "HOST:PORT" that nodes dial."""
        return self._r.endpoint

    def counters(self) -> "dict[str, int]":
        """registrations, sessions, sessions_total, refused, timed_out,
        bytes_forwarded, port_pairs, kernel_sessions (sessions forwarded in
        the kernel now), user_reads (reads of session bytes by the relay's
        own thread), kernel_holds (times a kernel-forwarded session was
        held because a reader was too slow), kernel_overflows (sessions
        ended because a held side kept sending while neither side read),
        kernel_late_piles (held bytes past a session's bound that it kept:
        the room for them came late, docs/relay.md)."""
        return self._r.counters()

    @property
    def forwarding(self) -> str:
        """How sessions are forwarded: "kernel (BPF sockmap)", or "user space: "
        and why (serve_relay's kernel_forward)."""
        return self._r.forwarding

    def set_grant_limits(self, label: str, names: "Optional[list[str]]" = None, sessions: int = 0,
                         bytes_per_s: int = 0) -> None:
        """What the relay grant `label` (node.grant(label, "relay")) allows
        here besides its scope, rate and expiry: names, the only node names
        its holder may register ("alice@home", or "alice@*" for any host;
        None: any free name, at most the relay's names per key); sessions,
        relayed sessions at once to a node registered with it and from a
        dialler using it (0: the relay's); bytes_per_s, each way of every
        such session (at least 4096; it lowers the relay's bytes_per_s, never
        raises it; 0: the relay's). Saved in the node's key directory
        (relay-grants) and applied from the next register and dial. BadArg
        for a bad name, label or rate."""
        self._r.set_grant_limits(label, list(names or []), int(sessions), int(bytes_per_s))


class RelayClient:
    """This node's use of one relay (node.use_relay): registered there (when
    register=True) and able to dial through it. Ends when the node stops."""

    def __init__(self, c: Any, relay: str) -> None:
        self._c = c
        self.relay = relay

    def directory(self, timeout: float = 5.0) -> "list[dict]":
        """The nodes listed at the relay: [{"name", "key", "fingerprint",
        "services", "registered_with"}]: the services its node offers, as its
        handshake with the relay named them; registered_with "member" or
        "stranger" (key: its node key, proved to the relay) or "grant" (it
        registered with a relay grant: key and fingerprint None, since the
        relay knows only the grant's key; its node key is in the grant file
        its owner gives you). Authenticated as beacons are: the answer comes
        over the CURVE link to the relay whose key you expected, so it is
        that relay's word (the relay could lie about a key, which the
        end-to-end handshake then refuses)."""
        return [{"name": r[0], "key": r[1] or None, "fingerprint": r[2] or None,
                 "services": list(r[3]) if len(r) > 3 else [], "registered_with": r[4] if len(r) > 4 else None}
                for r in self._c.directory(float(timeout))]

    def connect(self, target: Any, key: Optional[str] = None, timeout: float = 5.0) -> str:
        """Connects through the relay: connect(grant) with a Grant (or grant
        file path) that target's owner gave you, or connect(name, key) for a
        cluster member whose key you know (never the relay's word for it).
        NoProc when the target is not registered at the relay."""
        if key is None:
            return self._c.connect_grant(_grant_of(target), float(timeout))
        return self._c.connect_key(target, key, float(timeout))

    def gave_up(self, target: str) -> Optional[str]:
        """Why this client stopped moving its link to target (the relay
        closed the link's session port pair and gave no new one within
        use_relay's repair_timeout, e.g. "timeout: ... no node named T is
        registered at this relay ..."), or None. connect clears it."""
        return self._c.gave_up(target)

    def registration_error(self) -> Optional[str]:
        """Why this node is not registered at the relay now, or None
        (registered, or register=False): the link to the relay's node is
        down ("nodedown: ..."), or that node came back and did not take the
        registration yet (its relay not started again: "no_such_service:
        ..."). The client registers again by itself, asking backing off to
        every 5 s while the link is up."""
        return self._c.registration_error()


def _serve_relay(self: Node, listen: str = "0.0.0.0:4380", advertise: str = "", open: bool = False,
                 max_registrations: int = 0, max_sessions: int = 0, bytes_per_s: int = 0,
                 kernel_forward: Optional[str] = None, **options: Any) -> Relay:
    """Serves as a relay: the data plane listens on listen ("HOST:PORT", or
    "tcp://HOST:PORT"; "127.0.0.1:0" for any free port), advertise is what
    nodes dial when it differs ("IPV4:PORT" or "IPV4"). Who may use it: cluster members and holders of a grant for
    service "relay" (node.grant("alice", "relay")); open=True also lets
    anyone dial and read the directory (registering still needs a grant).
    max_sessions bounds relayed sessions per registered node (and half of it
    per dialler); bytes_per_s each direction of a session. kernel_forward:
    "auto" forwards sessions' bytes in the kernel (BPF sockmap) when this
    process may (root, or CAP_BPF and CAP_NET_ADMIN), else in user space
    (Relay.forwarding says why); "on": BadArg when it cannot; "off": user
    space only (sessions with a bytes_per_s limit always are; docs/relay.md
    says when the kernel path is slower); None (the default): "off" unless
    the environment's KITH_RELAY_KERNEL_FORWARD says otherwise, as for
    every relay.

    options (as kith relay's, docs/relay.md; seconds may be fractions):
    session_port_idle (30 s: a session's ports close when its dialler was not
    on them this long), pair_timeout (5 s), handshake_timeout (3 s),
    dead_peer_timeout (10 s: a session port connection whose bytes stay
    unacknowledged this long is closed),
    token_lifetime (3600 s), name_lifetime (90 days, in seconds),
    max_connections (1024), max_dialler_sessions, max_tokens (64),
    max_names (4), session_ports (True, False or (MIN, MAX)).

    BadArg when the address cannot be bound, for an unknown option, or a
    value out of its bounds (the message says which and what it must be)."""
    listen = _endpoint("serve_relay listen", listen, "listen", tcp=False)
    if advertise:
        advertise = _endpoint("serve_relay advertise", advertise, "dial_port_optional", tcp=False)
    return Relay(self._n.serve_relay(listen, advertise, int(max_registrations), int(max_sessions),
                                     int(bytes_per_s), bool(open), "" if kernel_forward is None else str(kernel_forward),
                                     dict(options)))


def _connect_relay(node: Node, relay: Any, relay_grant: Any, timeout: float) -> str:
    # relay: a grant for the relay (connect with it), a route dict (as a
    # visitor, or with relay_grant when it is for that relay), or the name
    # of a relay node this node is connected to already.
    if isinstance(relay, dict):
        rg = _grant_of(relay_grant) if relay_grant is not None else None
        if rg is not None and rg.node == relay["node"]:
            return node.connect(rg, timeout=timeout)
        return node.connect(relay["endpoint"], relay["key"], timeout=timeout, visitor=True)
    if isinstance(relay, str) and "@" in relay and not os.path.exists(relay):
        return relay
    return node.connect(_grant_of(relay), timeout=timeout)


def _use_relay(self: Node, relay: Any, register: bool = True, listed: bool = True, timeout: float = 5.0,
               repair_timeout: float = 300.0) -> RelayClient:
    """Uses a relay: relay is the relay grant its owner gave you (a Grant or
    its file's path) or the name of a relay node already connected (a
    cluster member). With register=True this node becomes reachable through
    it under its own name (and registers again whenever the link to the relay
    comes back); listed: shown in its directory. Raises Unauthorized when the
    relay refuses (the name is another key's there), Timeout when it does
    not answer. repair_timeout (seconds, 1 to 604800; BadArg otherwise): how
    long the client keeps moving a link whose session port pair the relay
    closed before it leaves it (RelayClient.gave_up says why)."""
    name = _connect_relay(self, relay, None, timeout)
    return RelayClient(self._n.relay_client(name, bool(register), bool(listed), float(repair_timeout)), name)


def _connect_via(self: Node, grant: Any, relay_grant: Any = None, timeout: float = 5.0) -> str:
    """Connects with a grant, its direct endpoints first (half of timeout
    when it names relays), then each relay route it carries (Grant.relays):
    as a visitor, or with relay_grant for a relay that is not open. Returns
    the granting node's name; raises the last error when nothing worked."""
    g = _grant_of(grant)
    if not g.relays:
        return self.connect(g, timeout=timeout)
    last: Optional[Error] = None
    if g.endpoints:
        try:
            return self.connect(g, timeout=max(timeout / 2, 1.0))
        except Revoked:
            raise
        except Error as e:
            last = e
    for route in g.relays:
        try:
            name = _connect_relay(self, route, relay_grant, timeout)
            return RelayClient(self._n.relay_client(name, False, False), name).connect(g, timeout=timeout)
        except Revoked:
            raise
        except Error as e:
            last = e
    assert last is not None
    if isinstance(last, NoProc):
        raise NoProc(f"{g.node} is not registered at its relay ({last}); is its node running with a relay?")
    raise last


def _relay_directory(self: Node, relay: Any, relay_grant: Any = None, timeout: float = 5.0) -> "list[dict]":
    """The directory of a relay: relay is your relay grant, or a friend's
    grant that carries relay routes (then as a visitor, or with relay_grant)."""
    g = _grant_of(relay) if not isinstance(relay, str) or "@" not in relay or os.path.exists(relay) else None
    target: Any = relay
    if g is not None and g.relays:
        target = g.relays[0]
    elif g is not None:
        target = g
    name = _connect_relay(self, target, relay_grant, timeout)
    return RelayClient(self._n.relay_client(name, False, False), name).directory(timeout)


Node.serve_relay = _serve_relay
Node.use_relay = _use_relay
Node.connect_via = _connect_via
Node.relay_directory = _relay_directory
