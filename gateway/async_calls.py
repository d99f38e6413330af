"""Async calls: what is queued, what a dispatcher claims, what it records, and the queue's interface.

The queue is a :class:`CallQueue` (a Protocol), so the single-host SQLite queue (gateway/sqlite_queue.py) can be
replaced by one several gateways share (NATS JetStream for the Swarm backend) without touching the HTTP edge or
the dispatcher.

A call goes through two phases, each claimed, run and recorded on its own so that a crash repeats only the phase
whose outcome was not recorded:

1. **invoke**: ``queued`` → claimed (``running``) → the function's answer recorded (``done`` or ``failed``), or
   put back ``queued`` with a later due time for a retry;
2. **callback** (only with an ``X-Callback-Url``): the recorded answer is POSTed to the URL, claimed and
   recorded the same way, retried with backoff a bounded number of times.

Claims held by a dispatcher that died are released when the next dispatcher starts (:meth:`CallQueue.recover`),
so a request accepted with 202 is delivered at least once. On SQLite there is one dispatcher per state dir, so
every claim the next one finds is a dead one's; on JetStream several gateways dispatch from one queue, so a claim
carries a lease its dispatcher renews, and a claim is a dead one's once its lease ran out (then any dispatcher
takes it, also while running).
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

Headers = tuple[tuple[str, str], ...]


class CallState(enum.StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"


class CallbackState(enum.StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    DELIVERED = "delivered"
    FAILED = "failed"


@dataclass(frozen=True, slots=True)
class AsyncCall:
    """A request accepted for later: everything needed to invoke the function as ``/function/`` would."""

    call_id: str
    function: str  # "<name>.<namespace>"
    requested_name: str  # the name segment as the caller wrote it (X-Function-Name on the callback)
    method: str
    target: str  # path and raw query, as the function sees them: "/sub/path?x=1"
    headers: Headers
    body: bytes
    callback_url: str | None = None
    dedupe: str | None = None  # a key the queue accepts once (cron slots); None: always accepted
    accepted_at: float = 0.0  # Unix time; the queue fills it when 0


@dataclass(frozen=True, slots=True)
class ClaimedCall:
    """A call a dispatcher holds: ``attempts`` counts this attempt too."""

    seq: int
    call: AsyncCall
    attempts: int


@dataclass(frozen=True, slots=True)
class Outcome:
    """The function's answer to one attempt (or the gateway's status when there was none: 502, 503, 504, 404)."""

    status: int
    headers: Headers
    body: bytes
    duration_s: float
    retry_after_s: float | None = None


@dataclass(frozen=True, slots=True)
class PendingCallback:
    """A recorded answer whose callback a dispatcher holds: ``attempts`` counts this attempt too."""

    seq: int
    call_id: str
    function: str
    requested_name: str
    callback_url: str
    outcome: Outcome
    attempts: int


@dataclass(frozen=True, slots=True)
class CallStatus:
    """What ``GET /system/async/<call-id>`` answers."""

    status: CallState
    attempts: int
    function_status: int | None

    def as_json(self) -> dict[str, object]:
        return {"status": str(self.status), "attempts": self.attempts, "functionStatus": self.function_status}


@dataclass(frozen=True, slots=True)
class ReadyWork:
    """Per function, the due time (Unix) of its earliest queued call and of its earliest pending callback."""

    calls: Mapping[str, float]
    callbacks: Mapping[str, float]


@dataclass(frozen=True, slots=True)
class QueueCounts:
    """Per function: calls waiting (queued, due or not) and callbacks waiting."""

    queued: Mapping[str, int]
    callbacks: Mapping[str, int]


class CallQueue(Protocol):
    """A durable queue of async calls.

    :meth:`enqueue` and :meth:`fire_cron` return once the call is durable (it survives a power cut); the other
    changes survive any process crash, and a power cut can at worst roll them back to an earlier state of the
    same call, which makes it run again (at least once), never lost.
    """

    async def enqueue(self, call: AsyncCall) -> bool:
        """Store ``call`` (durably, before it returns); False when its ``dedupe`` key was accepted before."""
        ...

    async def recover(self) -> int:
        """Release every claim (invocations and callbacks) a dead dispatcher held; how many were released (SQLite:
        every claim; JetStream: every claim whose lease ran out, a live gateway's claims are left alone).

        Called by a dispatcher once it holds the right to dispatch, before its first claim.
        """
        ...

    async def ready(self) -> ReadyWork:
        """For each function with queued calls or pending callbacks, when its earliest one is due."""
        ...

    async def claim(self, limits: Mapping[str, int], now: float) -> list[ClaimedCall]:
        """Up to ``limits[function]`` calls of each function due by ``now``, oldest first, marked running
        (their attempt counted)."""
        ...

    async def complete(self, seq: int, outcome: Outcome, *, succeeded: bool, callback: bool) -> None:
        """Record the final answer of a call (``done`` when ``succeeded``, else ``failed``); with ``callback``
        its callback becomes pending."""
        ...

    async def retry_at(self, seq: int, due: float, outcome: Outcome) -> None:
        """Put a claimed call back in the queue, due at ``due`` (Unix time), recording the answer it got."""
        ...

    async def claim_callbacks(self, limits: Mapping[str, int], now: float) -> list[PendingCallback]:
        """Up to ``limits[function]`` callbacks of each function due by ``now``, marked running (their attempt
        counted)."""
        ...

    async def callback_done(self, seq: int, *, delivered: bool) -> None:
        """Record a callback's end: delivered, or given up."""
        ...

    async def callback_retry_at(self, seq: int, due: float) -> None:
        """Put a claimed callback back, due at ``due``."""
        ...

    async def status(self, call_id: str) -> CallStatus | None:
        """The latest call with this id, or None."""
        ...

    async def counts(self) -> QueueCounts:
        """Queue depth per function, for the metrics."""
        ...

    async def purge(self, finished_before: float) -> int:
        """Forget calls finished (callback included) before this Unix time; how many."""
        ...

    async def last_cron_slot(self, function: str, schedule: str) -> float | None:
        """The last slot of a cron schedule that was fired (or skipped on first sight)."""
        ...

    async def fire_cron(self, function: str, schedule: str, slot: float, call: AsyncCall | None) -> None:
        """Record ``slot`` as the last of this schedule and, in the same transaction, enqueue ``call``."""
        ...

    async def close(self) -> None: ...
