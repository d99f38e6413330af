"""Ready replicas of functions, as the proxy, the scaler and the async dispatcher look them up.

:class:`Resolver` is the one table the request path reads (``replicas``, ``recheck``, ``pick``, ``mark_refused``);
where the table comes from is a :class:`ReplicaSource`: the hosts file the provider writes (:class:`HostsFile`,
the docker backend) or Swarm's DNS (``gateway/swarm_dns.py``, ``PYFAASD_BACKEND=swarm``). The proxy code is the
same for both.

The hosts file is followed with a cheap ``stat`` at most every :data:`POLL_INTERVAL_S`, done on the request path
(no background task, nothing to do while idle), and re-read only when its size, mtime or inode changed. File
timestamps are coarse (a kernel tick), so a rewrite within the same tick as our last read could keep the mtime
and size: a read that happened within :data:`RACY_S` of the file's mtime is treated as possibly stale and the
file is read again at the next poll (git's "racily clean" rule).

Replicas are picked round robin per function. A replica that refused a connection is skipped for
:data:`REFUSED_HOLD_S` while another one is available.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import Final, Protocol

import structlog

from netconf.hosts import HostsTable, read_hosts

log = structlog.get_logger("gateway.resolver")

POLL_INTERVAL_S: Final = 0.05
RACY_S: Final = 0.05
REFUSED_HOLD_S: Final = 1.0

Table = Mapping[str, tuple[str, ...]]  # name.namespace (and aliases) → IPv4 addresses as strings


class ReplicaSource(Protocol):
    """Where the table of ready replicas comes from."""

    def poll(self, now: float, *, force: bool) -> Table | None:
        """The table when it may have changed since the last poll (None: unchanged). ``force``: look now, even
        if a cheap source would wait for its next poll."""
        ...

    def asked(self, key: str, *, urgent: bool) -> None:
        """``key`` (name.namespace) is being looked up; ``urgent``: it had no replica, look again soon."""
        ...

    def refused(self, ip: str) -> None:
        """A connection to ``ip`` was refused or timed out: its function's replicas may have changed."""
        ...

    async def close(self) -> None: ...


_Stamp = tuple[int, int, int]  # inode, size, mtime_ns


class HostsFile:
    """The hosts file as a :class:`ReplicaSource` (docs/architecture.md, "The hosts file")."""

    __slots__ = ("_next_poll", "_racy", "_stamp", "path", "reads")

    def __init__(self, path: Path) -> None:
        self.path = path
        self._stamp: _Stamp | None = None
        self._racy = False
        self._next_poll = 0.0
        self.reads = 0  # how often the file was read (tests look at it)

    def poll(self, now: float, *, force: bool) -> Table | None:
        """Stat the file (when due, or now if ``force``) and re-read it if it changed."""
        if not force and now < self._next_poll:
            return None
        self._next_poll = now + POLL_INTERVAL_S
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            stamp: _Stamp | None = None
        except OSError as exc:
            log.warning("hosts_file_unreadable", path=str(self.path), error=exc.strerror)
            return None
        else:
            stamp = (st.st_ino, st.st_size, st.st_mtime_ns)
        if stamp == self._stamp and not self._racy:
            return None
        return self._load(stamp)

    def _load(self, stamp: _Stamp | None) -> Table | None:
        read_at = time.time_ns()
        try:
            table = read_hosts(self.path) if stamp is not None else HostsTable(entries={}, complete=True)
        except Exception as exc:  # a HostsFileError; keep the last table we had
            log.warning("hosts_file_unreadable", path=str(self.path), error=str(exc))
            return None
        self.reads += 1
        self._stamp = stamp
        self._racy = stamp is not None and read_at - stamp[2] < RACY_S * 1e9
        if stamp is not None and not table.complete:
            log.warning("hosts_file_incomplete", path=str(self.path))
        return {name: tuple(str(ip) for ip in ips) for name, ips in table.entries.items()}

    def asked(self, key: str, *, urgent: bool) -> None:
        pass  # the provider writes every function's replicas: nothing to ask for

    def refused(self, ip: str) -> None:
        pass  # the provider takes a replica out of the file before it stops it

    async def close(self) -> None:
        pass


class Resolver:
    """The in-memory table of ready replicas, name.namespace → IPv4 addresses as strings."""

    __slots__ = ("_clock", "_refused", "_table", "_turn", "on_change", "source")

    def __init__(self, source: ReplicaSource | Path) -> None:
        self.source: ReplicaSource = HostsFile(source) if isinstance(source, Path) else source
        self.on_change: Callable[[], None] | None = None  # called after the table changed
        self._table: Table = {}
        self._turn: dict[str, int] = {}
        self._refused: dict[str, float] = {}
        self._clock = time.monotonic
        self.refresh(force=True)

    def refresh(self, *, force: bool = False) -> bool:
        """Take the source's table if it changed (a cheap source polls when due, or now if ``force``); True
        when a new table was taken."""
        table = self.source.poll(self._clock(), force=force)
        if table is None:
            return False
        if table != self._table:
            self._table = table
            if self.on_change is not None:
                self.on_change()
        return True

    async def close(self) -> None:
        await self.source.close()

    # -- lookups -----------------------------------------------------------------------------------------

    def replicas(self, key: str) -> tuple[str, ...]:
        """The ready replicas of ``key`` (name.namespace), following the source when a poll is due."""
        self.source.asked(key, urgent=False)
        self.refresh()
        return self._table.get(key, ())

    def recheck(self, key: str) -> tuple[str, ...]:
        """Like :meth:`replicas`, but look now: a missing name is checked once more before 404/503."""
        self.source.asked(key, urgent=True)
        self.refresh(force=True)
        return self._table.get(key, ())

    def watch(self, keys: Iterable[str]) -> None:
        """Keep these functions' replicas known though no request asks for them (the autoscaler's deployed
        functions: an idle one must still count its ready replicas to be scaled to zero)."""
        for key in keys:
            self.source.asked(key, urgent=False)

    def pick(self, key: str, replicas: tuple[str, ...], avoid: str | None = None) -> str:
        """The next replica in turn, skipping ``avoid`` and ones that refused lately while others are left."""
        n = len(replicas)
        turn = self._turn.get(key, 0)
        self._turn[key] = turn + 1
        if n == 1 and avoid is None:
            return replicas[0]
        refused = self._refused
        now = self._clock() if refused else 0.0
        for i in range(n):
            ip = replicas[(turn + i) % n]
            if ip == avoid:
                continue
            until = refused.get(ip)
            if until is None or until <= now:
                return ip
        candidates = [ip for ip in replicas if ip != avoid]
        return candidates[turn % len(candidates)] if candidates else replicas[turn % n]

    def mark_refused(self, ip: str) -> None:
        self.source.refused(ip)
        self._refused[ip] = self._clock() + REFUSED_HOLD_S
        if len(self._refused) > 1024:  # forget old entries
            now = self._clock()
            self._refused = {k: v for k, v in self._refused.items() if v > now}

    def functions(self) -> Iterator[tuple[str, int]]:
        """Every ``name.namespace`` with its number of ready replicas (aliases and fixed lines left out)."""
        for name, ips in self._table.items():
            if "." in name:
                yield name, len(ips)

    def addresses(self) -> set[str]:
        """Every address in the table."""
        return {ip for ips in self._table.values() for ip in ips}
