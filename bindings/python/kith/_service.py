"""kith.Service: exported functions and actor types, with argument
checks from their signatures."""
from __future__ import annotations

import inspect
import typing
from typing import Any, Callable, Optional

from ._actors import _actor_parts
from ._kith import BadArgs, Pid, Ref


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
        """Exports fn (decorator; @svc.function, @svc.function("x") or
        @svc.function(name="x"))."""
        if isinstance(fn, str):  # @svc.function("x"): the name
            fn, name = None, fn

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
        Other nodes start one with node.spawn(node, service, type, *args).
        @svc.actor names it after the class or function; @svc.actor("x") or
        @svc.actor(name="x") names it x."""
        if isinstance(target, str):  # @svc.actor("x"): the name
            target, name = None, target

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
