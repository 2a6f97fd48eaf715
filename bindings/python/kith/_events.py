"""Node up/down events: kith.NodeEvent, Subscription (callbacks) and
NodeEvents (an iterator)."""
from __future__ import annotations

import traceback
from typing import TYPE_CHECKING, Any, Callable, NamedTuple, Optional

from . import _kith
from ._kith import Actor, Shutdown, Timeout

if TYPE_CHECKING:
    from ._node import Node


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
            except Exception as e:
                where = traceback.extract_tb(e.__traceback__)[-1]
                _kith._log("error", "python", node.name,
                           f"the node-event callback {getattr(callback, '__qualname__', callback)!r} raised "
                           f"{type(e).__name__}: {e} (at {where.filename}:{where.lineno}); fix it or cancel() it")
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
