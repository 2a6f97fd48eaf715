"""The parts of Node.spawn_async and Node.call_async that complete their
concurrent.futures.Future objects: call_async's Future, its dispatcher
actors, and failing what still waits when the node stops."""
from __future__ import annotations

import concurrent.futures
from typing import Any, Optional

from . import _kith
from ._kith import Pid


class _CallFuture(concurrent.futures.Future):
    """call_async's Future: its dispatcher completes a whole batch before it
    runs any of their done-callbacks (deferred while _defer is set)."""
    _defer = False

    def _invoke_callbacks(self) -> None:
        if not self._defer:
            super()._invoke_callbacks()  # type: ignore[misc]


def _dispatcher(pending: "dict[int, concurrent.futures.Future]", queue: Any, idle: "list[Pid]") -> Any:
    """The handler of call_async's dispatcher actors (Node._call_queue). It
    holds neither the Node nor its _Node: the actors must not keep it alive."""
    def dispatch(actor: Any, msg: Any) -> None:
        if msg != ["kith-call-async-kick"]:
            return
        try:
            nxt = idle.pop()
        except IndexError:
            nxt = actor._spawn(None, dispatch, False, False)
        done = []
        for item in queue.take(nxt):
            fut = pending.pop(item[0], None)
            if fut is None or fut.done():
                continue
            fut._defer = True
            try:
                if item[1]:
                    fut.set_result(item[2])
                else:
                    fut.set_exception(_kith._error(item[2], item[3]))
            except concurrent.futures.InvalidStateError:
                continue  # failed meanwhile by stop()
            done.append(fut)
        # Every Future of the batch gets its callbacks run, even after one
        # raised a BaseException (SystemExit...; concurrent.futures catches
        # only Exception): then the first is raised again, once all ran.
        raised: Optional[BaseException] = None
        for fut in done:
            fut._defer = False
            try:
                fut._invoke_callbacks()
            except BaseException as e:  # noqa: B036 (re-raised below)
                raised = raised or e
        if raised is not None:
            raise raised  # this dispatcher ends; nxt takes the next answers
        if len(idle) < 8:
            idle.append(actor.self)
        else:
            actor.quit()
    return dispatch


def _fail_pending(pending: "dict[int, concurrent.futures.Future]", why: str) -> None:
    """Fails spawn_async's and call_async's Futures still waiting (their node
    stopped: the answers can no longer arrive)."""
    while pending:
        try:
            _, fut = pending.popitem()
        except KeyError:
            break
        if not fut.done():
            try:
                fut.set_exception(_kith._error("shutdown", why))
            except concurrent.futures.InvalidStateError:
                pass
