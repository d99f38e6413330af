"""What to do for a function that has no ready replica in the hosts file: 404, 503, or scale it from zero.

Asked only after the hosts table was checked twice. The provider says whether the function is deployed
(``GET /system/function/<name>?namespace=<ns>``):

* 404: the client gets 404; the answer is remembered for :data:`NOT_FOUND_TTL_S`, so a flood of requests to an
  unknown name costs the provider one query per interval, and a new deploy is seen soon after.
* deployed, scale from zero off: 503; remembered for :data:`NOT_READY_TTL_S`.
* deployed, scale from zero on: if the desired replicas are 0, ``POST /system/scale-function/<name>`` to the
  ``com.openfaas.scale.min`` label (default 1); then wait until a replica enters the hosts file (the provider
  adds it once its watchdog is healthy), at most ``scale_from_zero_timeout``, else 504.

Concurrent requests for one function share one flight: one lookup, at most one scale call.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from typing import Any, Final
from urllib.parse import quote

import structlog

from gateway.errors import (
    FunctionNotFoundError,
    GatewayError,
    NoReplicaError,
    ProviderError,
    ScaleTimeoutError,
)
from gateway.provider import ProviderClient
from gateway.resolver import Resolver

log = structlog.get_logger("gateway.scaler")

NOT_FOUND_TTL_S: Final = 0.5
NOT_READY_TTL_S: Final = 0.5
WAIT_POLL_S: Final = 0.02  # how often the hosts file is checked while waiting for a replica
RECHECK_S: Final = 1.0  # how often the desired count is asked again while waiting
SCALE_MIN_LABEL: Final = "com.openfaas.scale.min"
_NAME: Final = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?")  # a function or namespace name (a DNS label)


class Scaler:
    __slots__ = ("_enabled", "_flights", "_known", "_provider", "_resolver", "_timeout_s", "scale_calls")

    def __init__(self, provider: ProviderClient, resolver: Resolver, *, enabled: bool, timeout_s: float) -> None:
        self._provider = provider
        self._resolver = resolver
        self._enabled = enabled
        self._timeout_s = timeout_s
        self._flights: dict[str, asyncio.Task[tuple[str, ...]]] = {}
        self._known: dict[str, tuple[float, type[GatewayError], str]] = {}  # key → (expiry, error to answer)
        self.scale_calls = 0

    async def ready_replicas(self, name: str, namespace: str) -> tuple[str, ...]:
        """Ready replicas of a function missing from the hosts table, or the error to answer with."""
        key = f"{name}.{namespace}"
        if not (_NAME.fullmatch(name) and _NAME.fullmatch(namespace)):
            # No function can have this name: answer without asking the provider (or echoing its words).
            raise FunctionNotFoundError(f"error finding function {key[:200]}: no such function")
        loop = asyncio.get_running_loop()
        known = self._known.get(key)
        if known is not None:
            if known[0] > loop.time():
                raise known[1](known[2])
            del self._known[key]
        flight = self._flights.get(key)
        if flight is None:
            flight = self._flights[key] = asyncio.create_task(self._fly(name, namespace, key), name=f"scale {key}")
            flight.add_done_callback(lambda task: self._landed(key, task))
        return await asyncio.shield(flight)

    async def describe(self, name: str, namespace: str) -> dict[str, Any]:
        """The provider's FunctionStatus of a deployed function, or FunctionNotFoundError (remembered as above).

        For the async edge (is the function deployed?) and the dispatcher (its annotations); scales nothing.
        """
        key = f"{name}.{namespace}"
        if not (_NAME.fullmatch(name) and _NAME.fullmatch(namespace)):
            raise FunctionNotFoundError(f"error finding function {key[:200]}: no such function")
        known = self._known.get(key)
        if known is not None and known[1] is FunctionNotFoundError and known[0] > asyncio.get_running_loop().time():
            raise FunctionNotFoundError(known[2])
        return await self._status(name, namespace, key)

    def _landed(self, key: str, task: asyncio.Task[tuple[str, ...]]) -> None:
        if self._flights.get(key) is task:
            del self._flights[key]
        if not task.cancelled():
            task.exception()  # retrieved here, so a flight nobody waits for any more logs nothing

    async def _fly(self, name: str, namespace: str, key: str) -> tuple[str, ...]:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._timeout_s
        try:
            async with asyncio.timeout_at(deadline):
                status = await self._status(name, namespace, key)
                replicas = self._resolver.recheck(key)  # it may have become ready meanwhile
                if replicas:
                    return replicas
                if not self._enabled:
                    raise self._remember(key, NoReplicaError(f"No endpoints available for: {key}."), NOT_READY_TTL_S)
                if not _count(status, "replicas"):
                    await self._scale(name, namespace, key, _scale_min(status))
                return await self._wait(name, namespace, key)
        except TimeoutError:
            log.warning("scale_from_zero_timed_out", function=key, timeout_s=self._timeout_s)
            raise ScaleTimeoutError(
                f"function {key} has no ready replica after {self._timeout_s:g}s of scaling from zero"
            ) from None

    async def _status(self, name: str, namespace: str, key: str) -> dict[str, Any]:
        path = f"/system/function/{quote(name, safe='')}?namespace={quote(namespace, safe='')}"
        status, parsed, data = await self._provider.call_json("GET", path)
        if status in (400, 404):  # 400: the provider has no such namespace
            raise self._remember(
                key, FunctionNotFoundError(f"error finding function {key}: no such function"), NOT_FOUND_TTL_S
            )
        if status != 200 or not isinstance(parsed, dict):
            # The provider's words (paths, runc messages) go to the log, keyed by the request id; callers of
            # /function are not told the platform's internals.
            log.warning("function_lookup_failed", function=key, status=status, answer=_text(data))
            raise ProviderError(f"error finding function {key}: the platform failed (details in the gateway's log)")
        return parsed

    async def _scale(self, name: str, namespace: str, key: str, replicas: int) -> None:
        self.scale_calls += 1
        log.info("scaling_from_zero", function=key, replicas=replicas)
        path = f"/system/scale-function/{quote(name, safe='')}?namespace={quote(namespace, safe='')}"
        body = {"serviceName": name, "namespace": namespace, "replicas": replicas}
        status, _parsed, data = await self._provider.call_json("POST", path, body)
        if status == 404:
            raise FunctionNotFoundError(f"error finding function {key}: no such function")
        if status not in (200, 202):
            log.warning("scale_from_zero_failed", function=key, status=status, answer=_text(data))
            raise ProviderError(f"cannot scale function {key}: the platform failed (details in the gateway's log)")

    async def _wait(self, name: str, namespace: str, key: str) -> tuple[str, ...]:
        """Until a replica is ready. Every :data:`RECHECK_S` the desired count is asked again: a function that
        was being scaled to zero when the request came (its replica already out of the hosts file, the
        provider still retiring it) wants 0 once that is done, and is scaled up again then."""
        loop = asyncio.get_running_loop()
        started = loop.time()
        recheck_at = started + RECHECK_S
        while True:
            replicas = self._resolver.recheck(key)
            if replicas:
                log.info("scaled_from_zero", function=key, waited_ms=round((loop.time() - started) * 1000, 1))
                return replicas
            if loop.time() >= recheck_at:
                status = await self._status(name, namespace, key)
                if not _count(status, "replicas"):
                    await self._scale(name, namespace, key, _scale_min(status))
                recheck_at = loop.time() + RECHECK_S
            await asyncio.sleep(WAIT_POLL_S)

    def _remember(self, key: str, error: GatewayError, ttl: float) -> GatewayError:
        self._known[key] = (asyncio.get_running_loop().time() + ttl, type(error), str(error))
        if len(self._known) > 4096:
            now = asyncio.get_running_loop().time()
            self._known = {k: v for k, v in self._known.items() if v[0] > now}
        return error

    async def close(self) -> None:
        for task in list(self._flights.values()):
            task.cancel()
        for task in list(self._flights.values()):
            with contextlib.suppress(BaseException):
                await task


def _text(data: bytes) -> str:
    return data[:500].decode("utf-8", "replace").strip()


def _count(status: dict[str, Any], field: str) -> int:
    value = status.get(field)
    return int(value) if isinstance(value, int | float) and value > 0 else 0


def _scale_min(status: dict[str, Any]) -> int:
    labels = status.get("labels")
    text = labels.get(SCALE_MIN_LABEL) if isinstance(labels, dict) else None
    try:
        return max(1, int(str(text).strip())) if text is not None else 1
    except ValueError:
        return 1
