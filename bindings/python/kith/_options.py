"""Option helpers of kith.Node: full node names, grant expiry times, the
network CPU and the discovery switch (private)."""
from __future__ import annotations

import datetime
import ipaddress
import re
import socket
from typing import Any, Optional

from . import _kith
from ._kith import Grant


def _endpoint(what: str, value: Any, use: str = "dial", tcp: bool = True) -> str:
    """An endpoint as the kith command line takes it: 'HOST:PORT' is
    'tcp://HOST:PORT' (returned as that, or as 'HOST:PORT' if not tcp). use:
    "listen" (port 0: any free port), "dial" or "dial_port_optional".
    Raises BadArg naming `what` and the text, with an example."""
    return _kith._endpoint(what, str(value), use, tcp)


def _full_name(name: str) -> str:
    """'alice' -> 'alice@<hostname>' (as `kith node --name alice`); 'a@b' unchanged."""
    if "@" in name:
        return name
    host = re.sub(r"[^A-Za-z0-9_.-]", "-", socket.gethostname()) or "localhost"
    return f"{name}@{host}"


def _network_cpu(v: Any) -> int:
    """Node(network_cpu=...): "auto" (default) -> -2, None -> -1 (not pinned), else a CPU number."""
    if v is None:
        return -1
    if v == "auto":
        return -2
    if isinstance(v, bool) or not isinstance(v, int):
        raise TypeError(f'network_cpu wants a CPU number, "auto" or None (got {v!r})')
    if not 0 <= v <= 1023:
        raise ValueError(f"network_cpu wants a CPU number from 0 to 1023 (got {v})")
    return v


def _conns_per_address(v: Any) -> float:
    """Node(conns_per_address=...): connections a second from one address, 0 (unlimited) to 100000."""
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise TypeError(f"conns_per_address wants connections a second, a number (got {v!r})")
    if not 0 <= v <= 100000:
        raise ValueError(f"conns_per_address wants 0 (unlimited) to 100000 connections a second (got {v})")
    return float(v)


def _grant_expires(g: Grant) -> Optional[datetime.datetime]:
    ts = g._expires_ts
    return None if ts is None else datetime.datetime.fromtimestamp(ts, datetime.timezone.utc)


Grant.expires = property(_grant_expires, doc="When the grant expires (a UTC datetime), or None: never.")


def _expiry_ts(expires: Any) -> Optional[float]:
    """None, a datetime (naive: local time), a timedelta or a number of
    seconds from now -> seconds since the epoch."""
    if expires is None:
        return None
    if isinstance(expires, datetime.datetime):
        return expires.timestamp()
    if isinstance(expires, datetime.timedelta):
        return datetime.datetime.now(datetime.timezone.utc).timestamp() + expires.total_seconds()
    if isinstance(expires, (int, float)) and not isinstance(expires, bool):
        return datetime.datetime.now(datetime.timezone.utc).timestamp() + float(expires)
    raise TypeError("expires is a datetime, a timedelta, or a number of seconds from now")


def _on_lan(listen: str) -> bool:
    """True if a listen endpoint is reachable from other machines (not loopback)."""
    host = listen.split("://", 1)[-1].rsplit(":", 1)[0].strip("[]")
    if host in ("*", "0.0.0.0", "::", ""):
        return True
    if host == "localhost":
        return False
    try:
        return not ipaddress.ip_address(host).is_loopback
    except ValueError:
        return True  # an interface name or a host name


def _discovery_options(discovery: Any, listen: str, hidden: bool) -> Optional[dict]:
    if discovery is None:  # automatic: on when the node listens on the LAN
        if not listen or hidden or not _on_lan(listen):
            return None
        return {}
    if discovery is False:
        return None
    if discovery is True:
        return {}
    if isinstance(discovery, dict):
        d = dict(discovery)
        if "peers" in d:
            d["peers"] = [_endpoint("discovery peers", p, "dial_port_optional", tcp=False) for p in d["peers"]]
        return d
    raise TypeError("discovery is True, False, None (automatic) or a dict of options")

