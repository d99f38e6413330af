"""A watchdog wired as server.py wires one worker, served by pytest-aiohttp's test server."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
import uvloop
from aiohttp import web
from aiohttp.test_utils import BaseTestServer, TestClient, TestServer
from pytest_aiohttp import AiohttpClient

from tests.lean_support import LeanOnlyTestServer
from tests.watchdog_harness import Harness, StartWatchdog
from watchdog.aiohttp_app import create_app
from watchdog.app import FunctionCalls, Watchdog, lean_routes
from watchdog.config import WatchdogConfig
from watchdog.executor import build_executor, build_supervisor
from watchdog.metrics import FunctionMetrics
from watchdog.readiness import Readiness
from watchdog.shared import Flags, Limiter


def pytest_asyncio_loop_factories(
    config: pytest.Config, item: pytest.Item
) -> dict[str, Callable[[], asyncio.AbstractEventLoop]]:
    """Watchdog tests run on uvloop, the watchdog's loop (servicekit's server tests run on the stdlib loop too)."""
    return {"uvloop": uvloop.new_event_loop}


@pytest.fixture
async def start_watchdog(aiohttp_client: AiohttpClient, tmp_path: Path) -> AsyncIterator[StartWatchdog]:
    """A watchdog served as server.py serves it: the lean server alone in http and python modes, the aiohttp app
    in the fork and static modes."""
    started: list[Harness] = []

    async def start(env: dict[str, str]) -> Harness:
        config = WatchdogConfig.from_env({"metrics_port": "0", "TMPDIR": str(tmp_path), **env})
        readiness = Readiness(Flags(), config.lock_path, config.suppress_lock)
        limiter = Limiter(config.max_inflight, shared=False)
        metrics = FunctionMetrics(1)
        supervisor = build_supervisor(config)
        executor = build_executor(config, readiness)
        await executor.start()
        watchdog = Watchdog(config, executor, readiness, limiter, metrics.recorder(0), None)
        calls = FunctionCalls(watchdog)
        route = lean_routes(watchdog, calls)
        server: BaseTestServer = TestServer(create_app(watchdog, calls)) if route is None else LeanOnlyTestServer(route)
        client: TestClient[web.Request, None] = await aiohttp_client(server)
        await supervisor.start(readiness)
        harness = Harness(client, config, readiness, supervisor, executor, metrics)
        started.append(harness)
        return harness

    yield start
    for harness in started:
        await harness.executor.close()
        await harness.supervisor.stop()
