"""Async calls survive a gateway being killed, with the queue on JetStream: two real gateway processes
(``PYFAASD_BACKEND=swarm``, each with its own state dir, so each dispatches) on one real ``nats-server -js``,
calls accepted by one, that one killed with ``kill -9`` while it runs some of them; the other delivers every call.

Loopback only, no Docker: the function's replica is an HTTP server on 127.0.0.1, and "Swarm's DNS" a DNS server
on loopback answering ``tasks.openfaas-fn_echo`` with 127.0.0.1 (``PYFAASD_SWARM_DNS``)."""

from __future__ import annotations

import asyncio
import signal
import sys
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from tests.helpers import free_port, wait_http_ok
from tests.nats_support import NatsServer, running_nats_server
from tests.unit.gateway.conftest import AUTH, FakeProvider, gateway_env, gateway_state
from tests.unit.gateway.test_gateway_swarm_dns import FakeSwarmDns

CALLS = 24
LEASE = "1s"
CONCURRENCY = 3


@pytest.fixture
def nats(tmp_path: Path) -> Iterator[NatsServer]:
    with running_nats_server(tmp_path / "nats") as server:
        yield server


class Replica:
    """The function: each call takes 0.4 s; records every delivery (call id, and whether it was before the kill)."""

    def __init__(self) -> None:
        self.received: list[tuple[str, bool]] = []
        self.killed = False

    async def handle(self, request: web.Request) -> web.Response:
        self.received.append((request.headers["X-Call-Id"], self.killed))
        await asyncio.sleep(0.4)
        return web.Response(text="done")


async def start_gateway(
    state: Path, port: int, nats_url: str, dns_port: int, function_port: int, provider_port: int
) -> asyncio.subprocess.Process:
    gateway_state(state)
    env = gateway_env(
        state,
        port,
        PYFAASD_BACKEND="swarm",
        PYFAASD_PROVIDER_URL=f"http://127.0.0.1:{provider_port}",
        PYFAASD_FUNCTION_PORT=str(function_port),
        PYFAASD_SWARM_DNS=f"127.0.0.1:{dns_port}",
        PYFAASD_NATS_URL=nats_url,
        PYFAASD_ASYNC_LEASE=LEASE,
        PYFAASD_ASYNC_CONCURRENCY=str(CONCURRENCY),
        PYFAASD_GATEWAY_WORKERS="1",
        PYFAASD_AUTOSCALE="false",
    )
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "gateway", env=env, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL
    )


async def test_calls_queued_on_a_killed_gateway_are_all_delivered_by_the_other(
    tmp_path: Path, nats: NatsServer
) -> None:
    loop = asyncio.get_running_loop()
    dns_transport, dns = await loop.create_datagram_endpoint(FakeSwarmDns, local_addr=("127.0.0.1", 0))
    dns.answers["tasks.openfaas-fn_echo"] = ["127.0.0.1"]
    dns_port = dns_transport.get_extra_info("sockname")[1]
    replica = Replica()
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", replica.handle)
    function = TestServer(app, host="127.0.0.1", port=free_port())
    await function.start_server()
    assert function.port is not None
    provider = FakeProvider()
    provider.functions["echo.openfaas-fn"] = {"name": "echo", "namespace": "openfaas-fn", "replicas": 1}
    provider_server = TestServer(provider.app(), host="127.0.0.1", port=free_port())
    await provider_server.start_server()
    assert provider_server.port is not None
    ports = [free_port(), free_port()]
    gateways = [
        await start_gateway(tmp_path / name, port, nats.url, dns_port, function.port, provider_server.port)
        for name, port in zip(("a", "b"), ports, strict=True)
    ]
    first, second = gateways
    ids = [f"call-{i}" for i in range(CALLS)]
    try:
        for port in ports:
            await wait_http_ok(port, "/_/health", timeout=20)
        async with aiohttp.ClientSession() as session:
            # The second gateway stops dispatching for a moment (SIGSTOP): every call is accepted by the first,
            # which starts running them, CONCURRENCY at a time.
            second.send_signal(signal.SIGSTOP)
            for call_id in ids:
                async with session.post(
                    f"http://127.0.0.1:{ports[0]}/async-function/echo", headers={"X-Call-Id": call_id}, data=b"x"
                ) as response:
                    assert response.status == 202, await response.text()
            async with asyncio.timeout(10):
                while len(replica.received) < CONCURRENCY:
                    await asyncio.sleep(0.01)
            first.kill()  # kill -9, with calls running and most of them still queued
            await first.wait()
            replica.killed = True
            before_kill = {call_id for call_id, _ in replica.received}
            assert len(before_kill) < CALLS
            second.send_signal(signal.SIGCONT)

            async with asyncio.timeout(30):
                while {call_id for call_id, _ in replica.received} != set(ids):
                    await asyncio.sleep(0.05)
            async with asyncio.timeout(10):  # and the second gateway recorded every outcome
                for call_id in ids:
                    while True:
                        async with session.get(
                            f"http://127.0.0.1:{ports[1]}/system/async/{call_id}", headers=AUTH
                        ) as response:
                            assert response.status == 200
                            status = await response.json()
                        if status["status"] == "done":
                            break
                        await asyncio.sleep(0.05)
        await asyncio.sleep(0.5)  # room for a stray second delivery, were there one
        delivered = [call_id for call_id, _ in replica.received]
        twice = {call_id for call_id in delivered if delivered.count(call_id) > 1}
        # Exactly the calls the killed gateway was running (0.4 s each, killed as they started) ran twice: the
        # at-least-once window; every other call once. Seen here: 3 running at the kill, 27 deliveries of 24 calls.
        assert twice == before_kill
        assert all(delivered.count(call_id) <= 2 for call_id in ids)
        assert len(before_kill) == CONCURRENCY
    finally:
        for gateway in gateways:
            if gateway.returncode is None:
                gateway.send_signal(signal.SIGCONT)
                gateway.kill()
                await gateway.wait()
        await function.close()
        await provider_server.close()
        dns_transport.close()
