"""The autoscaler's decisions on a fake clock and fake load: the formula, the stable window, min == max, idle
scale to zero, and the loop around them against an in-memory platform."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass, field

import pytest

from gateway.autoscaler import FAILED_RETRY_S, Autoscaler
from gateway.errors import ProviderError
from gateway.platform import FunctionView
from gateway.scaling_policy import (
    LOAD_WINDOW_S,
    Decision,
    LoadHistory,
    Policy,
    Sample,
    ScaleDefaults,
    decide,
    formula,
    policy_of,
)
from servicekit.scaling import ScaleType

DEFAULTS = ScaleDefaults(max_replicas=10, zero_duration_s=60.0, down_window_s=30.0)


def policy(**labels: str) -> Policy:
    found, complaint = policy_of({f"com.openfaas.scale.{k.replace('_', '-')}": v for k, v in labels.items()}, DEFAULTS)
    assert complaint is None
    return found


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@dataclass
class Traffic:
    """A function's counters as the gateway's metrics keep them: requests started so far, in flight now."""

    started: float = 0.0
    in_flight: float = 0.0
    cpu: float | None = None

    def sample(self, at: float) -> Sample:
        return Sample(at, self.started, self.in_flight, self.cpu)


def run(
    rule: Policy, seconds: float, rps: float, current: int, *, clock: Clock, history: LoadHistory, traffic: Traffic
) -> list[Decision]:
    """One decision per second for ``seconds`` under ``rps`` requests/s; ``current`` follows each decision."""
    out = []
    for _ in range(int(seconds)):
        clock.now += 1.0
        traffic.started += rps
        history.observe(traffic.sample(clock.now))
        decision = decide(rule, history, clock.now, current, ready=current)
        out.append(decision)
        current = decision.replicas
    return out


# -- the formula -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("load", "expected"),
    [(0.0, 1), (4.5, 1), (4.6, 2), (9.0, 2), (9.1, 3), (45.0, 10), (1000.0, 10)],
)
def test_formula_is_ceil_of_load_over_target_times_proportion_clamped(load: float, expected: int) -> None:
    # No type, no target: OpenFaaS CE's feel, 5 requests/s per replica at 90 %.
    assert formula(policy(), load) == expected


def test_typed_functions_default_to_openfaas_pros_target_of_50() -> None:
    rule = policy(type="capacity")
    assert (rule.type, rule.target, rule.proportion) == (ScaleType.CAPACITY, 50.0, 0.9)
    assert formula(rule, 45.0) == 1
    assert formula(rule, 46.0) == 2


def test_labels_min_max_target_and_proportion() -> None:
    rule = policy(min="2", max="4", type="rps", target="10", target_proportion="1.0")
    assert formula(rule, 0.0) == 2
    assert formula(rule, 30.0) == 3
    assert formula(rule, 31.0) == 4
    assert formula(rule, 500.0) == 4


def test_a_max_above_the_platforms_is_the_platforms() -> None:
    assert policy(max="50").maximum == DEFAULTS.max_replicas
    assert policy().maximum == DEFAULTS.max_replicas  # PYFAASD_MAX_REPLICAS is the default max


def test_bad_labels_fall_back_to_the_defaults_and_say_why() -> None:
    found, complaint = policy_of({"com.openfaas.scale.type": "queue"}, DEFAULTS)
    assert found == policy()
    assert complaint is not None
    assert "com.openfaas.scale.type" in complaint


# -- over time ---------------------------------------------------------------------------------------------


def test_load_above_5_rps_scales_up_within_seconds_and_back_to_min_after_the_window() -> None:
    clock, traffic = Clock(), Traffic()
    history = LoadHistory(clock.now)
    rule = policy(max="3")
    quiet = run(rule, 3, 1.0, 1, clock=clock, history=history, traffic=traffic)
    assert {d.replicas for d in quiet} == {1}
    busy = run(rule, 10, 12.0, 1, clock=clock, history=history, traffic=traffic)
    first_up = next(i for i, d in enumerate(busy) if d.replicas > 1)
    assert first_up <= 2  # "past about 5 requests/s for a few seconds"
    assert busy[-1].replicas == 3  # 12 rps / 4.5 per replica → 3
    assert busy[first_up].reason == "up"
    calm = run(rule, 45, 0.0, 3, clock=clock, history=history, traffic=traffic)
    replicas = [d.replicas for d in calm]
    down_at = next(i for i, r in enumerate(replicas) if r < 3)
    # The load window empties within LOAD_WINDOW_S, then a whole down window of lower recommendations.
    assert DEFAULTS.down_window_s <= down_at + 1 <= DEFAULTS.down_window_s + LOAD_WINDOW_S + 1
    assert calm[down_at].reason == "down"
    assert all(d.reason == "window" for d in calm[:down_at] if d.formula < 3)
    # Down in the steps the load fell through (the highest recommendation of the window), to min at last.
    at_min = replicas.index(1)
    assert at_min + 1 <= DEFAULTS.down_window_s + LOAD_WINDOW_S + 1
    assert replicas[at_min:] == [1] * (len(replicas) - at_min)
    assert replicas == sorted(replicas, reverse=True)


def test_a_bursty_load_does_not_flap() -> None:
    clock, traffic = Clock(), Traffic()
    history = LoadHistory(clock.now)
    rule = policy(max="4")
    current = 1
    seen = []
    for second in range(90):  # 20 rps for 5 s, then 5 s of nothing, again and again
        clock.now += 1.0
        traffic.started += 20.0 if (second // 5) % 2 == 0 else 0.0
        history.observe(traffic.sample(clock.now))
        current = decide(rule, history, clock.now, current, current).replicas
        seen.append(current)
    after_first_burst = seen[5:]
    assert min(after_first_burst) == max(after_first_burst)  # up once, then held: no scale down in the pauses


def test_min_equal_to_max_turns_scaling_off() -> None:
    clock, traffic = Clock(), Traffic()
    history = LoadHistory(clock.now)
    decisions = run(policy(min="2", max="2"), 10, 100.0, 2, clock=clock, history=history, traffic=traffic)
    assert {(d.replicas, d.reason) for d in decisions} == {(2, "fixed")}


def test_capacity_scales_on_requests_in_flight() -> None:
    clock, traffic = Clock(), Traffic(in_flight=12.0)
    history = LoadHistory(clock.now)
    rule = policy(type="capacity", target="5", max="5")
    decisions = run(rule, 3, 0.0, 1, clock=clock, history=history, traffic=traffic)
    assert decisions[-1].replicas == 3  # ceil(12 / 4.5)
    assert decisions[-1].load == 12.0


def test_cpu_scales_on_the_milli_cpus_the_provider_reports() -> None:
    clock, traffic = Clock(), Traffic(cpu=900.0)
    history = LoadHistory(clock.now)
    rule = policy(type="cpu", target="200", target_proportion="1", max="8")
    decisions = run(rule, 3, 0.0, 1, clock=clock, history=history, traffic=traffic)
    assert decisions[-1].replicas == 5  # ceil(900 / 200)


def test_rps_is_the_mean_over_the_load_window() -> None:
    clock, traffic = Clock(), Traffic()
    history = LoadHistory(clock.now)
    for rps in (0, 0, 0, 10, 10, 10, 10, 10, 10, 10):
        clock.now += 1.0
        traffic.started += rps
        history.observe(traffic.sample(clock.now))
    assert history.load(ScaleType.RPS) == pytest.approx(10.0)


# -- idle scale to zero ------------------------------------------------------------------------------------


def test_an_idle_function_with_zero_true_goes_to_zero_after_zero_duration() -> None:
    clock, traffic = Clock(), Traffic()
    history = LoadHistory(clock.now)
    rule = policy(zero="true", zero_duration="20s")
    decisions = run(rule, 25, 0.0, 1, clock=clock, history=history, traffic=traffic)
    zero_at = next(i for i, d in enumerate(decisions) if d.replicas == 0)
    assert zero_at + 1 == 20
    assert decisions[zero_at].reason == "zero"


def test_requests_keep_it_up_and_in_flight_ones_too() -> None:
    clock, traffic = Clock(), Traffic()
    history = LoadHistory(clock.now)
    rule = policy(zero="true", zero_duration="10s")
    for second in range(30):
        clock.now += 1.0
        if second % 8 == 0:
            traffic.started += 1  # a request every 8 s: never 10 s idle
        history.observe(traffic.sample(clock.now))
        assert decide(rule, history, clock.now, 1, 1).replicas == 1
    traffic.in_flight = 1.0  # one long request, nothing new started
    for _ in range(30):
        clock.now += 1.0
        history.observe(traffic.sample(clock.now))
        assert decide(rule, history, clock.now, 1, 1).replicas == 1


def test_without_zero_true_an_idle_function_stays_at_min() -> None:
    clock, traffic = Clock(), Traffic()
    history = LoadHistory(clock.now)
    decisions = run(policy(zero_duration="5s"), 30, 0.0, 1, clock=clock, history=history, traffic=traffic)
    assert {d.replicas for d in decisions} == {1}


def test_min_equal_to_max_still_goes_to_zero_when_asked() -> None:
    clock, traffic = Clock(), Traffic()
    history = LoadHistory(clock.now)
    rule = policy(min="2", max="2", zero="true", zero_duration="5s")
    decisions = run(rule, 6, 0.0, 2, clock=clock, history=history, traffic=traffic)
    assert decisions[-1].replicas == 0


def test_a_function_at_zero_is_left_to_scale_from_zero() -> None:
    clock, traffic = Clock(), Traffic()
    history = LoadHistory(clock.now)
    clock.now += 1
    traffic.started = 50
    history.observe(traffic.sample(clock.now))
    assert decide(policy(zero="true"), history, clock.now, 0, 0).reason == "idle"


# -- the loop ----------------------------------------------------------------------------------------------


@dataclass
class FakePlatform:
    functions_: dict[str, FunctionView] = field(default_factory=dict)
    scaled: list[tuple[str, int]] = field(default_factory=list)
    cpu: dict[str, float] = field(default_factory=dict)
    fail_scale: bool = False

    def add(self, name: str, replicas: int = 1, **labels: str) -> None:
        full = {f"com.openfaas.scale.{k.replace('_', '-')}": v for k, v in labels.items()}
        self.functions_[f"{name}.openfaas-fn"] = FunctionView(name, "openfaas-fn", full, replicas)

    async def functions(self) -> list[FunctionView]:
        return list(self.functions_.values())

    async def cpu_millis(self, name: str, namespace: str) -> float | None:
        return self.cpu.get(f"{name}.{namespace}")

    async def scale(self, name: str, namespace: str, replicas: int) -> None:
        if self.fail_scale:
            raise ProviderError("the provider answered 500")
        key = f"{name}.{namespace}"
        self.scaled.append((key, replicas))
        view = self.functions_[key]
        self.functions_[key] = FunctionView(view.name, view.namespace, view.labels, replicas)


@dataclass
class World:
    platform: FakePlatform
    clock: Clock
    totals: dict[str, tuple[float, float]]
    ready: dict[str, int]
    recorded: dict[str, tuple[Policy, Decision]]
    gone: list[str]
    autoscaler: Autoscaler

    async def tick(self, seconds: float = 1.0) -> None:
        self.clock.now += seconds
        await self.autoscaler.tick()
        await self.autoscaler.settle()
        for key, view in self.platform.functions_.items():
            self.ready[key] = view.replicas  # replicas turn ready as soon as they are asked for

    async def warm_up(self) -> None:
        """Quiet ticks until the load window is full, so a load that starts now counts at once."""
        for _ in range(int(LOAD_WINDOW_S) + 1):
            await self.tick()

    def add_requests(self, key: str, count: float, in_flight: float = 0.0) -> None:
        started, _ = self.totals.get(key, (0.0, 0.0))
        self.totals[key] = (started + count, in_flight)


def world() -> World:
    platform, clock = FakePlatform(), Clock()
    totals: dict[str, tuple[float, float]] = {}
    ready: dict[str, int] = {}
    recorded: dict[str, tuple[Policy, Decision]] = {}
    gone: list[str] = []

    def record(key: str, rule: Policy, decision: Decision) -> None:
        recorded[key] = (rule, decision)

    def totals_now() -> Mapping[str, tuple[float, float]]:
        return dict(totals)

    autoscaler = Autoscaler(
        platform, totals_now, lambda: dict(ready), DEFAULTS, clock=clock, on_decision=record, on_gone=gone.append
    )
    return World(platform, clock, totals, ready, recorded, gone, autoscaler)


async def test_the_loop_scales_up_under_load_and_records_the_desired_count() -> None:
    w = world()
    w.platform.add("busy", max="4")
    w.platform.add("quiet")
    w.ready.update({"busy.openfaas-fn": 1, "quiet.openfaas-fn": 1})
    await w.warm_up()
    for _ in range(int(LOAD_WINDOW_S) + 1):
        w.add_requests("busy.openfaas-fn", 15.0)
        await w.tick()
    # Up as the window fills with 15 rps, to ceil(15 / 4.5) = 4; never down meanwhile.
    counts = [replicas for key, replicas in w.platform.scaled if key == "busy.openfaas-fn"]
    assert counts[-1] == 4
    assert counts == sorted(counts)
    assert len(w.platform.scaled) == len(counts)  # the quiet one is left alone
    rule, decision = w.recorded["busy.openfaas-fn"]
    assert (rule.type, rule.target, decision.replicas) == (ScaleType.RPS, 5.0, 4)
    assert w.recorded["quiet.openfaas-fn"][1].replicas == 1


async def test_one_scale_call_in_flight_per_function() -> None:
    w = world()
    w.platform.add("busy", max="4")
    w.ready["busy.openfaas-fn"] = 1
    gate_open = False

    original = w.platform.scale

    async def slow_scale(name: str, namespace: str, replicas: int) -> None:
        while not gate_open:
            await asyncio.sleep(0.001)
        await original(name, namespace, replicas)

    await w.warm_up()
    w.platform.scale = slow_scale  # type: ignore[method-assign]
    for _ in range(6):
        w.clock.now += 1
        w.add_requests("busy.openfaas-fn", 15.0)
        await w.autoscaler.tick()
    gate_open = True
    await w.autoscaler.settle()
    assert len(w.platform.scaled) == 1  # later ticks left the function alone while its call was in flight


async def test_a_failed_scale_is_retried_later_not_every_tick() -> None:
    w = world()
    w.platform.add("busy", max="4")
    w.ready["busy.openfaas-fn"] = 1
    await w.warm_up()
    w.platform.fail_scale = True
    while not any(d.replicas > 1 for _, d in w.autoscaler.decisions):
        w.add_requests("busy.openfaas-fn", 30.0)
        await w.tick()
    w.platform.fail_scale = False
    for _ in range(int(FAILED_RETRY_S) - 1):
        w.add_requests("busy.openfaas-fn", 30.0)
        await w.tick()
        assert w.platform.scaled == []  # resting for FAILED_RETRY_S
    for _ in range(2):
        w.add_requests("busy.openfaas-fn", 30.0)
        await w.tick()
    assert w.platform.scaled == [("busy.openfaas-fn", 4)]


async def test_idle_to_zero_through_the_loop_and_forgotten_when_deleted() -> None:
    w = world()
    w.platform.add("sleepy", zero="true", zero_duration="5s")
    w.ready["sleepy.openfaas-fn"] = 1
    for _ in range(6):
        await w.tick()
    assert w.platform.scaled == [("sleepy.openfaas-fn", 0)]
    del w.platform.functions_["sleepy.openfaas-fn"]
    await w.tick()
    assert w.gone == ["sleepy.openfaas-fn"]


async def test_cpu_functions_are_measured_through_the_platform() -> None:
    w = world()
    w.platform.add("hot", type="cpu", target="100", target_proportion="1", max="5")
    w.ready["hot.openfaas-fn"] = 1
    w.platform.cpu["hot.openfaas-fn"] = 350.0
    await w.tick()
    assert w.platform.scaled == [("hot.openfaas-fn", 4)]
