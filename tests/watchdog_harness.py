"""The types of the watchdog test harness (the fixture is in tests/unit/watchdog/conftest.py)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from aiohttp.test_utils import TestClient

from watchdog.config import WatchdogConfig
from watchdog.executor import Executor, Supervisor
from watchdog.metrics import FunctionMetrics
from watchdog.readiness import Readiness


@dataclass
class Harness:
    client: TestClient  # type: ignore[type-arg]
    config: WatchdogConfig
    readiness: Readiness
    supervisor: Supervisor
    executor: Executor
    metrics: FunctionMetrics


StartWatchdog = Callable[..., Awaitable[Harness]]
