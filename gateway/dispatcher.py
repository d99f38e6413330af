"""The one dispatcher of async calls: claims due calls, invokes them, records the outcome, sends callbacks.

**One per state dir.** Every serving process (each of ``--workers``, and ``pyfaasd up``) starts a
:class:`DispatchRole`; the one that takes the exclusive ``flock`` on ``<state>/async/dispatcher.lock``
dispatches, the others try again every second. The kernel drops the lock when its process dies, however it
dies, and the next holder first releases every claim the dead one held (:meth:`CallQueue.recover`): those calls
run again, so a call accepted with 202 is delivered at least once. A call whose outcome was recorded is never
invoked again; only its callback is repeated when that was cut off.

**Concurrency per function.** At most ``com.pyfaasd.async.concurrency`` (default ``PYFAASD_ASYNC_CONCURRENCY``)
calls of one function run at once, and as many of its callbacks, each set in its own slots: a slow function or
a slow callback receiver holds only its own function's slots. Calls of one function start oldest first.

**Retries** follow the function's ``com.openfaas.retry.*`` annotations (gateway/retry_policy.py); a call waiting
for its retry is back in the queue with a later due time, so it survives a restart too. A call that could not be
attempted because the provider could not be asked for a replica (a gateway started before its provider, a
function at zero while the provider restarts) is put back for :data:`PROVIDER_WAIT_S`, not failed: its claim
counts in ``attempts``, but the function was not invoked.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import math
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import structlog

from gateway.async_calls import CallQueue, ClaimedCall, Outcome, PendingCallback
from gateway.async_invoke import FunctionInvoker
from gateway.callbacks import CallbackSender
from gateway.doorbell import Doorbell
from gateway.errors import FunctionNotFoundError, GatewayError, ProviderError
from gateway.metrics import AsyncMetrics
from gateway.retry_policy import (
    CALLBACK_MAX_WAIT_S,
    CALLBACK_MIN_WAIT_S,
    RetryPolicy,
    backoff,
    callback_retries,
    concurrency,
)
from gateway.scaler import Scaler

log = structlog.get_logger("gateway.async")

LOCK_RETRY_S: Final = 1.0  # how often a process that does not dispatch tries to take the lock
IDLE_POLL_S: Final = 1.0  # the longest the dispatcher sleeps without looking at the queue
SETTINGS_TTL_S: Final = 2.0  # how long a function's annotations are reused before the provider is asked again
PURGE_EVERY_S: Final = 60.0
COUNTS_EVERY_S: Final = 1.0  # how often the queue depth gauges are refreshed
CLAIM_MISSED_WAIT_S: Final = 0.05
PROVIDER_WAIT_S: Final = 1.0  # a call that could not be attempted for want of the provider is put back for this long
FAILED_STEP_WAIT_S: Final = 1.0  # a dispatcher step that failed (the queue, the provider) is tried again after
RECOVER_MAX_WAIT_S: Final = 30.0


@dataclass(frozen=True, slots=True)
class FunctionSettings:
    policy: RetryPolicy
    concurrency: int


class SettingsCache:
    """A function's retry policy and concurrency, from its annotations, asked of the provider every few seconds."""

    def __init__(self, scaler: Scaler, default_concurrency: int, clock: Callable[[], float] = time.monotonic) -> None:
        self._scaler = scaler
        self._default = FunctionSettings(RetryPolicy(), default_concurrency)
        self._clock = clock
        self._cache: dict[str, tuple[float, FunctionSettings]] = {}

    async def get(self, function: str) -> FunctionSettings:
        now = self._clock()
        cached = self._cache.get(function)
        if cached is not None and cached[0] > now:
            return cached[1]
        name, _, namespace = function.rpartition(".")
        try:
            status = await self._scaler.describe(name, namespace)
        except FunctionNotFoundError:
            settings = self._default  # the invocation answers 404 and the call fails
        except GatewayError as exc:  # the provider is down: keep what was known, ask again in a while
            log.warning("async_settings_unavailable", function=function, error=str(exc))
            settings = cached[1] if cached is not None else self._default
        else:
            annotations = status.get("annotations")
            if not isinstance(annotations, dict):
                annotations = {}
            settings = FunctionSettings(
                RetryPolicy.from_annotations(annotations, function),
                concurrency(annotations, self._default.concurrency, function),
            )
        self._cache[function] = (now + SETTINGS_TTL_S, settings)
        if len(self._cache) > 4096:
            self._cache = {k: v for k, v in self._cache.items() if v[0] > now}
        return settings


class Dispatcher:
    def __init__(
        self,
        queue: CallQueue,
        invoker: FunctionInvoker,
        callbacks: CallbackSender,
        settings: SettingsCache,
        metrics: AsyncMetrics,
        doorbell: Doorbell,
        *,
        retention_s: float,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._queue = queue
        self._invoker = invoker
        self._callbacks = callbacks
        self._settings = settings
        self._metrics = metrics
        self._doorbell = doorbell
        self._retention_s = retention_s
        self._clock = clock
        self._running: dict[str, int] = {}  # function → invocations in flight
        self._sending: dict[str, int] = {}  # function → callbacks in flight
        self._tasks: set[asyncio.Task[None]] = set()
        self._wake = doorbell.rang
        self._next_purge = 0.0
        self._next_counts = 0.0

    @property
    def in_flight(self) -> int:
        return len(self._tasks)

    async def run(self) -> None:
        """Release the dead dispatcher's claims, then dispatch until cancelled."""
        released = await self._recover()
        if released:
            log.warning("async_claims_released", calls=released)
        while True:
            self._wake.clear()
            try:
                timeout = await self._step()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("async_dispatch_failed")
                timeout = FAILED_STEP_WAIT_S
            if timeout > 0:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(timeout):
                        await self._wake.wait()

    async def _recover(self) -> int:
        """The queue's :meth:`~gateway.async_calls.CallQueue.recover`, tried again (1 s, 2 s ... 30 s apart) while
        the queue cannot be reached (a NATS server not up yet)."""
        wait = FAILED_STEP_WAIT_S
        while True:
            try:
                return await self._queue.recover()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("async_queue_unavailable", error=str(exc), retry_s=wait)
            await asyncio.sleep(wait)
            wait = min(wait * 2, RECOVER_MAX_WAIT_S)

    async def _step(self) -> float:
        """Claim what is due and has a free slot; how long to sleep before the next step (0: go on at once)."""
        now = self._clock()
        ready = await self._queue.ready()
        calls, wait_calls = await self._free_slots(ready.calls, self._running, now)
        callbacks, wait_callbacks = await self._free_slots(ready.callbacks, self._sending, now)
        claimed = 0
        if calls:
            for claimed_call in await self._queue.claim(calls, now):
                policy = (await self._settings.get(claimed_call.call.function)).policy
                self._start(claimed_call.call.function, self._running, self._attempt(claimed_call, policy))
                claimed += 1
        if callbacks:
            for pending in await self._queue.claim_callbacks(callbacks, now):
                self._start(pending.function, self._sending, self._callback(pending))
                claimed += 1
        if now >= self._next_counts:
            self._next_counts = now + COUNTS_EVERY_S
            counts = await self._queue.counts()
            self._metrics.set_depths(dict(counts.queued), dict(counts.callbacks))
        if now >= self._next_purge:
            self._next_purge = now + PURGE_EVERY_S
            purged = await self._queue.purge(now - self._retention_s)
            if purged:
                log.info("async_calls_forgotten", calls=purged, retention_s=self._retention_s)
        if claimed:
            return 0.0  # look again at once: more may be due than there were slots in this step
        if calls or callbacks:
            return CLAIM_MISSED_WAIT_S  # due, yet nothing to claim: another process took it; do not spin
        wait = min(wait_calls, wait_callbacks) - self._clock()
        return max(0.0, min(wait, IDLE_POLL_S))

    async def _free_slots(
        self, earliest: Mapping[str, float], in_flight: dict[str, int], now: float
    ) -> tuple[dict[str, int], float]:
        """The free slots of each function with work due, and the earliest due time among the others that have
        a free slot (a function with every slot taken is woken by its next finished task)."""
        free: dict[str, int] = {}
        wake = math.inf
        for function, due in earliest.items():
            slots = (await self._settings.get(function)).concurrency - in_flight.get(function, 0)
            if slots <= 0:
                continue
            if due <= now:
                free[function] = slots
            else:
                wake = min(wake, due)
        return free, wake

    def _start(self, function: str, slots: dict[str, int], work: Any) -> None:
        slots[function] = slots.get(function, 0) + 1
        task: asyncio.Task[None] = asyncio.create_task(work)
        self._tasks.add(task)

        def finished(task: asyncio.Task[None]) -> None:
            self._tasks.discard(task)
            left = slots.get(function, 1) - 1
            if left > 0:
                slots[function] = left
            else:
                slots.pop(function, None)
            self._wake.set()

        task.add_done_callback(finished)

    async def _attempt(self, claimed: ClaimedCall, policy: RetryPolicy) -> None:
        call = claimed.call
        function = call.function
        structlog.contextvars.bind_contextvars(request_id=call.call_id, function=function)
        in_flight = self._metrics.in_flight.labels(function)
        in_flight.inc()
        try:
            outcome = await self._invoker.invoke(call)
        except ProviderError as exc:
            log.warning("async_provider_unavailable", attempt=claimed.attempts, error=str(exc), wait_s=PROVIDER_WAIT_S)
            unattempted = Outcome(exc.status, (), f"{exc}\n".encode(), 0.0)
            await self._queue.retry_at(claimed.seq, self._clock() + PROVIDER_WAIT_S, unattempted)
            return
        except Exception as exc:  # a bug, not a function's failure: try again later rather than lose the call
            log.exception("async_invoke_crashed")
            outcome = Outcome(500, (), f"internal gateway error: {exc!r}\n".encode(), 0.0)
        finally:
            in_flight.dec()
        log.info("async_invoked", status=outcome.status, attempt=claimed.attempts, duration_s=outcome.duration_s)
        if policy.retries(outcome.status, claimed.attempts):
            wait = policy.wait(claimed.attempts, outcome.retry_after_s)
            self._metrics.retries.labels(function).inc()
            log.info("async_retry_scheduled", status=outcome.status, attempt=claimed.attempts, wait_s=round(wait, 3))
            await self._queue.retry_at(claimed.seq, self._clock() + wait, outcome)
            return
        succeeded = outcome.status < 400
        await self._queue.complete(claimed.seq, outcome, succeeded=succeeded, callback=call.callback_url is not None)
        self._metrics.finished.labels(function, "done" if succeeded else "failed").inc()
        if not succeeded:
            self._metrics.failures.labels(function).inc()

    async def _callback(self, pending: PendingCallback) -> None:
        structlog.contextvars.bind_contextvars(request_id=pending.call_id, function=pending.function)
        status = await self._callbacks.send(pending)
        counter = self._metrics.callbacks
        if status is not None and 200 <= status < 300:
            counter.labels(pending.function, "delivered").inc()
            await self._queue.callback_done(pending.seq, delivered=True)
            return
        if callback_retries(status, pending.attempts):
            wait = backoff(pending.attempts, CALLBACK_MIN_WAIT_S, CALLBACK_MAX_WAIT_S)
            counter.labels(pending.function, "retried").inc()
            log.info("async_callback_retry_scheduled", status=status, attempt=pending.attempts, wait_s=round(wait, 3))
            await self._queue.callback_retry_at(pending.seq, self._clock() + wait)
            return
        counter.labels(pending.function, "failed").inc()
        log.warning("async_callback_failed", status=status, attempts=pending.attempts, url=pending.callback_url[:200])
        await self._queue.callback_done(pending.seq, delivered=False)

    async def drain(self, timeout_s: float) -> None:
        """Let the calls and callbacks in flight finish (at most ``timeout_s``); the rest are cancelled and run
        again by the next dispatcher."""
        if self._tasks:
            log.info("async_draining", in_flight=len(self._tasks), timeout_s=timeout_s)
            await asyncio.wait(set(self._tasks), timeout=timeout_s)
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.wait(set(self._tasks))


class DispatchRole:
    """Takes the dispatcher's lock (retrying every second) and runs the dispatcher and the cron scheduler while
    it holds it; :meth:`stop` drains them and lets go."""

    def __init__(
        self,
        lock_path: Path,
        dispatcher: Dispatcher,
        doorbell: Doorbell,
        extra: Callable[[], Any] | None = None,
    ) -> None:
        self._lock_path = lock_path
        self._dispatcher = dispatcher
        self._doorbell = doorbell
        self._extra = extra  # what else runs only in the dispatching process (the cron scheduler)
        self._task: asyncio.Task[None] | None = None
        self._fd: int | None = None
        self.holding = asyncio.Event()

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="async-dispatch-role")

    def _try_lock(self) -> bool:
        self._lock_path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(self._lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        self._fd = fd
        return True

    async def _run(self) -> None:
        waited = False
        while True:
            try:
                if self._try_lock():
                    break
            except OSError as exc:
                log.error("async_lock_unusable", path=str(self._lock_path), error=str(exc))
            if not waited:
                log.info("async_dispatcher_standby", lock=str(self._lock_path))
                waited = True
            await asyncio.sleep(LOCK_RETRY_S)
        try:
            self._doorbell.listen()
        except OSError as exc:  # dispatch still works: the queue is polled every second
            log.warning("async_doorbell_unusable", error=str(exc))
        log.info("async_dispatcher_started", pid=os.getpid())
        self.holding.set()
        extra = asyncio.create_task(self._extra()) if self._extra is not None else None
        try:
            await self._dispatcher.run()
        finally:
            if extra is not None:
                extra.cancel()
                with contextlib.suppress(BaseException):
                    await extra

    async def stop(self, drain_s: float) -> None:
        task = self._task
        if task is not None:
            task.cancel()
            with contextlib.suppress(BaseException):
                await task
            if not task.cancelled() and task.exception() is not None:
                log.error("async_dispatcher_crashed", error=repr(task.exception()))
        if self.holding.is_set():
            await self._dispatcher.drain(drain_s)
        self._doorbell.close()
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
