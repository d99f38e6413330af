"""Scheduled invocations with the OpenFaaS cron-connector's annotations, fired through the async queue.

A function with the annotations ``topic: cron-function`` (one of its comma-separated topics) and
``schedule: "*/5 * * * *"`` (several schedules separated by ``;``) is invoked at every slot of each schedule,
in UTC: a ``POST /`` with an empty body and ``X-Connector: cron-connector``, ``X-Topic: cron-function``. A
sixth field, as croniter reads it, is seconds (``* * * * * */10``: every ten seconds).

The firing goes through the durable queue, so it has the queue's guarantees (retries by the function's
``com.openfaas.retry.*`` annotations, at least once across crashes). The last slot of each schedule is stored in
the same transaction as its call, so:

* a schedule seen for the first time fires from its next slot on (nothing from before it was deployed);
* slots missed while the stack was down fire **once** on start, not once per missed slot;
* a slot never fires twice (its call has a dedupe key in the queue).

The function list comes from the provider (``/system/namespaces``, then ``/system/functions`` for each),
read again every :data:`REFRESH_S` seconds.
"""

from __future__ import annotations

import asyncio
import math
import time
import uuid
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import quote

import structlog
from croniter import croniter

from gateway.async_calls import AsyncCall, CallQueue
from gateway.errors import GatewayError
from gateway.provider import USER_AGENT, ProviderClient
from netconf.hosts import DEFAULT_NAMESPACE

log = structlog.get_logger("gateway.cron")

TOPIC: Final = "cron-function"
REFRESH_S: Final = 5.0
QUEUE_RETRY_S: Final = 1.0
_CALL_IDS: Final = uuid.UUID("6f0c4d0e-3d55-4c1f-9a51-2f3c1b0e7a11")  # the namespace of cron call ids


@dataclass(frozen=True, slots=True)
class CronFunction:
    function: str  # "<name>.<namespace>"
    name: str
    schedules: tuple[str, ...]


def cron_functions(statuses: Iterable[Mapping[str, Any]], namespace: str) -> list[CronFunction]:
    """The functions of one namespace's listing that ask for cron, with their valid schedules."""
    found = []
    for status in statuses:
        annotations = status.get("annotations")
        name = status.get("name")
        if not isinstance(annotations, Mapping) or not isinstance(name, str):
            continue
        topics = {t.strip() for t in str(annotations.get("topic", "")).split(",")}
        if TOPIC not in topics:
            continue
        key = f"{name}.{status.get('namespace') or namespace}"
        schedules = []
        for text in str(annotations.get("schedule", "")).split(";"):
            schedule = " ".join(text.split())
            if not schedule:
                continue
            if croniter.is_valid(schedule):
                schedules.append(schedule)
            else:
                log.warning("cron_schedule_invalid", function=key, schedule=schedule)
        if schedules:
            found.append(CronFunction(key, name, tuple(dict.fromkeys(schedules))))
    return found


def latest_slot(schedule: str, now: float) -> float:
    """The last slot of ``schedule`` at or before ``now`` (slots are whole seconds)."""
    return float(croniter(schedule, math.floor(now) + 1).get_prev(float))


def next_slot(schedule: str, now: float) -> float:
    """The first slot of ``schedule`` after ``now``."""
    return float(croniter(schedule, now).get_next(float))


def plan(schedule: str, last_slot: float | None, now: float) -> tuple[bool, float]:
    """Whether to fire now, and the slot to record as the last one.

    First sight (no last slot): fire nothing, remember the latest slot. Otherwise fire once if any slot passed
    since the last one, however many did.
    """
    latest = latest_slot(schedule, now)
    if last_slot is None:
        return False, latest
    if latest > last_slot:
        return True, latest
    return False, last_slot


def cron_call(function: CronFunction, schedule: str, slot: float, now: float) -> AsyncCall:
    dedupe = f"cron {function.function} {schedule} {slot:.0f}"
    call_id = str(uuid.uuid5(_CALL_IDS, dedupe))
    headers = (
        ("User-Agent", USER_AGENT),
        ("X-Connector", "cron-connector"),
        ("X-Topic", TOPIC),
        ("X-Call-Id", call_id),
    )
    return AsyncCall(call_id, function.function, function.name, "POST", "/", headers, b"", None, dedupe, now)


Lister = Callable[[], Awaitable[list[CronFunction]]]


def provider_lister(provider: ProviderClient) -> Lister:
    """The cron functions of every namespace, as the provider lists them."""

    async def list_all() -> list[CronFunction]:
        status, namespaces, _ = await provider.call_json("GET", "/system/namespaces")
        if status == 404 or not isinstance(namespaces, list) or not namespaces:
            namespaces = [DEFAULT_NAMESPACE]
        found: list[CronFunction] = []
        for namespace in namespaces:
            status, functions, data = await provider.call_json(
                "GET", f"/system/functions?namespace={quote(str(namespace), safe='')}"
            )
            if status != 200 or not isinstance(functions, list):
                raise GatewayError(f"listing functions in {namespace} failed: {status} {data[:200]!r}")
            found += cron_functions(functions, str(namespace))
        return found

    return list_all


class CronScheduler:
    def __init__(
        self,
        queue: CallQueue,
        lister: Lister,
        ring: Callable[[], None],
        *,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        refresh_s: float = REFRESH_S,
    ) -> None:
        self._queue = queue
        self._lister = lister
        self._ring = ring
        self._clock = clock
        self._sleep = sleep
        self._refresh_s = refresh_s
        self._functions: list[CronFunction] = []
        self._last: dict[tuple[str, str], float | None] = {}
        self.fired = 0

    async def run(self) -> None:
        next_refresh = 0.0
        while True:
            now = self._clock()
            if now >= next_refresh:
                await self.refresh()
                next_refresh = now + self._refresh_s
            try:
                wake = await self.tick(self._clock())
            except Exception as exc:  # the queue cannot be reached: try again in a while, the slots wait
                log.warning("cron_queue_unavailable", error=str(exc))
                wake = self._clock() + QUEUE_RETRY_S
            await self._sleep(max(0.0, min(wake, next_refresh) - self._clock()))

    async def refresh(self) -> None:
        try:
            functions = await self._lister()
        except (GatewayError, OSError) as exc:
            log.warning("cron_list_failed", error=str(exc))
            return
        if {f.function: f.schedules for f in functions} != {f.function: f.schedules for f in self._functions}:
            log.info("cron_functions", functions={f.function: list(f.schedules) for f in functions})
        self._functions = functions

    async def tick(self, now: float) -> float:
        """Fire what is due at ``now``; the time of the next slot of any schedule."""
        wake = math.inf
        for function in self._functions:
            for schedule in function.schedules:
                key = (function.function, schedule)
                if key not in self._last:
                    self._last[key] = await self._queue.last_cron_slot(function.function, schedule)
                last = self._last[key]
                fire, slot = plan(schedule, last, now)
                if slot != last:
                    call = cron_call(function, schedule, slot, now) if fire else None
                    await self._queue.fire_cron(function.function, schedule, slot, call)
                    self._last[key] = slot
                    if call is not None:
                        self.fired += 1
                        log.info("cron_fired", function=function.function, schedule=schedule, slot=slot)
                        self._ring()
                wake = min(wake, next_slot(schedule, now))
        return wake if wake != math.inf else now + self._refresh_s
