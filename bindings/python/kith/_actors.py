"""Spawning Python actors: what a spawn target becomes (an init and a
handler), and Actor.spawn* / Mailbox.spawn* (private)."""
from __future__ import annotations

import inspect
from typing import Any

from ._kith import Actor, Mailbox, Pid, Ref


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
