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

from . import _kith
from ._kith import (  # noqa: F401  (re-exported)
    Actor, BadArg, BadArgs, BadType, DecodeError, Down, Error, Exit, Grant, Mailbox, NodeDown, NoProc,
    NoSuchFunction, NoSuchService, Overloaded, Pid, RateLimited, Ref, RemoteException, Request,
    Revoked, SetupError, Shutdown, Timeout, Unauthorized, current_principal, load_grant, parse_grant,
)
# Private helpers stay reachable where they were (kith._discovery_options, ...).
from ._actors import _actor_parts, _actor_spawn, _actor_spawn_link, _actor_spawn_monitor, _spawn_with  # noqa: F401
from ._avail import Child, Failover, GlobalNames, PgScope
from ._rkvs import Rkvs
from ._events import NodeEvent, NodeEvents, Subscription
from ._log import LogRecord, set_log_sink
from ._node import Node
from ._relay import Relay, RelayClient
from ._options import _discovery_options, _expiry_ts, _full_name, _grant_expires, _on_lan  # noqa: F401
from ._service import _ARG_TYPES, Service, _arg_checker, _type_ok  # noqa: F401

__all__ = [
    "Node", "Service", "Mailbox", "Actor", "Pid", "Ref", "Down", "Exit", "Request", "NodeEvent",
    "Subscription", "NodeEvents", "Error", "Timeout", "NodeDown", "Unauthorized", "Revoked",
    "RateLimited", "NoSuchService", "NoSuchFunction", "BadArgs", "RemoteException", "NoProc",
    "BadType", "DecodeError", "Overloaded", "BadArg", "Shutdown", "SetupError", "Grant", "load_grant",
    "parse_grant", "current_principal", "LogRecord", "set_log_sink", "Child", "PgScope", "GlobalNames",
    "Failover", "Rkvs", "Relay", "RelayClient",
]

# The classes defined in the submodules are kith's: they print, pickle and
# document as kith.Node, kith.NodeEvent, ...
for _cls in (Node, Service, NodeEvent, NodeEvents, Subscription, LogRecord, Child, PgScope, GlobalNames, Failover,
             Rkvs, Relay, RelayClient):
    _cls.__module__ = __name__
del _cls

# Stop every node before the interpreter finalizes, so no kith thread calls
# into a dying interpreter.
atexit.register(_kith._shutdown)
