"""The autoscaler: once per interval, measure every function's load, decide its replica count, scale it.

It runs in one gateway process only (the single process, or worker 0 of ``--workers N``): the request counters
it reads are the ones ``/metrics`` shows, in shared memory summed over the workers, so one process sees every
request. The decisions are :func:`gateway.scaling_policy.decide`'s; this module does the I/O around them:

* the functions, their labels and their desired counts from the provider (``Platform``), each tick;
* requests started and in flight per function from the gateway's metrics, ready replicas from the hosts table;
* for ``type=cpu``, the milli-CPUs the provider reads from the engine's container stats;
* one scale call in flight per function at a time (``POST /system/scale-function``). The provider answers once
  new replicas are healthy, or once the replicas it removes have left the hosts file and drained their in-flight
  requests, so a decision never races the previous one.

Every decision that changes something is logged (``autoscale_decision``) with its inputs; the desired count and
the target load per function are metrics (``gateway_service_desired_replicas``,
``gateway_service_target_load``).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Mapping
from typing import Final, Protocol

import structlog

from gateway.errors import GatewayError
from gateway.platform import FunctionView
from gateway.scaling_policy import Decision, LoadHistory, Policy, Sample, ScaleDefaults, decide, policy_of
from servicekit.scaling import ScaleType

log = structlog.get_logger("gateway.autoscaler")

FAILED_RETRY_S: Final = 5.0  # after a failed scale call, the function is left alone this long


class Platform(Protocol):
    async def functions(self) -> list[FunctionView]: ...

    async def cpu_millis(self, name: str, namespace: str) -> float | None: ...

    async def scale(self, name: str, namespace: str, replicas: int) -> None: ...


LoadTotals = Callable[[], Mapping[str, tuple[float, float]]]
"""function key → (requests started so far, requests in flight now), across workers."""
ReadyCounts = Callable[[], Mapping[str, int]]
"""function key → ready replicas in the hosts file."""
DecisionSink = Callable[[str, Policy, Decision], None]


class Autoscaler:
    def __init__(
        self,
        platform: Platform,
        load: LoadTotals,
        ready: ReadyCounts,
        defaults: ScaleDefaults,
        *,
        interval_s: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
        on_decision: DecisionSink | None = None,
        on_gone: Callable[[str], None] | None = None,
    ) -> None:
        self._platform = platform
        self._load = load
        self._ready = ready
        self._defaults = defaults
        self._interval_s = interval_s
        self._clock = clock
        self._on_decision = on_decision
        self._on_gone = on_gone
        self._histories: dict[str, LoadHistory] = {}
        self._flights: dict[str, asyncio.Task[None]] = {}
        self._resting: dict[str, float] = {}  # key → until when a failed function is left alone
        self._bad_labels: dict[str, str] = {}  # key → the complaint already logged
        self.decisions: list[tuple[str, Decision]] = []  # the last tick's, for tests and debugging

    async def run(self) -> None:
        """Tick every interval until cancelled; a failed tick is logged and the next one tries again."""
        log.info("autoscaler_started", interval_s=self._interval_s, **_defaults_fields(self._defaults))
        try:
            while True:
                try:
                    await self.tick()
                except GatewayError as e:
                    log.warning("autoscale_tick_failed", error=str(e))
                except Exception:  # a bug must not stop autoscaling for good: log it, try again next tick
                    log.exception("autoscale_tick_crashed")
                await asyncio.sleep(self._interval_s)
        finally:
            await self.close()

    async def tick(self) -> None:
        functions = await self._platform.functions()
        now = self._clock()
        totals = self._load()
        ready = self._ready()
        cpu = await self._cpu([f for f in functions if self._policy(f).type is ScaleType.CPU])
        self.decisions = []
        seen: set[str] = set()
        for fn in functions:
            key = fn.key
            seen.add(key)
            policy = self._policy(fn)
            started, in_flight = totals.get(key, (0.0, 0.0))
            history = self._histories.get(key)
            if history is None:
                history = self._histories[key] = LoadHistory(now)
            history.observe(Sample(now, started, in_flight, cpu.get(key)))
            if key in self._flights or self._resting.get(key, 0.0) > now:
                continue
            decision = decide(policy, history, now, fn.replicas, ready.get(key, 0))
            self.decisions.append((key, decision))
            if self._on_decision is not None:
                self._on_decision(key, policy, decision)
            if decision.replicas != fn.replicas:
                self._log(key, policy, decision)
                if decision.replicas == 0:
                    history.forget_recommendations()
                self._flights[key] = asyncio.create_task(self._scale(fn, decision.replicas), name=f"autoscale {key}")
        for key in [k for k in self._histories if k not in seen]:
            del self._histories[key]
            self._bad_labels.pop(key, None)
            self._resting.pop(key, None)
            if self._on_gone is not None:
                self._on_gone(key)

    def _policy(self, fn: FunctionView) -> Policy:
        policy, complaint = policy_of(fn.labels, self._defaults)
        if complaint is not None and self._bad_labels.get(fn.key) != complaint:
            self._bad_labels[fn.key] = complaint
            log.warning("autoscale_labels_ignored", function=fn.key, error=complaint)
        return policy

    async def _cpu(self, functions: list[FunctionView]) -> dict[str, float]:
        if not functions:
            return {}
        found = await asyncio.gather(
            *(self._platform.cpu_millis(f.name, f.namespace) for f in functions), return_exceptions=True
        )
        return {f.key: value for f, value in zip(functions, found, strict=True) if isinstance(value, float)}

    async def _scale(self, fn: FunctionView, replicas: int) -> None:
        key = fn.key
        try:
            await self._platform.scale(fn.name, fn.namespace, replicas)
            log.info("autoscaled", function=key, replicas=replicas)
        except GatewayError as e:
            self._resting[key] = self._clock() + FAILED_RETRY_S
            log.warning("autoscale_failed", function=key, replicas=replicas, error=str(e))
        finally:
            self._flights.pop(key, None)

    def _log(self, key: str, policy: Policy, decision: Decision) -> None:
        log.info(
            "autoscale_decision",
            function=key,
            replicas=decision.replicas,
            current=decision.current,
            ready=decision.ready,
            reason=decision.reason,
            type=policy.type.value,
            load=round(decision.load, 3),
            per_replica=round(decision.per_replica, 3),
            target=policy.target,
            proportion=policy.proportion,
            formula=decision.formula,
            min=policy.minimum,
            max=policy.maximum,
            zero=policy.zero,
            zero_duration_s=policy.zero_duration_s,
            down_window_s=policy.down_window_s,
        )

    async def settle(self) -> None:
        """Wait for the scale calls in flight (tests)."""
        while self._flights:
            await asyncio.gather(*self._flights.values(), return_exceptions=True)

    async def close(self) -> None:
        flights = list(self._flights.values())
        for task in flights:
            task.cancel()
        for task in flights:
            with contextlib.suppress(BaseException):
                await task


def _defaults_fields(defaults: ScaleDefaults) -> dict[str, float]:
    return {
        "max_replicas": defaults.max_replicas,
        "zero_duration_s": defaults.zero_duration_s,
        "down_window_s": defaults.down_window_s,
    }
