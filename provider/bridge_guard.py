"""Watching the bridge under running functions: noticed within a second when deleted or broken, then rebuilt.

Someone runs ``ip link del pyfaasd0`` (or a network manager takes it down): the veths of the running replicas lose
their master, the route to the subnet goes, and every call to a function would hang. The guard checks the bridge
with one netlink dump every ``Timings.bridge_check_s``; when it is broken it says why (``problem()``, so
``/healthz`` answers 503), rebuilds it with ``ensure_bridge`` (bridge, MAC, address, forwarding, iptables rules) and
attaches every replica (paused ones of functions at zero too, and every idle warm-pool container) again: the same
address, its veth put back on the bridge, the neighbour entries restored (attach is idempotent). A replica whose
container ended meanwhile is left to the event reactions. A failed repair is retried at the next check for as long
as the provider runs.
"""

from __future__ import annotations

import asyncio
import time

import structlog

from netconf import NetconfError, NetnsNotFoundError
from provider.pool import WarmPool
from provider.runtime import Network
from provider.state import State, Timings

log = structlog.get_logger("provider")


class BridgeGuard:
    def __init__(self, state: State, network: Network, timings: Timings, pool: WarmPool) -> None:
        self._state = state
        self._network = network
        self._timings = timings
        self._pool = pool
        self._problem: str | None = None
        self.repairs = 0

    def problem(self) -> str | None:
        """Why the function network is broken right now; None while it is whole."""
        return self._problem

    async def run(self) -> None:
        """Check and repair until cancelled."""
        while True:
            await asyncio.sleep(self._timings.bridge_check_s)
            try:
                await self.check()
            except Exception as e:  # the watch must outlive any one failure; the next check tries again
                log.exception("bridge_check_failed", error=f"{type(e).__name__}: {e}")

    async def check(self) -> None:
        """One check; a broken bridge is repaired before this returns (or stays reported if that failed)."""
        problem = await self._network.check_bridge()
        if problem is None:
            if self._problem is not None:
                log.info("bridge_whole_again")
            self._problem = None
            return
        self._problem = f"the function network is broken: {problem}; repairing it"
        log.warning("bridge_broken", problem=problem)
        started = time.monotonic()
        try:
            await self._network.ensure_bridge()
        except NetconfError as e:
            self._problem = f"the function network is broken: {problem}; repairing it failed: {e}"
            log.error("bridge_repair_failed", problem=problem, error=str(e))
            return
        attached, gone = await self._reattach()
        pooled = await self._pool.reattach()  # idle warm-pool containers are on the bridge too
        self.repairs += 1
        self._problem = None
        log.info(
            "bridge_repaired",
            problem=problem,
            replicas_attached=attached,
            replicas_gone=gone,
            pool_attached=pooled,
            duration_s=round(time.monotonic() - started, 3),
        )

    async def _reattach(self) -> tuple[int, int]:
        """Attach every replica that has an address again; how many were attached, and how many had gone."""
        attached = gone = 0
        for fn in list(self._state.functions.values()):
            for replica in list(fn.replicas.values()):
                container = replica.container
                if replica.ip is None or not container.alive:  # paused replicas (at zero) are attached too
                    continue
                try:
                    await self._network.connect(container.pid, container.id)
                    attached += 1
                except NetnsNotFoundError:
                    gone += 1  # it stopped meanwhile: Docker's die event brings the restart
                except NetconfError as e:
                    log.error("replica_reattach_failed", container=container.name, error=str(e))
        return attached, gone
