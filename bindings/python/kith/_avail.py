"""Availability (docs/availability.md): supervisors, process groups, global
names and failover services, as methods of kith.Node.

    sup = node.start_supervisor([kith.Child("db", Db), kith.Child("web", web, 8080)],
                                strategy="rest_for_one", intensity=3, period=5.0)
    room = node.pg("chat")                 # a process-group scope (default "default")
    room.join("lobby", pid); room.send_all("lobby", "hi")
    names = node.global_names()            # this node's global name server
    names.register("kvs", pid); names.whereis("kvs"); names.call("kvs", "get")
    node.failover("kvs", ["a@h", "b@h", "c@h"], KvsActor)   # on every listed node

Each server belongs to its node: node.stop() ends it, and its methods raise
kith.Shutdown afterwards. Their methods never block (reads come from tables
the servers keep current); the supervisor calls wait, with the GIL released.
"""
from __future__ import annotations

from typing import Any, Optional

from ._actors import _actor_parts
from ._kith import Pid
from ._node import Node
from ._options import _full_name

_RESTARTS = ("permanent", "transient", "temporary")


class Child:
    """A supervisor's child.

    Child(id, target, *args, restart="permanent", shutdown=5.0, **kwargs)
        a local Python actor, spawned as node.spawn(target, *args, **kwargs)
        would spawn it; a class target is instantiated afresh at each
        (re)start, so a restarted child starts from a clean state.
    Child.remote(id, node, service, type, *args, restart=..., shutdown=...,
                 start_timeout=5.0)
        an exported actor type of a service on another node (a lost node
        counts as a child exit; the child is started again when it returns).

    restart: "permanent" (always restarted), "transient" (restarted only after
    an abnormal exit), "temporary" (never). shutdown: seconds between the
    exit signal "shutdown" and "kill" when the supervisor stops it (0: kill).
    """

    def __init__(self, id: str, target: Any = None, *args: Any, restart: str = "permanent",
                 shutdown: float = 5.0, **kwargs: Any) -> None:
        if restart not in _RESTARTS:
            raise ValueError(f"restart must be one of {_RESTARTS}, not {restart!r}")
        self.id = id
        self.restart = restart
        self.shutdown = float(shutdown)
        self.start_timeout = 5.0
        self.remote_at: Optional[tuple] = None
        if target is not None:
            if not isinstance(target, type):
                _actor_parts(target, args, kwargs)  # a bad target raises TypeError here, not in the child
            self._factory = lambda: _actor_parts(target, args, kwargs)
        else:
            self._factory = None

    @classmethod
    def remote(cls, id: str, node: str, service: str, type: str, *args: Any, restart: str = "permanent",
               shutdown: float = 5.0, start_timeout: float = 5.0) -> "Child":
        c = cls(id, restart=restart, shutdown=shutdown)
        c.start_timeout = float(start_timeout)
        c.remote_at = (node, service, type, list(args))
        return c

    def _spec(self) -> dict:
        d = {"id": self.id, "restart": self.restart, "shutdown": self.shutdown, "start_timeout": self.start_timeout}
        if self.remote_at is not None:
            d["node"], d["service"], d["type"], d["args"] = self.remote_at
        elif self._factory is not None:
            d["factory"] = self._factory
        else:
            raise ValueError(f"child {self.id!r} needs a target (or use Child.remote)")
        return d

    def __repr__(self) -> str:
        where = f" remote={self.remote_at[:3]}" if self.remote_at else ""
        return f"kith.Child({self.id!r}, restart={self.restart!r}{where})"


class PgScope:
    """A process-group scope on a node (kith/pg.hpp): named groups of pids across
    the cluster, eventually consistent. Get it with node.pg(scope).

    join(group, pid) / leave(group, pid): a LOCAL pid (several joins need as
    many leaves). members(group): every node's members as this node knows them
    (once per join); local_members(group); groups(). send_all(group, msg) ->
    how many pids it was sent to. monitor(pid, on=True) -> {group: [pids]} now,
    then every change arrives at pid as ["pg", scope, "join"|"leave", group,
    [pids]]. Members leave when they end or their node goes down.
    Errors: BadArg (empty group, non-local pid, leave of a non-member),
    Unauthorized (code running for a grantee), Shutdown (node stopped).
    """

    def __init__(self, impl: Any) -> None:
        self._s = impl

    scope = property(lambda self: self._s.scope)
    server = property(lambda self: self._s.server, doc="The scope server's pid.")

    def join(self, group: str, pid: Pid) -> None:
        self._s.join(group, pid)

    def leave(self, group: str, pid: Pid) -> None:
        self._s.leave(group, pid)

    def members(self, group: str) -> "list[Pid]":
        return self._s.members(group)

    def local_members(self, group: str) -> "list[Pid]":
        return self._s.local_members(group)

    def groups(self) -> "list[str]":
        return self._s.groups()

    def send_all(self, group: str, msg: Any) -> int:
        return self._s.send_all(group, msg)

    def monitor(self, pid: Pid, on: bool = True) -> Any:
        return self._s.monitor(pid, on)

    def __repr__(self) -> str:
        return f"kith.PgScope({self.scope!r})"


class GlobalNames:
    """The node's global name server (kith/global.hpp): names that mean one pid
    anywhere in the cluster. Get it with node.global_names().

    register(name, pid): a LOCAL pid; BadArg if the name is known to be held.
    whereis(name) -> Pid (NoProc if nobody holds it). send(name, msg).
    call(name, msg, timeout=5.0): a request to the holder, its reply (the name
    is looked up at each call: after a failover it reaches the new holder).
    unregister(name). registered() -> [(name, pid, stamp_ms)].
    Conflicts after a partition heals: the earlier registration (smaller
    stamp, then node name) wins; the loser gets the exit signal
    ["global_name_conflict", name].
    """

    def __init__(self, impl: Any, node: Node) -> None:
        self._g = impl
        self._node = node

    server = property(lambda self: self._g.server, doc="The name server's pid.")

    def register(self, name: str, pid: Pid) -> None:
        self._g.register(name, pid)

    def unregister(self, name: str) -> None:
        self._g.unregister(name)

    def whereis(self, name: str) -> Pid:
        return self._g.whereis(name)

    def send(self, name: str, msg: Any) -> None:
        self._g.send(name, msg)

    def call(self, name: str, msg: Any, timeout: float = 5.0) -> Any:
        return self._node.call_pid(self._g.whereis(name), msg, timeout)

    def registered(self) -> "list[tuple[str, Pid, int]]":
        return self._g.registered()

    def __repr__(self) -> str:
        return f"kith.GlobalNames(on {self._node.name!r})"


class Failover:
    """A failover service on this node (kith/failover.hpp). running_here: True
    while the instance runs on this node; instance: its pid here, or None."""

    def __init__(self, impl: Any, name: str) -> None:
        self._f = impl
        self.name = name

    running_here = property(lambda self: self._f.running_here)
    instance = property(lambda self: self._f.instance)

    def __repr__(self) -> str:
        return f"kith.Failover({self.name!r}, running_here={self.running_here})"


def _pg(self: Node, scope: str = "default") -> PgScope:
    """The process-group scope `scope` of this node (started on first use)."""
    cache = self.__dict__.setdefault("_pg_scopes", {})
    if scope not in cache:
        cache[scope] = PgScope(self._n._pg_scope(scope))
    return cache[scope]


def _global_names(self: Node) -> GlobalNames:
    """This node's global name server (started on first use)."""
    if "_globals" not in self.__dict__:
        self.__dict__["_globals"] = GlobalNames(self._n._global_names(), self)
    return self.__dict__["_globals"]


def _failover(self: Node, name: str, nodes: "list[str]", target: Any, *args: Any, delay: float = 0.75,
              check_interval: float = 0.1, stop_timeout: float = 2.0, **kwargs: Any) -> Failover:
    """Runs one instance of a Python actor (spawned as node.spawn(target, *args,
    **kwargs)) on the first live node of `nodes` (priority order; this node
    among them; every listed node calls failover() the same way), registered
    globally as `name`, with keep-majority: it runs only on a node that sees a
    strict majority of the list. `delay` (seconds) is how long a node wants
    the instance before starting it; a higher node that returns takes it back.
    BadArg for an empty name, a list without this node, duplicates or a second
    failover of that name here."""
    if not callable(target) and not hasattr(target, "receive"):
        raise TypeError("failover needs an actor target: a function handler(actor, msg), or a class or "
                        "object with a receive(actor, msg) method")
    full = [_full_name(n) for n in nodes]
    impl = self._n._failover(self.global_names()._g, name, full, lambda: _actor_parts(target, args, kwargs),
                             float(delay), float(check_interval), float(stop_timeout))
    return Failover(impl, name)


def _start_supervisor(self: Node, children: "list[Child]", strategy: str = "one_for_one", intensity: int = 1,
                      period: float = 5.0, retry_interval: float = 1.0, timeout: float = 30.0) -> Pid:
    """Starts a supervisor (kith/supervisor.hpp) on this node and returns its pid
    once every child has started (children start in order).
    strategy: "one_for_one" (restart the child that ended), "one_for_all"
    (restart all), "rest_for_one" (restart it and those after it).
    intensity, period: more than `intensity` restarts within `period` seconds
    and the supervisor gives up: it stops its children (in reverse order)
    and ends with reason "shutdown". retry_interval: how often a remote child
    whose node is down is tried again. Raises BadArg for bad specs, and the
    error of a child that fails to start."""
    specs = [c._spec() for c in children]
    return self._n._start_supervisor(strategy, int(intensity), float(period), float(retry_interval), specs,
                                     float(timeout))


def _which_children(self: Node, sup: Pid, timeout: float = 5.0) -> "list[dict]":
    """[{id, pid (None unless running), state ("running"|"waiting"|"stopped"),
    node, restarts}] in start order."""
    return self._n._which_children(sup, float(timeout))


def _stop_supervisor(self: Node, sup: Pid, timeout: float = 30.0) -> None:
    """Stops the supervisor: its children in reverse order, then itself."""
    self._n._stop_supervisor(sup, float(timeout))


Node.pg = _pg
Node.global_names = _global_names
Node.failover = _failover
Node.start_supervisor = _start_supervisor
Node.which_children = _which_children
Node.stop_supervisor = _stop_supervisor
