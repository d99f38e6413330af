"""Replicas from Swarm's DNS, behind the resolver the proxy uses: against a DNS server on loopback that answers
``tasks.<namespace>_<name>`` the way Docker's embedded one does (A records, NXDOMAIN for a name it does not know).
The real one is exercised by tests/integration/swarm."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import cast

import dns.message
import dns.rcode
import dns.rrset
import pytest

from gateway.resolver import Resolver
from gateway.swarm_dns import SwarmDns


@dataclass
class FakeSwarmDns(asyncio.DatagramProtocol):
    answers: dict[str, list[str]] = field(default_factory=dict)  # tasks.<service> → addresses
    asked: list[str] = field(default_factory=list)
    transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)  # uvloop's UDPTransport is not a subclass

    def datagram_received(self, data: bytes, addr: tuple[str | object, int]) -> None:
        query = dns.message.from_wire(data)
        name = query.question[0].name.to_text(omit_final_dot=True)
        self.asked.append(name)
        reply = dns.message.make_response(query)
        ips = self.answers.get(name)
        if ips is None:
            reply.set_rcode(dns.rcode.NXDOMAIN)
        else:
            reply.answer.append(dns.rrset.from_text(query.question[0].name, 0, "IN", "A", *ips))
        assert self.transport is not None
        self.transport.sendto(reply.to_wire(), addr)


@pytest.fixture
async def server() -> AsyncIterator[tuple[FakeSwarmDns, int]]:
    loop = asyncio.get_running_loop()
    transport, protocol = await loop.create_datagram_endpoint(FakeSwarmDns, local_addr=("127.0.0.1", 0))
    port = transport.get_extra_info("sockname")[1]
    yield protocol, port
    transport.close()


async def until(check: Callable[[], bool], timeout: float = 3.0) -> None:
    async with asyncio.timeout(timeout):
        while not check():
            await asyncio.sleep(0.01)


async def test_a_function_s_healthy_tasks_are_its_replicas_sorted(server: tuple[FakeSwarmDns, int]) -> None:
    fake, port = server
    fake.answers["tasks.openfaas-fn_echo"] = ["10.63.0.12", "10.63.0.3", "10.63.0.7"]
    resolver = Resolver(SwarmDns("127.0.0.1", port))
    try:
        assert resolver.replicas("echo.openfaas-fn") == ()  # first sight: asked now, answered soon
        await until(lambda: resolver.recheck("echo.openfaas-fn") != ())
        assert resolver.replicas("echo.openfaas-fn") == ("10.63.0.3", "10.63.0.7", "10.63.0.12")
        assert fake.asked[0] == "tasks.openfaas-fn_echo"
        assert dict(resolver.functions()) == {"echo.openfaas-fn": 3}
    finally:
        await resolver.close()


async def test_a_function_without_tasks_is_empty_until_swarm_lists_one(server: tuple[FakeSwarmDns, int]) -> None:
    # scaled to zero (or starting): NXDOMAIN. The scaler rechecks until the new task is healthy.
    fake, port = server
    resolver = Resolver(SwarmDns("127.0.0.1", port, cache_s=60))
    try:
        resolver.replicas("cold.dev")
        await until(lambda: len(fake.asked) == 1)
        await asyncio.sleep(0.1)
        assert resolver.recheck("cold.dev") == ()
        fake.answers["tasks.dev_cold"] = ["10.63.0.9"]
        await until(lambda: resolver.recheck("cold.dev") == ("10.63.0.9",))  # long before the 60 s cache
    finally:
        await resolver.close()


async def test_answers_are_cached_and_asked_again_when_old(server: tuple[FakeSwarmDns, int]) -> None:
    fake, port = server
    fake.answers["tasks.openfaas-fn_f"] = ["10.63.0.2"]
    source = SwarmDns("127.0.0.1", port, cache_s=0.3)
    resolver = Resolver(source)
    try:
        resolver.replicas("f.openfaas-fn")
        await until(lambda: resolver.replicas("f.openfaas-fn") != ())
        sent = source.queries
        for _ in range(200):  # the request path only reads the cache
            assert resolver.replicas("f.openfaas-fn") == ("10.63.0.2",)
        assert source.queries == sent
        fake.answers["tasks.openfaas-fn_f"] = ["10.63.0.2", "10.63.0.4"]  # scaled up
        await until(lambda: len(resolver.replicas("f.openfaas-fn")) == 2)
    finally:
        await resolver.close()


async def test_a_refused_replica_makes_its_function_asked_again_at_once(server: tuple[FakeSwarmDns, int]) -> None:
    fake, port = server
    fake.answers["tasks.openfaas-fn_f"] = ["10.63.0.2", "10.63.0.3"]
    resolver = Resolver(SwarmDns("127.0.0.1", port, cache_s=60))
    try:
        resolver.replicas("f.openfaas-fn")
        await until(lambda: len(resolver.replicas("f.openfaas-fn")) == 2)
        fake.answers["tasks.openfaas-fn_f"] = ["10.63.0.3"]  # one task stopped
        resolver.mark_refused("10.63.0.2")
        await until(lambda: resolver.replicas("f.openfaas-fn") == ("10.63.0.3",))
    finally:
        await resolver.close()


async def test_a_dns_server_that_does_not_answer_keeps_the_last_answer(server: tuple[FakeSwarmDns, int]) -> None:
    fake, port = server
    fake.answers["tasks.openfaas-fn_f"] = ["10.63.0.2"]
    changes: list[int] = []
    source = SwarmDns("127.0.0.1", port, cache_s=0.2)
    resolver = Resolver(source)
    resolver.on_change = lambda: changes.append(1)
    try:
        resolver.replicas("f.openfaas-fn")
        await until(lambda: resolver.replicas("f.openfaas-fn") != ())
        assert fake.transport is not None
        fake.transport.close()  # queries now time out
        sent = source.queries
        await until(lambda: source.queries > sent, timeout=5)
        await asyncio.sleep(1.2)  # the query's timeout
        assert resolver.replicas("f.openfaas-fn") == ("10.63.0.2",)
        assert changes == [1]
    finally:
        await resolver.close()


async def test_a_refresh_loop_that_failed_is_started_again(server: tuple[FakeSwarmDns, int]) -> None:
    fake, port = server
    fake.answers["tasks.openfaas-fn_f"] = ["10.63.0.2"]
    source = SwarmDns("127.0.0.1", port)
    resolver = Resolver(source)
    broken = source.lookup

    async def failing(key: str) -> tuple[str, ...] | None:
        raise RuntimeError("a bug")

    source.lookup = failing  # type: ignore[method-assign]
    try:
        resolver.replicas("f.openfaas-fn")
        await asyncio.sleep(0.1)  # the loop died on the bug
        source.lookup = broken  # type: ignore[method-assign]
        await until(lambda: resolver.recheck("f.openfaas-fn") == ("10.63.0.2",))
    finally:
        await resolver.close()


async def test_watched_functions_are_known_though_no_request_asks(server: tuple[FakeSwarmDns, int]) -> None:
    # The autoscaler lists the deployed functions every tick and has the resolver watch them: an idle function's
    # ready replicas still count, so it can be scaled to zero.
    fake, port = server
    fake.answers["tasks.openfaas-fn_idle"] = ["10.63.0.5"]
    resolver = Resolver(SwarmDns("127.0.0.1", port))
    try:
        resolver.watch(["idle.openfaas-fn", "gone.openfaas-fn"])

        def listed() -> dict[str, int]:
            resolver.refresh(force=True)
            return dict(resolver.functions())

        await until(lambda: listed() == {"idle.openfaas-fn": 1})
    finally:
        await resolver.close()
