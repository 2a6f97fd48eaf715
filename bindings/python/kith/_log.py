"""kith's diagnostics in Python: kith.LogRecord and kith.set_log_sink.

Every diagnostic kith produces (a refused connection, a malformed frame, a
discovery hint, a callback that raised) is one record. It goes to the
callable of the node it belongs to (Node(log=...); discovery's may differ:
Node(discovery={"log": ...})), else to the process default sink:
kith.set_log_sink(callable, level="info"), or stderr. Callables run on one
kith thread holding the GIL, in the order the records came; they may call
into kith. One that raises is reported through the default sink (for the
default sink's own callable: sys.unraisablehook) and keeps getting records.
"""
from __future__ import annotations

from typing import NamedTuple

from . import _kith
from ._kith import set_log_sink  # noqa: F401  (re-exported by kith)


class LogRecord(NamedTuple):
    """One diagnostic: level ("debug", "info", "warning" or "error"), source
    (the component that wrote it: "dist", "discovery", "grants", "python",
    ...), node ("name@host", or "" for a process-wide record) and text (one
    line; text that came from a peer is escaped)."""
    level: str
    source: str
    node: str
    text: str


_kith._set_log_record_type(LogRecord)
