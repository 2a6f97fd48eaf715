"""kith for Python: Erlang-style nodes, actors, messages and services.

A Python node is a full peer of C++ nodes and of the ``kith`` command line::

    import kith

    with kith.Node("alice@localhost", listen="tcp://127.0.0.1:0", cookie="classroom") as node:
        math = node.service("math")

        @math.function
        def add(a: int, b: int) -> int:
            return a + b

        print(node.call(node.name, "math", "add", 1, 2))     # 3

Values crossing between nodes: None, bool, int, float, str, bytes, list,
tuple (arrives as a list), dict, Pid and Ref. Anything else, a function in
particular, raises TypeError ("functions cannot be sent").

Errors are exceptions, one class per kith error code, all under kith.Error:
Timeout, NodeDown, Unauthorized, Revoked, RateLimited, NoSuchService,
NoSuchFunction, BadArgs, RemoteException, NoProc, BadType, DecodeError,
Overloaded, BadArg, Shutdown (and SetupError when a node cannot start). Each
carries ``code`` (e.g. "timeout") and ``detail``.

Grants (Erlang WTD's Alice and Bob): Alice's node hands Bob a grant file
that lets Bob's node use exactly the services named in it, at a rate, until
she revokes it::

    g = alice.grant("bob", "kvs", rate="10/s")      # -> kith.Grant
    g.save("bob.grant")                              # give this file to Bob
    # Bob:
    alice_name = bob.connect(kith.load_grant("bob.grant"))
    bob.call(alice_name, "kvs", "store", "k", 1)

Discovery: a node that listens on the LAN (port=...) announces itself with a
UDP beacon and connects to the nodes of its cluster (same cookie) that it
hears; node.seen() lists them, node.find("gandalf") waits for one.

Threads: blocking calls release the GIL and can be interrupted with Ctrl-C.
Python actors and service functions run on kith's worker threads holding the
GIL; an exception in an actor ends it with the traceback as its exit reason.
"""
from __future__ import annotations

import atexit
import time
import datetime
import inspect
import ipaddress
import os
import re
import socket
import sys
import traceback
import typing
from typing import Any, Callable, NamedTuple, Optional

from . import _kith
from ._kith import (  # noqa: F401  (re-exported)
    Actor, BadArg, BadArgs, BadType, DecodeError, Down, Error, Exit, Grant, Mailbox, NodeDown, NoProc,
    NoSuchFunction, NoSuchService, Overloaded, Pid, RateLimited, Ref, RemoteException, Request,
    Revoked, SetupError, Shutdown, Timeout, Unauthorized, current_principal, load_grant, parse_grant,
)

__all__ = [
    "Node", "Service", "Mailbox", "Actor", "Pid", "Ref", "Down", "Exit", "Request", "NodeEvent",
    "Subscription", "NodeEvents", "Error", "Timeout", "NodeDown", "Unauthorized", "Revoked",
    "RateLimited", "NoSuchService", "NoSuchFunction", "BadArgs", "RemoteException", "NoProc",
    "BadType", "DecodeError", "Overloaded", "BadArg", "Shutdown", "SetupError", "Grant", "load_grant",
    "parse_grant", "current_principal",
]

# Stop every node before the interpreter finalizes, so no kith thread calls
# into a dying interpreter.
atexit.register(_kith._shutdown)


def _full_name(name: str) -> str:
    """'alice' -> 'alice@<hostname>' (as `kith node --name alice`); 'a@b' unchanged."""
    if "@" in name:
        return name
    host = re.sub(r"[^A-Za-z0-9_.-]", "-", socket.gethostname()) or "localhost"
    return f"{name}@{host}"


# --- grants and discovery options ---------------------------------------------------

def _grant_expires(g: Grant) -> Optional[datetime.datetime]:
    ts = g._expires_ts
    return None if ts is None else datetime.datetime.fromtimestamp(ts, datetime.timezone.utc)


Grant.expires = property(_grant_expires, doc="When the grant expires (a UTC datetime), or None: never.")


def _expiry_ts(expires: Any) -> Optional[float]:
    """None, a datetime (naive: local time), a timedelta or a number of
    seconds from now -> seconds since the epoch."""
    if expires is None:
        return None
    if isinstance(expires, datetime.datetime):
        return expires.timestamp()
    if isinstance(expires, datetime.timedelta):
        return datetime.datetime.now(datetime.timezone.utc).timestamp() + expires.total_seconds()
    if isinstance(expires, (int, float)) and not isinstance(expires, bool):
        return datetime.datetime.now(datetime.timezone.utc).timestamp() + float(expires)
    raise TypeError("expires is a datetime, a timedelta, or a number of seconds from now")


def _on_lan(listen: str) -> bool:
    """True if a listen endpoint is reachable from other machines (not loopback)."""
    host = listen.split("://", 1)[-1].rsplit(":", 1)[0].strip("[]")
    if host in ("*", "0.0.0.0", "::", ""):
        return True
    if host == "localhost":
        return False
    try:
        return not ipaddress.ip_address(host).is_loopback
    except ValueError:
        return True  # an interface name or a host name


def _discovery_options(discovery: Any, listen: str, hidden: bool) -> Optional[dict]:
    if discovery is None:  # automatic: on when the node listens on the LAN
        if not listen or hidden or not _on_lan(listen):
            return None
        return {}
    if discovery is False:
        return None
    if discovery is True:
        return {}
    if isinstance(discovery, dict):
        return dict(discovery)
    raise TypeError("discovery is True, False, None (automatic) or a dict of options")


# --- spawning Python actors ----------------------------------------------------

def _actor_parts(target: Any, args: tuple, kwargs: dict):
    """(init or None, handler(actor, msg)) for a spawn target: a function
    handler(actor, msg, *args), a class (instantiated with args) or an object
    with a receive(actor, msg) method and optionally init(actor)."""
    if isinstance(target, type):
        obj = target(*args, **kwargs)
    elif args or kwargs:
        if not callable(target):
            raise TypeError(f"cannot spawn {target!r}")
        fn = target
        return None, (lambda actor, msg: fn(actor, msg, *args, **kwargs))
    else:
        obj = target
    receive = getattr(obj, "receive", None)
    if callable(receive) and not inspect.isroutine(obj):
        init = getattr(obj, "init", None)
        return (init if callable(init) else None), receive
    if callable(obj):
        return None, obj
    raise TypeError("spawn needs a function handler(actor, msg), or a class or object "
                    "with a receive(actor, msg) method")


def _spawn_with(owner, target, args, kwargs, link: bool, monitor: bool):
    init, handler = _actor_parts(target, args, kwargs)
    return owner._spawn(init, handler, link, monitor)


def _actor_spawn(self: Actor, target, *args, **kwargs) -> Pid:
    """Spawns a Python actor from inside an actor."""
    return _spawn_with(self, target, args, kwargs, False, False)


def _actor_spawn_link(self: Actor, target, *args, **kwargs) -> Pid:
    return _spawn_with(self, target, args, kwargs, True, False)


def _actor_spawn_monitor(self: Actor, target, *args, **kwargs) -> "tuple[Pid, Ref]":
    return _spawn_with(self, target, args, kwargs, False, True)


Actor.spawn = _actor_spawn
Actor.spawn_link = _actor_spawn_link
Actor.spawn_monitor = _actor_spawn_monitor
Mailbox.spawn = _actor_spawn
Mailbox.spawn_link = _actor_spawn_link
Mailbox.spawn_monitor = _actor_spawn_monitor


# --- services ------------------------------------------------------------------

_ARG_TYPES = {int: "integer", float: "float", str: "string", bool: "bool", bytes: "binary",
              list: "list", dict: "map", Pid: "pid", Ref: "ref"}


def _type_ok(value: Any, t: type) -> bool:
    if t is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if t is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    return isinstance(value, t)


def _arg_checker(fn: Callable, skip: int = 0) -> Callable[[list], None]:
    """A check of a call's argument list against fn's signature and its simple
    annotations (int, float, str, bool, bytes, list, dict, Pid, Ref): raises
    BadArgs with the same wording as a C++ service."""
    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError):
        return lambda args: None
    params = list(sig.parameters.values())[skip:]
    sig = sig.replace(parameters=params)
    try:
        hints = typing.get_type_hints(fn)
    except Exception:
        hints = {}
    simple = all(p.kind is p.POSITIONAL_OR_KEYWORD and p.default is p.empty for p in params)

    def check(args: list) -> None:
        try:
            sig.bind(*args)
        except TypeError as e:
            n = len(params)
            if simple:
                raise BadArgs(f"expected {n} argument{'' if n == 1 else 's'}, got {len(args)}") from None
            raise BadArgs(f"arguments do not fit {getattr(fn, '__name__', 'function')}{sig}: {e}") from None
        for i, (p, v) in enumerate(zip(params, args)):
            t = hints.get(p.name)
            if t in _ARG_TYPES and not _type_ok(v, t):
                raise BadArgs(f"argument {i + 1}: expected {_ARG_TYPES[t]}, got {v!r}")
    return check


class Service:
    """A named group of functions (and spawnable actor types) that other nodes,
    C++ or Python or the command line, can call::

        math = kith.Service("math")

        @math.function
        def add(a: int, b: int) -> int: return a + b

        node.add_service(math)

    A wrong number of arguments, or an argument whose annotation (int, float,
    str, bool, bytes, list, dict, Pid, Ref) it does not match, is answered with
    BadArgs; an exception in the function with RemoteException (its text);
    raising a kith.Error answers with that error. Functions run on kith
    worker threads with the GIL held, possibly several at once.
    """

    def __init__(self, name: str):
        self.name = name
        self._functions: dict = {}
        self._types: dict = {}
        self._nodes: list = []

    def function(self, fn: Optional[Callable] = None, *, name: Optional[str] = None):
        """Exports fn (decorator; @svc.function or @svc.function(name="x"))."""
        def add(f: Callable):
            check = _arg_checker(f)

            def invoke(args: list):
                check(args)
                return f(*args)
            self._functions[name or f.__name__] = invoke
            self._publish()
            return f
        return add(fn) if fn is not None else add

    def actor(self, target: Any = None, *, name: Optional[str] = None):
        """Exports a spawnable actor type (decorator): a class (spawn arguments
        go to its constructor) or a function handler(actor, msg, *args).
        Other nodes start one with node.spawn(node, service, type, *args)."""
        def add(t: Any):
            if isinstance(t, type):
                check = _arg_checker(t.__init__, skip=1)
            else:
                check = _arg_checker(t, skip=2)

            def factory(args: list):
                check(args)
                return _actor_parts(t, tuple(args), {})
            self._types[name or t.__name__] = factory
            self._publish()
            return t
        return add(target) if target is not None else add

    def __call__(self, obj: Any):
        """As a decorator: a function is exported; a class is instantiated
        (without arguments) and its public methods are exported."""
        if isinstance(obj, type):
            inst = obj()
            for attr in dir(inst):
                if not attr.startswith("_") and callable(getattr(inst, attr)):
                    self.function(getattr(inst, attr), name=attr)
            return obj
        return self.function(obj)

    def _publish(self) -> None:
        for n in self._nodes:
            n._export(self)


# --- node events ----------------------------------------------------------------

class NodeEvent(NamedTuple):
    """A node came up (kind "up", info = its description) or went down (kind
    "down", reason "shutdown", "timeout", "connection_closed" or "revoked")."""
    kind: str
    node: str
    info: Optional[dict] = None
    reason: Optional[str] = None

    @staticmethod
    def _from_message(msg: Any) -> "NodeEvent":
        tag, name, extra = msg
        if tag == "nodeup":
            return NodeEvent("up", name, info=extra)
        return NodeEvent("down", name, reason=extra)


class Subscription:
    """Node up/down callbacks (Node.on_nodes); cancel() stops them."""

    def __init__(self, node: "Node", callback: Callable[[NodeEvent], Any]):
        def handler(actor: Actor, msg: Any) -> None:
            try:
                callback(NodeEvent._from_message(msg))
            except Exception:
                traceback.print_exc(file=sys.stderr)
        self._node = node
        self.pid = node._n._spawn(None, handler)
        node._n._monitor_nodes(self.pid, True)

    def cancel(self) -> None:
        if self._node._n.stopped:
            return
        self._node._n._monitor_nodes(self.pid, False)
        self._node._n.exit(self.pid, "kill")


class NodeEvents:
    """An iterator of NodeEvent (Node.node_events). Iteration waits up to
    `timeout` seconds for each event (None: forever) and stops when none
    comes in time. Use as a context manager, or call close()."""

    def __init__(self, node: "Node", timeout: Optional[float]):
        self._node = node
        self.timeout = timeout
        self._mb = node._n.mailbox()
        node._n._monitor_nodes(self._mb.self, True)

    def __iter__(self) -> "NodeEvents":
        return self

    def __next__(self) -> NodeEvent:
        try:
            return NodeEvent._from_message(self._mb.receive(timeout=self.timeout))
        except (Timeout, Shutdown):
            raise StopIteration from None

    def close(self) -> None:
        if not self._node._n.stopped:
            self._node._n._monitor_nodes(self._mb.self, False)
        self._mb.close()

    def __enter__(self) -> "NodeEvents":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


# --- the node -------------------------------------------------------------------

class Node:
    """A kith node: the runtime hosting actors, services and connections.

    Node(name, *, cookie=None, port=None, listen=None, advertise="", key_dir=None,
         workers=0, heartbeat_interval=0.5, heartbeat_timeout=2.5, hidden=False,
         max_queue_bytes=0, services=(), discovery=None)

    name      "name@host" ("name" alone becomes name@<hostname>).
    port      listen on all interfaces on this TCP port; or listen="tcp://127.0.0.1:0"
              (any free port on loopback). Neither: a purely local node.
    cookie    cluster cookie (default: the cookie file in key_dir).
    key_dir   key directory (default $KITH_HOME or ~/.kith).
    workers   actor worker threads (0: one per core).
    heartbeat_interval, heartbeat_timeout
              seconds between heartbeats, and of silence before a peer is down.
    hidden    not listed by other nodes' nodes() (short-lived tools).
    max_queue_bytes
              per-peer outgoing queue bound (0: kith's default, 8 MiB); beyond
              it casts raise Overloaded and sends are dropped and counted.
    services  built-in C++ services to host: "kvs", "echo", "demo".
    discovery LAN discovery (UDP beacons; see seen(), find()):
              None (default): on when the node listens on the LAN (port=, or a
              listen address that is not loopback), off otherwise;
              True / False: on with the defaults / off;
              a dict of options: beacon_port (UDP, default 4371), interval
              (seconds between beacons, default 1.0), interface ("eth0"; default
              every broadcast-capable one), broadcast_address (e.g.
              "127.255.255.255" for nodes on one machine), peers (["host:port"]
              to ask directly where broadcast does not work), announce (False:
              listen only), auto_connect (False: only list the nodes heard),
              max_beacons_per_s.
              Cluster members (same cookie) are connected automatically;
              others are listed as strangers, never trusted.

    Use it as a context manager (stop() at the end). The node also has its own
    mailbox (node.self, node.receive, ...) for the thread that uses it.
    Raises SetupError if it cannot start (port in use, bad key file).
    """

    def __init__(self, name: str = "kith@localhost", *, cookie: Optional[str] = None,
                 port: Optional[int] = None, listen: Optional[str] = None, advertise: str = "",
                 key_dir: Any = None, workers: int = 0, heartbeat_interval: float = 0.5,
                 heartbeat_timeout: float = 2.5, hidden: bool = False, max_queue_bytes: int = 0,
                 services: Any = (), discovery: Any = None):
        if port is not None and listen is not None:
            raise ValueError("give port or listen, not both")
        if port is not None:
            listen = f"tcp://*:{int(port)}"
        if key_dir is not None:
            key_dir = os.fspath(key_dir)
        self._n = _kith._Node(_full_name(name), listen or "", advertise, key_dir or "", cookie, workers,
                              heartbeat_interval, heartbeat_timeout, hidden, max_queue_bytes, list(services),
                              _discovery_options(discovery, listen or "", hidden))
        self._inbox = self._n.mailbox()

    # -- lifecycle
    def stop(self) -> None:
        """Stops the node (idempotent): actors dropped, peers told goodbye."""
        self._n.stop()
        self._inbox.close()

    def __enter__(self) -> "Node":
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"<kith.Node {self.name}{' stopped' if self.stopped else ''}>"

    name = property(lambda self: self._n.name, doc="The full name, 'name@host'.")
    stopped = property(lambda self: self._n.stopped)
    endpoint = property(lambda self: self._n.endpoint, doc="The bound endpoint ('' without network).")
    key = property(lambda self: self._n.key, doc="The node's public key (Z85 text).")
    fingerprint = property(lambda self: self._n.fingerprint)
    self = property(lambda self: self._inbox.self, doc="The pid of the node's own mailbox.")

    # -- messages
    def send(self, to: Any, msg: Any) -> None:
        """Sends msg to a Pid, a registered name, or a (name, node) pair. Never blocks."""
        if isinstance(to, tuple) and len(to) == 2 and isinstance(to[1], str):
            to = (to[0], self.resolve(to[1]))
        self._n.send(to, msg)

    def receive(self, timeout: Optional[float] = None, match: Optional[Callable[[Any], bool]] = None) -> Any:
        """Receives from the node's own mailbox (see Mailbox.receive)."""
        return self._inbox.receive(timeout, match)

    def mailbox(self) -> Mailbox:
        """A new mailbox (a pid) for another thread."""
        return self._n.mailbox()

    def reply(self, request: Request, value: Any) -> None:
        self._n.reply(request, value)

    def exit(self, pid: Pid, reason: Any) -> None:
        """Sends an exit signal ("kill" kills even a trapping actor)."""
        self._n.exit(pid, reason)

    def call_pid(self, pid: Pid, msg: Any, timeout: float = 5.0) -> Any:
        """Sends msg as a request to an actor and waits for its reply (NoProc if it
        is dead or ends first, Timeout). Ctrl-C interrupts the wait."""
        return self._n.call_pid(pid, msg, float(timeout))

    # -- names
    def register(self, name: str, pid: Optional[Pid] = None) -> None:
        """Registers pid (default: the node's mailbox) under name on this node."""
        self._n.register(name, pid if pid is not None else self.self)

    def unregister(self, name: str) -> None:
        self._n.unregister(name)

    def whereis(self, name: str) -> Optional[Pid]:
        return self._n.whereis(name)

    def alive(self, pid: Pid) -> bool:
        return self._n.alive(pid)

    # -- spawning
    def spawn(self, target: Any, *args: Any, timeout: float = 5.0, **kwargs: Any) -> Pid:
        """spawn(fn_or_class, *args): a local Python actor.
        spawn(node, service, type, *args, timeout=5): an exported actor type on a node."""
        if isinstance(target, str):
            return self._n._spawn_remote(self.resolve(target), args[0], args[1], list(args[2:]), timeout, None, None)
        init, handler = _actor_parts(target, args, kwargs)
        return self._n._spawn(init, handler)

    def spawn_link(self, target: Any, *args: Any, timeout: float = 5.0, **kwargs: Any) -> Pid:
        """As spawn, linked with the node's mailbox (an Exit arrives there if it ends abnormally)."""
        if isinstance(target, str):
            return self._n._spawn_remote(target, args[0], args[1], list(args[2:]), timeout, self._inbox, None)
        return _spawn_with(self._inbox, target, args, kwargs, True, False)

    def spawn_monitor(self, target: Any, *args: Any, timeout: float = 5.0, **kwargs: Any) -> "tuple[Pid, Ref]":
        """As spawn, monitored by the node's mailbox: returns (pid, ref); a Down arrives when it ends."""
        if isinstance(target, str):
            return self._n._spawn_remote(target, args[0], args[1], list(args[2:]), timeout, None, self._inbox)
        return _spawn_with(self._inbox, target, args, kwargs, False, True)

    # -- links and monitors (for the node's mailbox)
    def monitor(self, pid: Pid) -> Ref:
        return self._inbox.monitor(pid)

    def demonitor(self, ref: Ref) -> bool:
        return self._inbox.demonitor(ref)

    def link(self, pid: Pid) -> None:
        self._inbox.link(pid)

    def unlink(self, pid: Pid) -> None:
        self._inbox.unlink(pid)

    def monitor_node(self, node: str) -> None:
        """["nodedown", node, reason] arrives in the node's mailbox when node goes down."""
        self._n._monitor_node(node, self.self)

    # -- services and rpc
    def service(self, name: str) -> Service:
        """A new service exported by this node; add functions with @svc.function,
        actor types with @svc.actor; or decorate a class: @node.service("math")."""
        svc = Service(name)
        self.add_service(svc)
        return svc

    def add_service(self, svc: Service) -> None:
        """Exports svc (replacing a service of the same name); later additions to it are exported too."""
        svc._nodes.append(self)
        self._export(svc)

    def _export(self, svc: Service) -> None:
        if not self._n.stopped:
            self._n._add_service(svc.name, dict(svc._functions), dict(svc._types))

    def services(self) -> "list[str]":
        return self._n.services()

    def call(self, node: str, service: str, function: str, *args: Any, timeout: float = 5.0) -> Any:
        """rpc: service:function(*args) on node; returns its value or raises (Timeout,
        NodeDown, NoSuchService, NoSuchFunction, BadArgs, RemoteException, ...).
        node is a full name or a short one (see resolve())."""
        return self._n.call(self.resolve(node), service, function, list(args), float(timeout))

    def cast(self, node: str, service: str, function: str, *args: Any) -> None:
        """rpc without reply (NodeDown if not connected)."""
        self._n.cast(self.resolve(node), service, function, list(args))

    def multicall(self, nodes: "list[str]", service: str, function: str, *args: Any,
                  timeout: float = 5.0) -> "tuple[dict[str, Any], dict[str, Error]]":
        """Calls every node in parallel: ({node: value}, {node: error})."""
        return self._n.multicall([self.resolve(n) for n in nodes], service, function, list(args),
                                 float(timeout))

    def resolve(self, node: str) -> str:
        """The full name of a node given as "gandalf@pi1" (unchanged) or "gandalf"
        (as the kith command accepts it): the one connected node of that short
        name, else the one discovery has heard (not waiting; find() waits).
        BadArg if several match; an unknown short name is returned unchanged
        (the operation then says NodeDown)."""
        if not isinstance(node, str) or "@" in node:
            return node
        connected = [n for n in self._n.nodes() if n.split("@", 1)[0] == node]
        if len(connected) == 1:
            return connected[0]
        if len(connected) > 1:
            raise BadArg(f'"{node}" is ambiguous: {" ".join(sorted(connected))} (give the full name)')
        if self._n.discovery:
            heard = [s["name"] for s in self._n.seen() if s["name"].split("@", 1)[0] == node]
            if len(heard) == 1:
                return heard[0]
            if len(heard) > 1:
                raise BadArg(f'"{node}" is ambiguous: {" ".join(sorted(heard))} (give the full name)')
        return node

    # -- the cluster
    def connect(self, endpoint: Any, key: Optional[str] = None, timeout: float = 5.0, visitor: bool = False) -> str:
        """Connects to another node and returns its name.

        connect(endpoint, key): the cluster member listening at endpoint
        ("tcp://192.0.2.7:4370") with public key `key` (Z85, its node.key).
        It must prove that it knows the cookie; a node that cannot is refused
        (Unauthorized "... did not prove membership of our cluster").
        connect(endpoint, key, visitor=True): a node outside the cluster, to
        use its public services; dials with this node's own key (never the
        cluster's), and the other node gets no right here beyond answering.
        connect(grant): with a Grant (or the path of a grant file) that the
        other node's owner gave you; afterwards calls to that node go through
        the grant. Raises Revoked (revoked or expired grant), Unauthorized
        (refused: wrong cookie, unknown grant), Timeout. Ctrl-C interrupts
        connect(endpoint, key); a grant connect is bounded by timeout per
        endpoint of the grant."""
        if isinstance(endpoint, Grant):
            if key is not None:
                raise TypeError("connect(grant) takes no key")
            return self._n.connect_grant(endpoint, float(timeout))
        if key is None:
            if isinstance(endpoint, (str, os.PathLike)) and "://" not in str(endpoint):
                return self._n.connect_grant(load_grant(endpoint), float(timeout))
            raise TypeError("connect(endpoint, key) needs the node's public key; or connect(grant)")
        return self._n.connect(endpoint, key, float(timeout), bool(visitor))

    # -- grants (what this node lets others do)
    def grant(self, label: str, allow: Any, rate: Any = None, expires: Any = None) -> Grant:
        """Issues a grant: a key that lets its holder's node use exactly `allow`
        on this node. Returns the Grant; save() it and hand the file over
        privately (it holds a secret key).

        label    unique name of the grant on this node, e.g. "bob".
        allow    "kvs" (a whole service), "echo:echo" (one function or actor
                 type), several comma-separated, a list of these, or a dict
                 {"kvs": [], "echo": ["echo"]} ([] = the whole service).
        rate     "10/s", "10/s,burst=20", "unlimited", a number per second, or
                 (per_second, burst); default 10/s with a burst of 20. Beyond
                 it calls are answered with RateLimited.
        expires  a datetime, a timedelta or seconds from now; None: never.
        BadArg for a bad or duplicate label, scope or rate."""
        return self._n.grant(label, allow, rate, _expiry_ts(expires))

    def grants(self) -> "list[dict]":
        """The grant table: dicts with label, allow, scope, rate, expires, created,
        fingerprint, revoked, expired, connected, accepted, refused, rate_limited."""
        return self._n.grants()

    def revoke_grant(self, label: str) -> None:
        """Revokes at once: the holder's next message is refused with Revoked,
        its connection closed, its reconnects refused. BadArg if unknown."""
        self._n.revoke_grant(label)

    def set_grant_rate(self, label: str, rate: Any) -> None:
        """Changes a grant's rate (as in grant()); effective for the next message."""
        self._n.set_grant_rate(label, rate)

    def set_public(self, service: str, on: bool = True, rate: Any = None) -> None:
        """Opens service to anyone who can reach this node, strangers included
        (each connecting key limited to rate, default 10/s); on=False closes it,
        and with no public service left every stranger is disconnected.
        Raises BadArg for the admin services "grants" and "node", which can
        never be public."""
        self._n.set_public(service, on, rate)

    def public_services(self) -> "list[str]":
        return self._n.public_services()

    # -- discovery
    @property
    def discovery(self) -> bool:
        """True if this node runs LAN discovery (see Node(discovery=...))."""
        return self._n.discovery

    def seen(self) -> "list[dict]":
        """The nodes heard by discovery, sorted by name: dicts with name, endpoint,
        key, fingerprint, trust ("cluster" or "stranger"), services, connected
        and age (seconds since last heard). BadArg if discovery is off."""
        return self._n.seen()

    def find(self, name: str, timeout: float = 1.0, connect: bool = True) -> dict:
        """Waits up to timeout seconds for a node to be heard, by full
        ("gandalf@pi1") or short ("gandalf") name, and returns it as seen() does
        once it is usable: a member of the cluster connected (find("gandalf")
        then call("gandalf", ...) works at once); a stranger with public
        services connected as a visitor. A stranger with no public service is
        returned as heard (connected False): nothing on it may be used.
        Raises Timeout (the detail lists what was heard, or says that it was
        heard but did not connect in time), BadArg for an ambiguous short
        name, Unauthorized when it refused the connection (with its reason,
        e.g. another cookie or a name held by another node). connect=False:
        only wait to hear it. Ctrl-C interrupts."""
        deadline = time.monotonic() + float(timeout)
        s = self._n.find(name, float(timeout))
        if not connect or s.get("connected"):
            return s
        if s["trust"] == "stranger" and not s["services"]:
            return s
        left = max(deadline - time.monotonic(), 0.5)
        # Auto-connect may be dialling already; connect() joins it (a node
        # already connected answers at once).
        self._n.connect(s["endpoint"], s["key"], left, s["trust"] == "stranger")
        s = dict(s, connected=True)
        return s

    def discovery_stats(self) -> dict:
        """Discovery counters: beacons_sent, beacons_received, bad_hmac, malformed,
        rate_limited, key_conflicts, spoofed_leaves, queries_answered, replayed,
        connect_failures."""
        return self._n._discovery_stats()

    def ping(self, node: str, timeout: float = 1.0) -> bool:
        return self._n.ping(self.resolve(node), timeout)

    def nodes(self) -> "list[str]":
        return self._n.nodes()

    def info(self, node: str) -> Optional[dict]:
        return self._n._info(node)

    def on_nodes(self, callback: Callable[[NodeEvent], Any]) -> Subscription:
        """Calls callback(NodeEvent) for every node up/down (on a kith thread)."""
        return Subscription(self, callback)

    def node_events(self, timeout: Optional[float] = None) -> NodeEvents:
        """An iterator of NodeEvent; see NodeEvents."""
        return NodeEvents(self, timeout)

    def net_stats(self) -> dict:
        return self._n._net_stats()
