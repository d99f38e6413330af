"""Waiting for a replica's watchdog to answer ``/_/health`` with 200 before it may take traffic, and asking it
how many requests it is still serving before it is stopped."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from ipaddress import IPv4Address

import aiohttp

from provider.runtime import Probe

POLL_INTERVAL_S = 0.02
ALIVE_CHECK_EVERY_S = 0.25
PROBE_TIMEOUT_S = 1.0
IN_FLIGHT_METRIC = "http_requests_in_flight"


class NotReadyError(Exception):
    """The replica did not answer healthy in time; ``exited`` when its container stopped meanwhile."""

    def __init__(self, message: str, *, exited: bool) -> None:
        super().__init__(message)
        self.exited = exited


class HttpProbe:
    """``GET http://<ip>:<port>/_/health``: healthy on 200. Implements ``provider.runtime.Probe``."""

    def __init__(self, port: int) -> None:
        self._port = port
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(force_close=True), cookie_jar=aiohttp.DummyCookieJar()
        )

    async def healthy(self, ip: IPv4Address) -> bool:
        try:
            async with self._session.get(
                f"http://{ip}:{self._port}/_/health", timeout=aiohttp.ClientTimeout(total=PROBE_TIMEOUT_S)
            ) as response:
                await response.read()
                return response.status == 200
        except (aiohttp.ClientError, OSError, TimeoutError):
            return False

    async def in_flight(self, ip: IPv4Address, metrics_port: int) -> float | None:
        try:
            async with self._session.get(
                f"http://{ip}:{metrics_port}/metrics", timeout=aiohttp.ClientTimeout(total=PROBE_TIMEOUT_S)
            ) as response:
                if response.status != 200:
                    return None
                text = await response.text()
        except (aiohttp.ClientError, OSError, TimeoutError, UnicodeDecodeError):
            return None
        return in_flight_of(text)

    async def close(self) -> None:
        await self._session.close()


def in_flight_of(metrics: str) -> float | None:
    """``http_requests_in_flight`` from a watchdog's Prometheus text (of-watchdog's and pyfaasd's name)."""
    for line in metrics.splitlines():
        name, _, value = line.partition(" ")
        if name == IN_FLIGHT_METRIC or name.startswith(IN_FLIGHT_METRIC + "{"):
            try:
                return float(value.split()[0])
            except (ValueError, IndexError):
                return None
    return None


async def wait_ready(
    probe: Probe,
    ip: IPv4Address,
    deadline_s: float,
    still_running: Callable[[], Awaitable[str | None]],
) -> None:
    """Poll until healthy. ``still_running`` returns None while the container runs, else why it stopped."""
    start = time.monotonic()
    next_alive_check = start + ALIVE_CHECK_EVERY_S
    while True:
        if await probe.healthy(ip):
            return
        now = time.monotonic()
        if now >= next_alive_check:
            next_alive_check = now + ALIVE_CHECK_EVERY_S
            reason = await still_running()
            if reason is not None:
                raise NotReadyError(reason, exited=True)
        if now - start >= deadline_s:
            raise NotReadyError(f"its watchdog did not answer /_/health within {deadline_s:g}s", exited=False)
        await asyncio.sleep(POLL_INTERVAL_S)
