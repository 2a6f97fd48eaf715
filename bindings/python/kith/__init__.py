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

Threads: blocking calls release the GIL and can be interrupted with Ctrl-C.
Python actors and service functions run on kith's worker threads holding the
GIL; an exception in an actor ends it with the traceback as its exit reason.
"""
from __future__ import annotations

import atexit
import inspect
import re
import socket
import sys
import traceback
import typing
from typing import Any, Callable, Iterator, NamedTuple, Optional

from . import _kith
from ._kith import (  # noqa: F401  (re-exported)
    Actor, BadArg, BadArgs, BadType, DecodeError, Down, Error, Exit, Mailbox, NodeDown, NoProc,
    NoSuchFunction, NoSuchService, Overloaded, Pid, RateLimited, Ref, RemoteException, Request,
    Revoked, SetupError, Shutdown, Timeout, Unauthorized,
)

__all__ = [
    "Node", "Service", "Mailbox", "Actor", "Pid", "Ref", "Down", "Exit", "Request", "NodeEvent",
    "Subscription", "NodeEvents", "Error", "Timeout", "NodeDown", "Unauthorized", "Revoked",
    "RateLimited", "NoSuchService", "NoSuchFunction", "BadArgs", "RemoteException", "NoProc",
    "BadType", "DecodeError", "Overloaded", "BadArg", "Shutdown", "SetupError",
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
         max_queue_bytes=0, services=())

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

    Use it as a context manager (stop() at the end). The node also has its own
    mailbox (node.self, node.receive, ...) for the thread that uses it.
    Raises SetupError if it cannot start (port in use, bad key file).
    """

    def __init__(self, name: str = "kith@localhost", *, cookie: Optional[str] = None,
                 port: Optional[int] = None, listen: Optional[str] = None, advertise: str = "",
                 key_dir: Any = None, workers: int = 0, heartbeat_interval: float = 0.5,
                 heartbeat_timeout: float = 2.5, hidden: bool = False, max_queue_bytes: int = 0,
                 services: Any = ()):
        if port is not None and listen is not None:
            raise ValueError("give port or listen, not both")
        if port is not None:
            listen = f"tcp://*:{int(port)}"
        self._n = _kith._Node(_full_name(name), listen or "", advertise,
                              str(key_dir) if key_dir is not None else "", cookie, workers,
                              heartbeat_interval, heartbeat_timeout, hidden, max_queue_bytes, list(services))
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
            return self._n._spawn_remote(target, args[0], args[1], list(args[2:]), timeout, None, None)
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
        NodeDown, NoSuchService, NoSuchFunction, BadArgs, RemoteException, ...)."""
        return self._n.call(node, service, function, list(args), float(timeout))

    def cast(self, node: str, service: str, function: str, *args: Any) -> None:
        """rpc without reply (NodeDown if not connected)."""
        self._n.cast(node, service, function, list(args))

    def multicall(self, nodes: "list[str]", service: str, function: str, *args: Any,
                  timeout: float = 5.0) -> "tuple[dict[str, Any], dict[str, Error]]":
        """Calls every node in parallel: ({node: value}, {node: error})."""
        return self._n.multicall(list(nodes), service, function, list(args), float(timeout))

    # -- the cluster
    def connect(self, endpoint: str, key: str, timeout: float = 5.0) -> str:
        """Connects to the node at endpoint with public key `key` (Z85); returns its name."""
        return self._n.connect(endpoint, key, timeout)

    def ping(self, node: str, timeout: float = 1.0) -> bool:
        return self._n.ping(node, timeout)

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
