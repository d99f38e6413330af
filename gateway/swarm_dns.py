"""Ready replicas from Swarm's DNS (``PYFAASD_BACKEND=swarm``): a :class:`~gateway.resolver.ReplicaSource`.

With ``endpoint_mode: dnsrr`` Docker's embedded DNS (127.0.0.11 in the network namespace of anything attached to
the overlay) answers ``tasks.<namespace>_<name>`` with the overlay address of every task of the function's
service that is running **and healthy**: a task whose healthcheck (the watchdog's lock file) has not passed yet is
not in the answer (checked on this machine: NXDOMAIN while the task was "health: starting"), and Swarm takes a
task out of the answer before it stops it (then waits before SIGTERM). So the answer carries readiness the way
the hosts file does for the docker backend.

The request path is synchronous (the proxy calls ``Resolver.replicas``), so answers are cached and refreshed in
the background: every name looked up in the last :data:`FORGET_S` is asked again every :data:`CACHE_S`; a name
seen for the first time, a name with no replica (``recheck``) and the names of a replica that refused a
connection are asked at once (not more than once per :data:`URGENT_MIN_S` each). A failed query (timeout,
SERVFAIL) keeps the last answer. The names asked form the table, so ``functions()`` lists the functions in use.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass
from typing import Final

import dns.asyncquery
import dns.exception
import dns.message
import dns.rcode
import dns.rdatatype
import structlog

from gateway.resolver import Table
from servicekit.swarm import DNS_SERVER, tasks_name

log = structlog.get_logger("gateway.swarm_dns")

CACHE_S: Final = 1.0  # how old an answer may get while its name is in use
URGENT_MIN_S: Final = 0.05  # a name is asked at most this often on demand (the scaler rechecks every 20 ms)
FORGET_S: Final = 600.0  # a name not looked up for this long is no longer asked (nor listed)
QUERY_TIMEOUT_S: Final = 1.0


@dataclass(slots=True)
class _Entry:
    ips: tuple[str, ...] = ()
    resolved_at: float = float("-inf")  # monotonic; never yet
    asked_at: float = 0.0
    in_flight: bool = False


class SwarmDns:
    """Function replicas as Swarm's DNS answers ``tasks.<namespace>_<name>``."""

    def __init__(self, server: str = DNS_SERVER, port: int = 53, *, cache_s: float = CACHE_S) -> None:
        self.server = server
        self.port = port
        self.cache_s = cache_s
        self.queries = 0  # how many queries were sent (tests look at it)
        self._entries: dict[str, _Entry] = {}
        self._table: dict[str, tuple[str, ...]] = {}
        self._changed = True
        self._urgent: set[str] = set()
        self._wake: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None
        self._clock = time.monotonic

    # -- ReplicaSource ---------------------------------------------------------------------------------------

    def poll(self, now: float, *, force: bool) -> Table | None:
        if not self._changed:
            return None
        self._changed = False
        return self._table

    def asked(self, key: str, *, urgent: bool) -> None:
        now = self._clock()
        entry = self._entries.get(key)
        if entry is None:
            entry = self._entries[key] = _Entry()
            urgent = True
        entry.asked_at = now
        if urgent and now - entry.resolved_at >= URGENT_MIN_S and not entry.in_flight:
            self._urgent.add(key)
            self._kick()

    def refused(self, ip: str) -> None:
        for key, entry in self._entries.items():
            if ip in entry.ips:
                self._urgent.add(key)
        self._kick()

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):  # a failure was logged by _kick or is moot
                await self._task
            self._task = None

    # -- the background refresh ------------------------------------------------------------------------------

    def _kick(self) -> None:
        if self._task is not None and self._task.done():  # it failed: say why, and start a new one
            if not self._task.cancelled() and self._task.exception() is not None:
                log.error("swarm_dns_refresh_failed", error=repr(self._task.exception()))
            self._task = None
        if self._task is None:
            try:
                asyncio.get_running_loop()
            except RuntimeError:
                return  # not in a loop (a synchronous caller): the next lookup inside one starts it
            self._wake = asyncio.Event()
            self._task = asyncio.create_task(self._run(), name="swarm-dns")
        if self._wake is not None:
            self._wake.set()

    async def _run(self) -> None:
        assert self._wake is not None
        wake = self._wake
        while True:
            wake.clear()
            now = self._clock()
            due = set(self._urgent)
            self._urgent.clear()
            for key, entry in list(self._entries.items()):
                if now - entry.asked_at > FORGET_S:
                    del self._entries[key]
                    if self._table.pop(key, None) is not None:
                        self._changed = True
                elif now - entry.resolved_at >= self.cache_s:
                    due.add(key)
            due = {key for key in due if key in self._entries and not self._entries[key].in_flight}
            if due:
                await asyncio.gather(*(self._refresh(key) for key in due))
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.cache_s / 2):
                    await wake.wait()

    async def _refresh(self, key: str) -> None:
        entry = self._entries[key]
        entry.in_flight = True
        try:
            ips = await self.lookup(key)
        finally:
            entry.in_flight = False
        if ips is None:
            return  # no answer: keep the last one
        entry.resolved_at = self._clock()
        entry.ips = ips
        if key not in self._entries:
            return  # forgotten meanwhile
        if self._table.get(key, ()) != ips:
            table = dict(self._table)  # a new mapping: a table already handed out never changes
            if ips:
                table[key] = ips
            else:
                table.pop(key, None)
            self._table = table
            self._changed = True

    async def lookup(self, key: str) -> tuple[str, ...] | None:
        """The task addresses of ``key`` (name.namespace), sorted; () when Swarm knows none; None when the DNS
        server did not answer usefully."""
        name, _, namespace = key.rpartition(".")
        if not name or not namespace:
            return ()
        query = dns.message.make_query(tasks_name(namespace, name), dns.rdatatype.A)
        self.queries += 1
        try:
            answer, _tcp = await dns.asyncquery.udp_with_fallback(
                query, self.server, timeout=QUERY_TIMEOUT_S, port=self.port
            )
        except (dns.exception.DNSException, OSError) as exc:
            log.warning("swarm_dns_failed", function=key, server=f"{self.server}:{self.port}", error=str(exc))
            return None
        rcode = answer.rcode()
        if rcode == dns.rcode.NXDOMAIN:
            return ()
        if rcode != dns.rcode.NOERROR:
            log.warning("swarm_dns_failed", function=key, rcode=dns.rcode.to_text(rcode))
            return None
        found = {rr.to_text() for rrset in answer.answer if rrset.rdtype == dns.rdatatype.A for rr in rrset}
        return tuple(sorted(found, key=lambda ip: tuple(int(part) for part in ip.split("."))))
