"""The replicated kvs (kith/rkvs.hpp, docs/availability.md), as a method of
kith.Node:

    kv = node.rkvs(["a@h", "b@h", "c@h"])     # on EVERY listed node
    other.call("b@h", "rkvs", "store", "weather", "sunny")   # True
    other.call("c@h", "rkvs", "lookup", "weather")           # ["ok", "sunny"]
    kv.stop()                                 # or node.stop()

Each replica exports the service `service` (default "rkvs") with the
functions of the built-in "kvs": store, lookup, delete, keys. A write is
acknowledged once write_quorum replicas (default a strict majority) stored
it; a lookup answers while any replica lives; a replica that returns gets
every entry back from the others.
"""
from __future__ import annotations

from typing import Any

from ._kith import BadArg
from ._node import Node
from ._options import _full_name


class Rkvs:
    """This node's replica of a replicated kvs. Its methods never block (no
    network): local(key) is this replica's own value (None if it has none),
    size its entry count (tombstones included), digest a hash equal on
    replicas holding the same entries. stop() removes the replica (its
    service then answers Shutdown); afterwards every property raises
    kith.Shutdown except `stopped`."""

    def __init__(self, impl: Any) -> None:
        self._r = impl

    write_quorum = property(lambda self: self._r.write_quorum)
    service = property(lambda self: self._r.service)
    replicas = property(lambda self: list(self._r.replicas))
    size = property(lambda self: self._r.size)
    digest = property(lambda self: self._r.digest)
    stopped = property(lambda self: self._r.stopped)

    def local(self, key: str) -> Any:
        return self._r.local(key)

    def stop(self) -> None:
        self._r.stop()

    def __enter__(self) -> "Rkvs":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    def __repr__(self) -> str:
        if self.stopped:
            return "kith.Rkvs(stopped)"
        return f"kith.Rkvs({self.service!r}, replicas={self.replicas!r}, write_quorum={self.write_quorum})"


def _rkvs(self: Node, replicas: "list[str]", service: str = "rkvs", write_quorum: int = 0,
          ack_timeout: float = 2.0, read_timeout: float = 1.0, sync_interval: float = 5.0) -> Rkvs:
    """Hosts a replica of the replicated kvs with the replica list `replicas`
    (node names; this node among them; every listed node calls rkvs() with
    the same list; names without '@' get this machine's hostname), exported
    as the service `service`. write_quorum: replicas that must store a write
    before it is acknowledged (0: a strict majority). ack_timeout,
    read_timeout: seconds to wait for each replica on a write, a lookup;
    sync_interval: seconds between anti-entropy rounds. BadArg for a list
    without this node, a node twice, a write_quorum above the list's size,
    a bad service name, or a replicated kvs of that service still running
    on this node."""
    if isinstance(replicas, str):
        raise TypeError("rkvs needs a list of node names, e.g. node.rkvs([\"a@h\", \"b@h\", \"c@h\"])")
    if write_quorum < 0:
        raise ValueError("write_quorum must be >= 0 (0: a strict majority)")
    running = self.__dict__.setdefault("_rkvs_by_service", {})
    if service in running and not running[service].stopped:
        raise BadArg(f"a replicated kvs of service {service!r} already runs on {self.name}: stop() it first, "
                     "or give another service name")
    full = [_full_name(n) for n in replicas]
    kv = Rkvs(self._n._rkvs(full, service, int(write_quorum), float(ack_timeout), float(read_timeout),
                            float(sync_interval)))
    running[service] = kv
    return kv


Node.rkvs = _rkvs
