"""Cron schedules: slots, catch-up after downtime with a fake clock, and the annotations."""

from __future__ import annotations

import calendar
from typing import Any

import pytest

from gateway.async_calls import CallQueue
from gateway.cron import CronFunction, CronScheduler, cron_functions, latest_slot, next_slot, plan
from tests.queue_support import QueueMaker

T0 = float(calendar.timegm((2026, 12, 1, 12, 0, 0)))  # 12:00:00 UTC, a slot of "*/5 * * * *"
EVERY_5 = "*/5 * * * *"


def test_slots_are_utc_whole_seconds_at_or_before_now() -> None:
    assert latest_slot(EVERY_5, T0) == T0  # a slot counts at its own second
    assert latest_slot(EVERY_5, T0 + 299.9) == T0
    assert latest_slot(EVERY_5, T0 - 0.001) == T0 - 300
    assert next_slot(EVERY_5, T0) == T0 + 300
    assert next_slot("* * * * * */10", T0 + 1) == T0 + 10  # a sixth field is seconds


def test_first_sight_fires_nothing_and_remembers_the_latest_slot() -> None:
    assert plan(EVERY_5, None, T0 + 100) == (False, T0)


def test_a_due_slot_fires_once() -> None:
    assert plan(EVERY_5, T0, T0 + 299) == (False, T0)
    assert plan(EVERY_5, T0, T0 + 300) == (True, T0 + 300)


def test_many_missed_slots_fire_once() -> None:
    assert plan(EVERY_5, T0, T0 + 3 * 3600 + 7) == (True, T0 + 3 * 3600)


def test_annotations_topic_and_several_schedules() -> None:
    listed: list[dict[str, Any]] = [
        {"name": "a", "annotations": {"topic": "cron-function", "schedule": "*/5 * * * *; 0 * * * *"}},
        {"name": "b", "annotations": {"topic": "kafka,cron-function", "schedule": "0 0 * * *"}},
        {"name": "c", "annotations": {"topic": "kafka", "schedule": "0 0 * * *"}},
        {"name": "d", "annotations": {"topic": "cron-function", "schedule": "not a schedule"}},
        {"name": "e"},
        {"name": "f", "namespace": "dev", "annotations": {"topic": "cron-function", "schedule": "* * * * *"}},
    ]
    assert cron_functions(listed, "openfaas-fn") == [
        CronFunction("a.openfaas-fn", "a", ("*/5 * * * *", "0 * * * *")),
        CronFunction("b.openfaas-fn", "b", ("0 0 * * *",)),
        CronFunction("f.dev", "f", ("* * * * *",)),
    ]


class FakeClock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def queue(queues: QueueMaker) -> CallQueue:
    return queues()


async def test_a_scheduler_fires_on_time_and_once_after_downtime(queue: CallQueue) -> None:
    function = CronFunction("tick.openfaas-fn", "tick", (EVERY_5,))

    async def lister() -> list[CronFunction]:
        return [function]

    rings: list[int] = []
    clock = FakeClock(T0 + 10)
    first = CronScheduler(queue, lister, lambda: rings.append(1), clock=clock)
    await first.refresh()
    assert await first.tick(clock()) == T0 + 300  # the next wake-up is the next slot
    assert first.fired == 0  # deployed after the 12:00 slot: nothing for it
    clock.now = T0 + 300
    await first.tick(clock())
    assert first.fired == 1
    clock.now = T0 + 300.5
    await first.tick(clock())
    assert first.fired == 1  # the same slot never twice

    # The stack is down for an hour; a new scheduler (a restart) reads the last slot from the queue.
    clock.now = T0 + 300 + 3600 + 42
    second = CronScheduler(queue, lister, lambda: rings.append(1), clock=clock)
    await second.refresh()
    await second.tick(clock())
    assert second.fired == 1  # twelve slots were missed: one call
    await second.tick(clock())
    assert second.fired == 1
    assert (await queue.counts()).queued == {"tick.openfaas-fn": 2}
    assert len(rings) == 2
    [call_a, call_b] = await queue.claim({"tick.openfaas-fn": 5}, clock.now)
    assert (call_a.call.method, call_a.call.target, call_a.call.body) == ("POST", "/", b"")
    assert ("X-Connector", "cron-connector") in call_a.call.headers
    assert call_a.call.call_id != call_b.call.call_id


async def test_two_schedulers_on_one_queue_fire_a_slot_once(queues: QueueMaker) -> None:
    """Two gateways, each with its own scheduler (a dispatcher per state dir) on one shared queue."""
    function = CronFunction("tick.openfaas-fn", "tick", (EVERY_5,))

    async def lister() -> list[CronFunction]:
        return [function]

    clock = FakeClock(T0 + 10)
    one, two = queues(), queues()
    schedulers = [CronScheduler(q, lister, lambda: None, clock=clock) for q in (one, two)]
    for scheduler in schedulers:
        await scheduler.refresh()
        await scheduler.tick(clock())
    clock.now = T0 + 300
    for scheduler in schedulers:
        await scheduler.tick(clock())
    assert [len(await q.claim({"tick.openfaas-fn": 5}, clock.now)) for q in (one, two)] in ([1, 0], [0, 1])
    assert await one.last_cron_slot("tick.openfaas-fn", EVERY_5) == T0 + 300
