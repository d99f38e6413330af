"""servicekit.client_limits over real sockets: a real aiohttp server on loopback and raw TCP clients.

Slow clients send a header byte every 0.2 s; the limits are short (about a second) so the suite stays quick.
Each test checks that a connection is still open before its limit and closed soon after it.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import aiohttp
import pytest
from aiohttp import web

from servicekit.aiohttp_site import LimitedSite
from servicekit.client_limits import ClientGuard, ClientLimits
from servicekit.client_side import Answer
from servicekit.lean_server import LeanHandler, LeanReply, LeanRequest, LeanServer
from tests.lean_support import SERVERS
from tests.slow_clients import HEAD, closed, connection, on_time, response, still_open, trickle


@dataclass
class Counts:
    """A ConnectionEvents that counts, as a daemon's metrics do."""

    opened: int = 0
    closed: int = 0
    refused: int = 0
    header_timeouts: int = 0

    def connection_opened(self) -> None:
        self.opened += 1

    def connection_closed(self) -> None:
        self.closed += 1

    def connection_refused(self) -> None:
        self.refused += 1

    def header_timed_out(self) -> None:
        self.header_timeouts += 1


@dataclass
class Served:
    port: int
    guard: ClientGuard
    counts: Counts

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


def app() -> web.Application:
    async def ok(request: web.Request) -> web.Response:
        return web.Response(text="ok")

    async def sleep(request: web.Request) -> web.Response:
        await asyncio.sleep(float(request.query["s"]))
        return web.Response(text="slept")

    async def echo(request: web.Request) -> web.Response:
        return web.Response(text=str(len(await request.read())))

    application = web.Application()
    application.router.add_get("/", ok)
    application.router.add_get("/sleep", sleep)
    application.router.add_post("/echo", echo)
    return application


def lean_route(request: LeanRequest) -> LeanHandler | None:
    """The same three routes on the lean server (servicekit.lean_server), as the services put it in front."""

    async def ok(request: LeanRequest, reply: LeanReply) -> None:
        reply.send(Answer.text(200, "ok"))

    async def sleep(request: LeanRequest, reply: LeanReply) -> None:
        await asyncio.sleep(float(request.query["s"]))
        reply.send(Answer.text(200, "slept"))

    async def echo(request: LeanRequest, reply: LeanReply) -> None:
        reply.send(Answer.text(200, str(len(await request.read()))))

    handlers: dict[str, LeanHandler] = {"/": ok, "/sleep": sleep, "/echo": echo}
    return handlers.get(request.path)


@pytest.fixture(params=SERVERS)
def kind(request: pytest.FixtureRequest) -> str:
    """Every limit holds on aiohttp's connections and on the lean server's."""
    return str(request.param)


@asynccontextmanager
async def serving(kind: str, header_s: float = 1.0, idle_s: float = 1.0, cap: int = 10_000) -> AsyncIterator[Served]:
    runner = web.AppRunner(app(), access_log=None, handle_signals=False)
    await runner.setup()
    counts = Counts()
    guard = ClientGuard(ClientLimits(header_s, idle_s, cap), counts)
    lean = LeanServer(lean_route, header_timeout_s=header_s, idle_timeout_s=idle_s) if kind == "lean" else None
    site = LimitedSite(runner, "127.0.0.1", 0, guard, backlog=1024, lean=lean)
    await site.start()
    try:
        yield Served(site.port, guard, counts)
    finally:
        await runner.cleanup()


async def test_a_slowloris_head_is_closed_after_the_header_timeout(kind: str) -> None:
    async with serving(kind, header_s=1.0, idle_s=30.0) as served, connection(served.port) as (reader, writer):
        started = time.monotonic()
        sender = asyncio.create_task(trickle(writer, HEAD))
        assert await still_open(reader, 0.7)
        assert await closed(reader) == b""  # nothing is sent: no response is due yet
        assert on_time(time.monotonic() - started, 1.0)
        sender.cancel()
        assert served.counts.header_timeouts == served.guard.header_timeouts == 1


async def test_the_header_timeout_applies_again_to_the_next_head_on_a_keep_alive_connection(kind: str) -> None:
    async with serving(kind, header_s=1.0, idle_s=30.0) as served, connection(served.port) as (reader, writer):
        writer.write(HEAD)
        assert (await response(reader)).startswith(b"HTTP/1.1 200")
        await asyncio.sleep(1.5)  # idle for longer than the header timeout: not a head yet, so not closed
        started = time.monotonic()
        sender = asyncio.create_task(trickle(writer, HEAD))
        assert await closed(reader) == b""
        assert on_time(time.monotonic() - started, 1.0)
        sender.cancel()
        assert served.counts.header_timeouts == 1


async def test_a_connection_that_sends_nothing_is_closed_after_the_idle_timeout(kind: str) -> None:
    async with serving(kind, header_s=0.5, idle_s=1.5) as served, connection(served.port) as (reader, _):
        started = time.monotonic()
        assert await still_open(reader, 1.0)  # the header timeout does not apply: no head has started
        assert await closed(reader) == b""
        assert on_time(time.monotonic() - started, 1.5)
        assert served.counts.header_timeouts == 0


async def test_a_keep_alive_connection_idle_after_a_response_is_closed_after_the_idle_timeout(kind: str) -> None:
    async with serving(kind, header_s=0.5, idle_s=1.5) as served, connection(served.port) as (reader, writer):
        await asyncio.sleep(1.0)  # most of the idle timeout used before the request: the clock restarts after it
        writer.write(HEAD)
        assert (await response(reader)).endswith(b"ok")
        answered = time.monotonic()
        assert await still_open(reader, 1.0)
        assert await closed(reader) == b""
        assert on_time(time.monotonic() - answered, 1.5)


async def test_a_slow_body_and_a_slow_handler_are_not_cut_by_the_header_timeout(kind: str) -> None:
    body = b"x" * 12
    head = f"POST /echo HTTP/1.1\r\nHost: test\r\nContent-Length: {len(body)}\r\n\r\n".encode()
    async with serving(kind, header_s=0.5, idle_s=30.0) as served, connection(served.port) as (reader, writer):
        writer.write(head)
        await trickle(writer, body, every_s=0.1)  # 1.2 s of body: the body's pace is the read timeout's business
        assert (await response(reader)).endswith(b"\r\n\r\n12")
        writer.write(b"GET /sleep?s=1.2 HTTP/1.1\r\nHost: test\r\n\r\n")
        assert (await response(reader)).endswith(b"slept")
        assert served.counts.header_timeouts == 0


async def test_requests_pass_while_hundreds_of_idle_and_slow_clients_are_connected(kind: str) -> None:
    async with serving(kind, header_s=2.0, idle_s=30.0) as served, contextlib.AsyncExitStack() as stack:
        idle = [await stack.enter_async_context(connection(served.port)) for _ in range(300)]
        slow = [await stack.enter_async_context(connection(served.port)) for _ in range(250)]
        senders = [asyncio.create_task(trickle(writer, HEAD)) for _, writer in slow]
        await asyncio.sleep(0.5)
        async with aiohttp.ClientSession() as session:

            async def get() -> tuple[int, str]:
                async with session.get(served.url) as answer:
                    return answer.status, await answer.text()

            results = await asyncio.gather(*(get() for _ in range(200)))
            assert results == [(200, "ok")] * 200
        assert served.guard.open >= 550  # every idle and slow client was still connected after those requests
        await asyncio.gather(*(closed(reader) for reader, _ in slow))
        assert served.counts.header_timeouts == 250
        assert all(await asyncio.gather(*(still_open(reader, 0.01) for reader, _ in idle)))
        for sender in senders:
            sender.cancel()


async def test_a_connection_over_the_cap_gets_503_and_is_counted(kind: str) -> None:
    async with serving(kind, idle_s=30.0, cap=3) as served, contextlib.AsyncExitStack() as stack:
        held = [await stack.enter_async_context(connection(served.port)) for _ in range(3)]
        async with connection(served.port) as (reader, writer):
            writer.write(HEAD)
            refused = await closed(reader)
        assert refused.startswith(b"HTTP/1.1 503 Service Unavailable\r\n")
        assert b"\r\nConnection: close\r\n" in refused
        assert refused.endswith(b"\r\n\r\ntoo many connections\n")
        async with aiohttp.ClientSession() as session, session.get(served.url) as answer:
            assert (answer.status, await answer.text()) == (503, "too many connections\n")
        assert served.counts.refused == served.guard.refused == 2
        assert served.counts.opened == 3
        assert served.guard.open == 3

        reader, writer = held.pop()
        writer.close()
        await asyncio.sleep(0.2)  # the server sees the close
        assert served.guard.open == 2
        async with aiohttp.ClientSession() as session, session.get(served.url) as answer:
            assert (answer.status, await answer.text()) == (200, "ok")
        assert served.counts.refused == 2
