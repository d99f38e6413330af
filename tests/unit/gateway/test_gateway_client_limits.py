"""``python -m gateway`` as a real process against idle, slow and too many clients (issue 20, point 4).

Short limits by flag (header 1 s, idle 2 s, 600 connections) keep it quick; the defaults and a soak with
10,000 idle and 500 slow clients are in bench/soak.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from tests.helpers import free_port, wait_http_ok
from tests.slow_clients import HEAD, SLACK_S, closed, connection, on_time, still_open, trickle
from tests.unit.gateway.conftest import gateway_env, gateway_state

CAP = 600
FUNCTION_HEAD = b"GET /function/echo HTTP/1.1\r\nHost: gateway\r\nX-Padding: " + b"a" * 40 + b"\r\n\r\n"


@pytest.fixture
async def replica_port() -> AsyncIterator[int]:
    async def handle(request: web.Request) -> web.Response:
        return web.Response(text="fast")

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handle)
    server = TestServer(app, host="127.0.0.1", port=free_port())
    await server.start_server()
    try:
        assert server.port is not None
        yield server.port
    finally:
        await server.close()


@pytest.fixture
async def gateway(tmp_path: Path, replica_port: int) -> AsyncIterator[int]:
    gateway_state(tmp_path, {"echo.openfaas-fn": ["127.0.0.1"]})
    port = free_port()
    env = gateway_env(
        tmp_path,
        port,
        PYFAASD_FUNCTION_PORT=str(replica_port),
        PYFAASD_IDLE_TIMEOUT="2s",  # the variable; the other two by flag
        PYFAASD_ACCESS_LOG="false",
        PYFAASD_GATEWAY_WORKERS="1",  # the cap is per serving process
    )
    flags = ["--header-timeout", "1s", "--max-connections", str(CAP)]
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "gateway", *flags, env=env, stdout=asyncio.subprocess.DEVNULL
    )
    try:
        await wait_http_ok(port, "/_/health", timeout=20)
        yield port
    finally:
        proc.terminate()
        async with asyncio.timeout(10):
            await proc.wait()


async def metrics(port: int) -> dict[str, float]:
    async with aiohttp.ClientSession() as session, session.get(f"http://127.0.0.1:{port}/metrics") as response:
        text = await response.text()
    values = {}
    for line in text.splitlines():
        if line.startswith("gateway_connections_"):
            name, value = line.rsplit(" ", 1)
            values[name] = float(value)
    return values


async def test_slow_heads_and_idle_connections_are_closed_while_requests_pass(gateway: int) -> None:
    async with contextlib.AsyncExitStack() as stack:
        idle = [await stack.enter_async_context(connection(gateway)) for _ in range(300)]
        slow = [await stack.enter_async_context(connection(gateway)) for _ in range(250)]
        started = time.monotonic()
        senders = [asyncio.create_task(trickle(writer, FUNCTION_HEAD)) for _, writer in slow]
        async with aiohttp.ClientSession() as session:
            for _ in range(20):
                async with session.get(f"http://127.0.0.1:{gateway}/function/echo") as response:
                    assert (response.status, await response.text()) == (200, "fast")
            # Every idle and slow client was still connected after those requests (the slow ones sending).
            assert (await metrics(gateway))["gateway_connections_open"] >= 551

        await asyncio.gather(*(closed(reader) for reader, _ in slow))
        assert on_time(time.monotonic() - started, 1.0)
        for sender in senders:
            sender.cancel()
        assert (await metrics(gateway))["gateway_connections_header_timeout_total"] == 250

        await asyncio.gather(*(closed(reader) for reader, _ in idle))
        assert time.monotonic() - started < 2.0 + SLACK_S
    assert (await metrics(gateway))["gateway_connections_open"] <= 1  # the scrape's own connection


async def test_a_keep_alive_client_idle_after_a_response_is_closed_after_the_idle_timeout(gateway: int) -> None:
    async with connection(gateway) as (reader, writer):
        writer.write(HEAD.replace(b"GET / ", b"GET /function/echo "))
        assert (await reader.readuntil(b"fast")).startswith(b"HTTP/1.1 200 OK\r\n")
        answered = time.monotonic()
        assert await still_open(reader, 1.5)
        assert await closed(reader) == b""
        assert on_time(time.monotonic() - answered, 2.0)


async def test_clients_over_the_cap_get_503_and_are_counted(gateway: int) -> None:
    async with contextlib.AsyncExitStack() as stack:
        for _ in range(CAP):
            await stack.enter_async_context(connection(gateway))
        await asyncio.sleep(0.2)  # the gateway has accepted them all
        async with aiohttp.ClientSession() as session:
            for _ in range(3):
                async with session.get(f"http://127.0.0.1:{gateway}/function/echo") as response:
                    assert response.status == 503
                    assert response.headers["Connection"] == "close"
                    assert response.headers["X-OpenFaaS-Internal"] == "gateway"
                    assert await response.text() == "too many connections to the gateway\n"
    await asyncio.sleep(0.2)  # the gateway sees the held connections go
    counted = await metrics(gateway)
    assert counted["gateway_connections_refused_total"] == 3
    async with aiohttp.ClientSession() as session, session.get(f"http://127.0.0.1:{gateway}/function/echo") as answer:
        assert (answer.status, await answer.text()) == (200, "fast")
