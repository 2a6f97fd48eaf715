"""kith.Node: the Python face of a kith node (the compiled part is
kith._kith._Node)."""
from __future__ import annotations

import concurrent.futures
import itertools
import os
import threading
import time
import weakref
from typing import Any, Callable, Optional

from . import _kith
from ._actors import _actor_parts, _spawn_with
from ._async import _CallFuture, _dispatcher, _fail_pending
from ._events import NodeEvent, NodeEvents, Subscription
from ._kith import BadArg, Error, Grant, Mailbox, Pid, Ref, Request, load_grant
from ._options import _conns_per_address, _discovery_options, _endpoint, _expiry_ts, _full_name, _network_cpu
from ._service import Service


class Node:
    """A kith node: the runtime hosting actors, services and connections.

    Node(name, *, cookie=None, port=None, listen=None, advertise="", member_listen="",
         key_dir=None, workers=0, guest_workers=0, network_cpu="auto", conns_per_address=None,
         heartbeat_interval=0.5, heartbeat_timeout=2.5, hidden=False,
         max_queue_bytes=0, services=(), discovery=None, log=None)

    name      "name@host" ("name" alone becomes name@<hostname>).
    port      listen on all interfaces on this TCP port; or listen="127.0.0.1:0"
              (any free port on loopback; "HOST:PORT" is "tcp://HOST:PORT" in
              every endpoint, as on the command line, and anything else
              raises BadArg saying why). Neither: a purely local node.
    member_listen
              the member port (docs/security.md, "The member port"): a second
              listening socket that admits only this cluster's members, so a
              flood from grantees or strangers on the public port does not slow
              members down. "" (default): the listen address with any free port;
              "*:4380" (or "tcp://*:4380"): a fixed one; "off": none. Members learn it from
              beacons and the local registry (node.member_endpoint).
    cookie    cluster cookie (default: the cookie file in key_dir).
    key_dir   key directory (default $KITH_HOME or ~/.kith).
    workers   actor worker threads (0: one per core).
    guest_workers
              how many of them grantees' and strangers' calls and actors may
              occupy at once; the rest stay free for members (0: half the
              workers, at least 1; docs/security.md, "The workers' share").
    network_cpu
              keep the node's network threads on one CPU: an int (0-based),
              "auto" (default: the least busy CPU, moved when it gets busy)
              or None (not pinned: the scheduler places them;
              docs/performance.md). Service functions and actors often run
              on these threads: a thread they start inherits that CPU.
    conns_per_address
              connections a second each port accepts from one address (burst
              4x), beyond which that address's new connections are dropped
              for 2-60 s; 0: unlimited; None: 16 (docs/security.md,
              "Connections per address"). Raise it for many nodes behind one
              NAT address.
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
              max_beacons_per_s (per cluster source), max_stranger_beacons_per_s
              (all unauthenticated beacons and queries together),
              max_answers_per_s (unicast query answers), max_clock_skew
              (seconds; a member's beacon further off our clock is dropped,
              counted "stale"), log (a callable for discovery's records;
              default: the node's log).
              Cluster members (same cookie) are connected automatically;
              others are listed as strangers, never trusted.
    log       a callable receiving each diagnostic of this node as a
              kith.LogRecord (level, source, node, text): refused connections,
              malformed frames, discovery hints. Called on a kith thread with
              the GIL, in order; an exception in it is reported through the
              default sink (kith.set_log_sink), never raised. Records of all
              levels arrive; filter on record.level. None (default): the
              default sink. Released by stop().

    Use it as a context manager (stop() at the end). The node also has its own
    mailbox (node.self, node.receive, ...) for the thread that uses it.
    Raises SetupError if it cannot start (port in use, bad key file).
    """

    def __init__(self, name: str = "kith@localhost", *, cookie: Optional[str] = None,
                 port: Optional[int] = None, listen: Optional[str] = None, advertise: str = "",
                 member_listen: str = "", key_dir: Any = None, workers: int = 0, guest_workers: int = 0,
                 network_cpu: Any = "auto", conns_per_address: Optional[float] = None,
                 heartbeat_interval: float = 0.5,
                 heartbeat_timeout: float = 2.5, hidden: bool = False, max_queue_bytes: int = 0,
                 services: Any = (), discovery: Any = None, log: Optional[Callable[[Any], Any]] = None):
        if port is not None and listen is not None:
            raise ValueError("give port or listen, not both")
        if port is not None:
            listen = f"tcp://*:{int(port)}"
        # "HOST:PORT" is "tcp://HOST:PORT", as on the command line; refused
        # (BadArg) before anything is made.
        if listen:
            listen = _endpoint("Node listen", listen, "listen")
        if advertise:
            advertise = _endpoint("Node advertise", advertise, "dial")
        if member_listen and member_listen != "off":
            member_listen = _endpoint("Node member_listen", member_listen, "listen")
        if key_dir is not None:
            key_dir = os.fspath(key_dir)
        self._n = _kith._Node(_full_name(name), listen or "", advertise, key_dir or "", cookie, workers,
                              heartbeat_interval, heartbeat_timeout, hidden, max_queue_bytes, list(services),
                              _discovery_options(discovery, listen or "", hidden), log, member_listen,
                              guest_workers, _network_cpu(network_cpu),
                              -1.0 if conns_per_address is None else _conns_per_address(conns_per_address))
        self._inbox = self._n.mailbox()
        # spawn_async and call_async: the Futures waiting for an answer, by
        # tag (spawn_async's each completed by an actor of its own,
        # _async_helper; call_async's by its dispatchers, _call_queue).
        self._pending: "dict[int, concurrent.futures.Future]" = {}
        self._calls: "Optional[Any]" = None  # call_async's _kith._Node._CallQueue, made at the first
        self._calls_lock = threading.Lock()
        self._tags = itertools.count(1)
        weakref.finalize(self, _fail_pending, self._pending, "its node was dropped")

    # -- lifecycle
    def stop(self) -> None:
        """Stops the node (idempotent): actors dropped, peers told goodbye. Safe
        from several threads at once; each call returns once the node is stopped."""
        self._n.stop()
        self._inbox.close()
        _fail_pending(self._pending, f"node {self.name} stopped before the call or spawn was answered")

    def __enter__(self) -> "Node":
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"<kith.Node {self.name}{' stopped' if self.stopped else ''}>"

    name = property(lambda self: self._n.name, doc="The full name, 'name@host'.")
    stopped = property(lambda self: self._n.stopped)
    endpoint = property(lambda self: self._n.endpoint, doc="The bound endpoint ('' without network).")
    member_endpoint = property(lambda self: self._n.member_endpoint,
                               doc="Where members dial this node: its member port ('' if none; see member_listen).")
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

    def spawn_async(self, node: str, service: str, type: str, *args: Any,
                    timeout: float = 5.0) -> "concurrent.futures.Future[Pid]":
        """Spawns an exported actor type on node without waiting (Erlang's
        spawn_request): returns at once a concurrent.futures.Future that gets
        the new actor's Pid, or the exception spawn() would raise (Timeout,
        NodeDown, Unauthorized, NoSuchService, NoSuchFunction, BadArgs,
        Overloaded, Shutdown if this node stops first). Never raises for
        those; raises at once only for arguments that cannot be sent
        (TypeError) or a stopped node (Shutdown).

            futs = [node.spawn_async("bob", "echo", "server") for _ in range(32)]
            pids = [f.result() for f in futs]                  # wait for each
            node.spawn_async(...).add_done_callback(lambda f: print(f.result()))
            pid = await asyncio.wrap_future(node.spawn_async(...))   # asyncio

        The answer comes within timeout seconds. Done-callbacks run on a kith
        thread (a worker, or the network I/O thread that read the answer):
        keep them short, and do not stop the node from them; they may wait
        for another spawn_async's Future (each Future has its own completer).
        cancel() returns False: a spawn cannot be taken back (the actor may
        already run)."""
        for what, v in (("node", node), ("service", service), ("type", type)):
            if not isinstance(v, str):
                raise TypeError(f"spawn_async(node, service, type, *args): {what} is a str, got {v!r}")
        fut: concurrent.futures.Future = concurrent.futures.Future()
        fut.set_running_or_notify_cancel()
        to = self.resolve(node)
        tag = next(self._tags)
        self._pending[tag] = fut
        helper = self._async_helper()
        try:
            self._n._spawn_async(to, service, type, list(args), float(timeout), helper, tag)
        except BaseException:
            self._pending.pop(tag, None)
            try:
                self._n.send(helper, ["kith-spawn-async", tag, "badarg", "not sent"])  # it ends
            except _kith.Error:
                pass
            raise
        return fut

    def _async_helper(self) -> Pid:
        """An actor that completes one spawn_async Future, then ends. One per
        Future: a done-callback runs inside its completer, and one completer
        for all made a callback that waits for another Future wait for
        itself (until its timeout)."""
        pending = self._pending  # not self: the actor must not keep the Node alive

        def complete(actor: Any, msg: Any) -> None:
            if not (isinstance(msg, list) and len(msg) in (3, 4) and msg[0] == "kith-spawn-async"):
                return
            actor.quit()
            fut = pending.pop(msg[1], None)
            if fut is None or fut.done():
                return
            if len(msg) == 3:
                fut.set_result(msg[2])
            else:
                fut.set_exception(_kith._error(msg[2], msg[3]))
        return self._n._spawn(None, complete)

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

    def call_async(self, node: str, service: str, function: str, *args: Any,
                   timeout: float = 5.0) -> "concurrent.futures.Future[Any]":
        """rpc without waiting: returns at once a concurrent.futures.Future that
        gets service:function(*args)'s value on node, or the exception call()
        would raise (the same classes: Timeout, NodeDown, NoSuchService,
        NoSuchFunction, BadArgs, RemoteException, Unauthorized, Revoked,
        RateLimited, Overloaded, ...; Shutdown if this node stops first).
        Never raises for those; raises at once only for arguments that cannot
        be sent (TypeError) or a stopped node (Shutdown).

            futs = [node.call_async("bob", "kvs", "lookup", k) for k in keys]
            values = [f.result() for f in futs]
            node.call_async(...).add_done_callback(lambda f: print(f.result()))
            value = await asyncio.wrap_future(node.call_async(...))   # asyncio

        The answer comes within timeout seconds. Done-callbacks run on a kith
        worker thread with the GIL held: keep them short and do not stop the
        node from them. They may call again (call_async, or even a blocking
        call()) and may wait for another call_async's Future: the answers
        that arrive meanwhile are completed by another dispatcher actor (the
        node needs a free worker for it: workers >= 2). cancel() returns
        False: a call cannot be taken back (it may already run)."""
        for what, v in (("node", node), ("service", service), ("function", function)):
            if not isinstance(v, str):
                raise TypeError(f"call_async(node, service, function, *args): {what} is a str, got {v!r}")
        fut = _CallFuture()
        fut.set_running_or_notify_cancel()
        to = self.resolve(node)
        queue = self._calls if self._calls is not None else self._call_queue()
        tag = next(self._tags)
        self._pending[tag] = fut
        try:
            self._n._call_async(to, service, function, list(args), float(timeout), queue, tag)
        except BaseException:
            self._pending.pop(tag, None)
            raise
        return fut

    def _call_queue(self) -> Any:
        """call_async's queue of answers and its first dispatcher (made once).
        Kith threads put answers into the queue and kick the current
        dispatcher, an actor; it takes every answer there at once, naming
        the next dispatcher (a free one, or a new one) in the same step,
        completes their Futures, and only then runs their done-callbacks:
        a callback may wait for a Future of the same batch (already
        completed) or for a later answer (completed by the next
        dispatcher). Free dispatchers are kept for reuse (at most 8)."""
        with self._calls_lock:
            if self._calls is None:
                queue = _kith._Node._CallQueue()
                queue.set_dispatcher(self._n._spawn(None, _dispatcher(self._pending, queue, [])))
                self._calls = queue
            return self._calls

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
        ("192.0.2.7:4370" or "tcp://192.0.2.7:4370") with public key `key` (Z85, its node.key).
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
        return self._n.connect(_endpoint("connect endpoint", endpoint), key, float(timeout), bool(visitor))

    # -- grants (what this node lets others do)
    def grant(self, label: str, allow: Any, rate: Any = None, expires: Any = None, limits: Any = None) -> Grant:
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
        limits   what the holder may hold on this node at once, all its
                 sessions together: "pending=8,spawned=4" or a dict
                 {"pending": 8, "spawned": 4}. pending: calls, casts and
                 spawns in flight (default 64); spawned: actors alive that it
                 spawned (256); queued: bytes of its messages waiting in
                 mailboxes (4194304); relations: monitors and links it holds
                 (4096). Any subset, each 1 to 16x its default; None: the
                 defaults. Over a limit its request is refused with
                 Overloaded ("limit pending: ...").
        BadArg for a bad or duplicate label, scope, rate or limits (the
        message names the limit and its bounds)."""
        return self._n.grant(label, allow, rate, _expiry_ts(expires), limits)

    def grants(self) -> "list[dict]":
        """The grant table: dicts with label, allow, scope, rate, limits ("default"
        or "pending=8,spawned=4": only those set), expires, created,
        fingerprint, revoked, expired, connected, accepted, refused,
        rate_limited."""
        return self._n.grants()

    def revoke_grant(self, label: str) -> None:
        """Revokes at once: the holder's next message is refused with Revoked,
        its connection closed, its reconnects refused. BadArg if unknown."""
        self._n.revoke_grant(label)

    def set_grant_rate(self, label: str, rate: Any) -> None:
        """Changes a grant's rate (as in grant()); effective for the next message."""
        self._n.set_grant_rate(label, rate)

    def set_grant_limits(self, label: str, limits: Any = None) -> str:
        """Replaces a grant's limits (as grant(limits=...): "pending=8,spawned=4",
        a dict {"pending": 8}, or None for all the defaults): a limit not
        named goes back to its default. Saved in the grant table and in force
        for the holder's next request, on its live sessions too; what it
        holds already is kept (over a lowered limit, its further requests are
        refused with Overloaded until it is under again). Returns the limits
        now set, as text ("pending=8" or "default"). Only the node's owner can
        do this (here, or `kith grant limits`, or the "grants" service, which
        only cluster members may call); never a grantee. BadArg for an
        unknown or revoked label or a bad limit (naming it and its bounds)."""
        return self._n.set_grant_limits(label, limits)

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
        key, fingerprint, trust ("cluster" or "stranger"), services, connected,
        cluster_id (8 hex digits naming the cookie's cluster; "" if none) and
        age (seconds since last heard). BadArg if discovery is off."""
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
        duplicates (copies of a member's newest beacon), stale (outside max_clock_skew), answers_limited (queries over their
        budget), connect_failures, dropped_by_kernel (datagrams not starting like a beacon, or a full socket buffer)."""
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
        """Distribution counters since start (kith/net.hpp, net_counters):
        envelopes_in/out, frames_in/out, decode_errors, protocol_errors,
        refused (of which refused_unauthorized, refused_revoked,
        refused_rate_limited, refused_overloaded from grantees and strangers;
        refused_unanswered: refusals over the rate not answered, past 1000 a
        second), overload_drops, refused_connections, rate_drops (frames of
        grantees and strangers dropped unread over their bytes-a-second
        budget: their calls time out; each frame costs 512 bytes besides its
        size, so about 2,000 one-call frames a second per key), paced_waits
        (times this node held a frame back from a non-member peer to keep
        within that budget, which a kith sender paces to: slower, not lost),
        address_blocks (times a source address that opened connections
        faster than net_options::conns_per_address_per_s had its new
        connections dropped for a while), member_moves and
        member_moves_failed (links to members moved from the public port
        they were dialled at to the member's member port, and moves that
        did not work: the link stayed where it was)."""
        return self._n._net_stats()
