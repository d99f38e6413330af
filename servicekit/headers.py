"""Header rules shared by the executors and the HTTP edge."""

from __future__ import annotations

import time
from collections.abc import Iterable

from multidict import CIMultiDict

# Headers that describe one connection, not the message (RFC 9110 §7.6.1), never copied across the proxy.
HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-connection",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
    }
)
DURATION = "X-Duration-Seconds"
INTERNAL = "X-OpenFaaS-Internal"


def duration_header(started: float) -> str:
    """Seconds since ``started`` (a perf_counter reading), formatted like Go's %f."""
    return f"{time.perf_counter() - started:f}"


def raw_header(headers: Iterable[tuple[bytes, bytes]], lower_name: bytes) -> bytes | None:
    """The first value of a header among raw (bytes) name and value pairs, by its lower-case name."""
    for name, value in headers:
        if len(name) == len(lower_name) and name.lower() == lower_name:
            return value
    return None


def forwardable(items: Iterable[tuple[str, str]]) -> CIMultiDict[str]:
    """The headers of a message minus the hop-by-hop ones."""
    return CIMultiDict((k, v) for k, v in items if k.lower() not in HOP_BY_HOP)
