"""The autoscaler's decisions, as pure functions of what was measured and when (no I/O, no clock of its own).

For each function the gateway keeps a :class:`LoadHistory` (requests started, requests in flight and, for
``type=cpu``, the milli-CPUs its replicas used, sampled once per autoscaler tick) and asks :func:`decide` what
the function's replica count should be:

* **Formula** (OpenFaaS Pro's): ``desired = ceil(ready * mean load per replica / (target * proportion))``, which
  is ``ceil(total load / (target * proportion))``, clamped to ``[min, max]``. The load is the mean over the
  last :data:`LOAD_WINDOW_S`: requests per second (``rps``), requests in flight (``capacity``) or milli-CPUs
  (``cpu``).
* **Stable window**: a higher count is applied at once; a lower one only once every recommendation within the
  scale-down window was lower than the current count, and then the highest of them (as Kubernetes' HPA
  stabilisation). So a burst scales up within a tick, and a pause in the load does not flap the replicas.
* **min == max** turns the formula off for that function.
* **Idle scale to zero** (``com.openfaas.scale.zero=true``): no request started for ``zero-duration`` and none in
  flight: 0. Waking it again is the scale from zero of the request path.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

from servicekit.scaling import ScaleLabelError, ScaleLabels, ScaleType, parse_labels

LOAD_WINDOW_S: Final = 5.0  # the load is the mean over this long ("for a few seconds")
_EPSILON: Final = 1e-9  # 9.0000000001 replicas' worth of load is 9, not 10


@dataclass(frozen=True, slots=True)
class ScaleDefaults:
    """The platform's defaults for what a function's labels leave out."""

    max_replicas: int = 20
    zero_duration_s: float = 15 * 60.0
    down_window_s: float = 30.0


@dataclass(frozen=True, slots=True)
class Policy:
    """How one function scales: its labels with the platform's defaults filled in."""

    minimum: int
    maximum: int
    type: ScaleType
    target: float
    proportion: float
    zero: bool
    zero_duration_s: float
    down_window_s: float

    @property
    def fixed(self) -> bool:
        """min == max: the formula is off (idle scale to zero still applies when asked for)."""
        return self.minimum >= self.maximum

    @classmethod
    def of(cls, labels: ScaleLabels, defaults: ScaleDefaults) -> Policy:
        maximum = min(labels.maximum or defaults.max_replicas, defaults.max_replicas)
        minimum = min(labels.minimum, maximum)
        return cls(
            minimum=minimum,
            maximum=maximum,
            type=labels.type,
            target=labels.target,
            proportion=labels.proportion,
            zero=labels.zero,
            zero_duration_s=labels.zero_duration_s or defaults.zero_duration_s,
            down_window_s=labels.down_window_s or defaults.down_window_s,
        )


def policy_of(labels: Mapping[str, str] | None, defaults: ScaleDefaults) -> tuple[Policy, str | None]:
    """The function's policy, and why its labels were not used (the defaults then) — labels set before the
    provider checked them, or changed behind its back."""
    try:
        return Policy.of(parse_labels(labels, defaults.max_replicas), defaults), None
    except ScaleLabelError as e:
        return Policy.of(ScaleLabels(), defaults), str(e)


@dataclass(frozen=True, slots=True)
class Sample:
    at: float  # seconds on the autoscaler's clock
    started: float  # requests started through the gateway so far (a counter)
    in_flight: float  # requests in flight now
    cpu_millis: float | None = None  # milli-CPUs used by all replicas now (type=cpu only)


class LoadHistory:
    """One function's recent samples, its last activity and its recommendations within the down window."""

    __slots__ = ("_recommended", "_samples", "first_seen", "last_activity")

    def __init__(self, now: float) -> None:
        self.first_seen = now
        self.last_activity = now  # a request started or in flight; the gateway's start counts as one
        self._samples: deque[Sample] = deque()
        self._recommended: deque[tuple[float, int]] = deque()

    def observe(self, sample: Sample) -> None:
        last = self._samples[-1] if self._samples else None
        if sample.in_flight > 0 or (last is not None and sample.started > last.started):
            self.last_activity = sample.at
        self._samples.append(sample)
        while len(self._samples) > 1 and self._samples[1].at <= sample.at - LOAD_WINDOW_S:
            self._samples.popleft()

    def load(self, kind: ScaleType) -> float:
        """The mean load over the window, all replicas together."""
        samples = self._samples
        if not samples:
            return 0.0
        if kind is ScaleType.RPS:
            # Over the whole window even while the history is shorter (just deployed, the gateway just
            # started): one request a moment after the first sample is not a rate of hundreds per second.
            first, last = samples[0], samples[-1]
            span = max(last.at - first.at, LOAD_WINDOW_S)
            return max(0.0, last.started - first.started) / span
        if kind is ScaleType.CAPACITY:
            return sum(s.in_flight for s in samples) / len(samples)
        cpu = [s.cpu_millis for s in samples if s.cpu_millis is not None]
        return sum(cpu) / len(cpu) if cpu else 0.0

    def in_flight(self) -> float:
        return self._samples[-1].in_flight if self._samples else 0.0

    def recommend(self, now: float, replicas: int, window_s: float) -> int:
        """Record a recommendation; the highest one within the last ``window_s``."""
        self._recommended.append((now, replicas))
        while self._recommended and self._recommended[0][0] < now - window_s:
            self._recommended.popleft()
        return max(r for _, r in self._recommended)

    def forget_recommendations(self) -> None:
        """After a scale to zero or from zero: the old recommendations say nothing about the new replicas."""
        self._recommended.clear()


@dataclass(frozen=True, slots=True)
class Decision:
    """What the autoscaler wants for one function, with the inputs it decided from (they are logged)."""

    replicas: int  # the count to scale to (== current: leave it)
    current: int  # the provider's desired count before this decision
    ready: int
    load: float  # all replicas together, in the policy's unit
    per_replica: float  # the mean load per ready replica
    formula: int  # ceil(load / (target * proportion)) clamped to [min, max]; current when fixed
    reason: str  # "up", "down", "zero", "hold", "fixed", "window", "idle" (at zero, or not ready yet)


def formula(policy: Policy, load: float) -> int:
    """``ceil(load / (target * proportion))`` clamped to ``[min, max]``."""
    raw = math.ceil(load / (policy.target * policy.proportion) - _EPSILON)
    return max(policy.minimum, min(policy.maximum, raw))


def decide(policy: Policy, history: LoadHistory, now: float, current: int, ready: int) -> Decision:
    """The replica count ``policy`` asks for now. ``current`` is the provider's desired count, ``ready`` the
    replicas in the hosts file."""
    load = history.load(policy.type)
    per_replica = load / ready if ready else 0.0

    def decision(replicas: int, wanted: int, reason: str) -> Decision:
        return Decision(replicas, current, ready, load, per_replica, wanted, reason)

    if current == 0 or ready == 0:
        # At zero (a request wakes it) or no replica ready yet: nothing to measure against.
        history.forget_recommendations()
        return decision(current, current, "idle")
    if policy.zero and history.in_flight() == 0 and now - history.last_activity >= policy.zero_duration_s:
        return decision(0, 0, "zero")
    if policy.fixed:
        return decision(current, current, "fixed")
    wanted = formula(policy, load)
    highest = history.recommend(now, wanted, policy.down_window_s)
    if wanted > current:
        return decision(wanted, wanted, "up")
    if wanted == current:
        return decision(current, wanted, "hold")
    if now - history.first_seen < policy.down_window_s or highest >= current:
        return decision(current, wanted, "window")  # not lower for a whole window yet
    return decision(max(highest, policy.minimum), wanted, "down")
