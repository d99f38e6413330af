"""One keep-alive pool per function replica address, on servicekit.upstream's client."""

from __future__ import annotations

from servicekit.upstream import UpstreamPool


class Pools:
    """One keep-alive pool per upstream address; pools of addresses that left the hosts table are closed."""

    __slots__ = ("_pools", "connect_timeout", "port")

    def __init__(self, port: int, connect_timeout: float | None = None) -> None:
        self.port = port
        self.connect_timeout = connect_timeout
        self._pools: dict[str, UpstreamPool] = {}

    def get(self, host: str) -> UpstreamPool:
        pool = self._pools.get(host)
        if pool is None:
            pool = self._pools[host] = UpstreamPool(host, self.port, connect_timeout=self.connect_timeout)
        return pool

    def __contains__(self, host: str) -> bool:
        return host in self._pools

    def prune(self, live: set[str]) -> None:
        for host in [h for h in self._pools if h not in live]:
            self._pools.pop(host).close()

    def close(self) -> None:
        for pool in self._pools.values():
            pool.close()
        self._pools.clear()
