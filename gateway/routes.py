"""Functions at their own domain or short path: the routes file the provider writes (netconf/routes.py), followed
like the hosts file, and the matching of a request against it (docs/gateway.md, "Routes").

The file is followed with a ``stat`` at most every :data:`POLL_INTERVAL_S`, on the request path, and re-read only
when its inode, size or mtime changed (it is replaced by a rename, so every rewrite is a new inode).

Precedence (docs/gateway.md): a request whose ``Host`` is a routed domain goes to that function whatever its path
(``/system/...`` and ``/metrics`` included: a function at its own domain owns all of it). Otherwise the gateway's
own routes come first (``/function/``, ``/async-function/``, ``/system/``, ``/healthz``, ``/metrics``, ``/ui/``,
``/_/``; a path route cannot take them) and a path route gets what starts with its prefix.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import structlog

from netconf.routes import EMPTY, RoutesTable, read_routes

log = structlog.get_logger("gateway.routes")

POLL_INTERVAL_S: Final = 0.05

_Stamp = tuple[int, int, int]  # inode, size, mtime_ns


@dataclass(frozen=True, slots=True)
class RouteMatch:
    """Where a routed request goes: the function (``name.namespace``), the path it sees, the prefix stripped."""

    function: str
    target: str
    prefix: str


def host_name(host: str) -> str:
    """The name of a ``Host`` header value: lowercase, without port or trailing dot."""
    if host.startswith("["):
        return host  # an IPv6 literal is never a routed domain
    name, _, _port = host.partition(":")
    return name.lower().removesuffix(".")


class Routes:
    """The in-memory routes table, following the file."""

    __slots__ = ("_clock", "_next_poll", "_stamp", "_table", "path", "reads")

    def __init__(self, path: Path) -> None:
        self.path = path
        self._table: RoutesTable = EMPTY
        self._stamp: _Stamp | None = None
        self._next_poll = 0.0
        self._clock = time.monotonic
        self.reads = 0
        self.refresh(force=True)

    @property
    def table(self) -> RoutesTable:
        return self._table

    def refresh(self, *, force: bool = False) -> None:
        now = self._clock()
        if not force and now < self._next_poll:
            return
        self._next_poll = now + POLL_INTERVAL_S
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            stamp: _Stamp | None = None
        except OSError as exc:
            log.warning("routes_file_unreadable", path=str(self.path), error=exc.strerror)
            return
        else:
            stamp = (st.st_ino, st.st_size, st.st_mtime_ns)
        if stamp == self._stamp:
            return
        try:
            table = read_routes(self.path) if stamp is not None else EMPTY
        except Exception as exc:  # a RoutesFileError: keep the last table
            log.warning("routes_file_unreadable", path=str(self.path), error=str(exc))
            return
        if not table.complete:
            log.warning("routes_file_incomplete", path=str(self.path))
            return  # a hand-edited or cut file: keep the last good table, look again next poll
        self.reads += 1
        self._stamp = stamp
        if table != self._table:
            self._table = table
            log.info("routes_changed", domains=len(table.domains), paths=len(table.paths))

    def domain(self, host: str) -> str | None:
        """The function routed at this ``Host`` (header value), if any."""
        self.refresh()
        domains = self._table.domains
        return domains.get(host_name(host)) if domains else None

    def by_domain(self, host: str, raw_path: str) -> RouteMatch | None:
        function = self.domain(host)
        return None if function is None else RouteMatch(function, raw_path, "")

    def by_path(self, raw_path: str) -> RouteMatch | None:
        """The path route ``raw_path`` falls under (longest prefix first), with the prefix stripped."""
        self.refresh()
        for prefix, function in self._table.paths:
            if raw_path.startswith(prefix):
                rest = raw_path[len(prefix) :]
                if not rest or rest[0] == "/":
                    return RouteMatch(function, rest or "/", prefix)
                if rest[0] == "?":
                    return RouteMatch(function, "/" + rest, prefix)
        return None
