"""servicekit.lean_server over real sockets: what it answers itself, and handing a connection to aiohttp.

The lean server answers paths under ``/hot`` (``lean:<path>``); the aiohttp app behind it answers every path
(``aiohttp:<path>``), so each answer says which server gave it. Clients are raw TCP, so pipelining, framing and
the exact bytes are under the test's control.
"""

from __future__ import annotations

import asyncio
import io
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import aiohttp
from aiohttp import web

from servicekit.aiohttp_site import LimitedSite
from servicekit.client_limits import ClientGuard, ClientLimits
from servicekit.client_side import Answer
from servicekit.lean_server import LeanHandler, LeanReply, LeanRequest, LeanServer
from tests.slow_clients import closed, connection, response


def app() -> web.Application:
    async def anything(request: web.Request) -> web.Response:
        body = await request.read()
        return web.Response(text=f"aiohttp:{request.method}:{request.path_qs}:{len(body)}:{body[:20].decode()}")

    async def websocket(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        async for message in ws:
            await ws.send_str(f"echo:{message.data}")
        return ws

    application = web.Application()
    application.router.add_get("/ws", websocket)
    application.router.add_route("*", "/{tail:.*}", anything)
    return application


async def hot(request: LeanRequest, reply: LeanReply) -> None:
    body = await request.read()
    reply.send(Answer.text(200, f"lean:{request.method}:{request.raw_path}:{len(body)}"))


async def slow(request: LeanRequest, reply: LeanReply) -> None:
    await asyncio.sleep(float(request.query["s"]))
    reply.send(Answer.text(200, "slept"))


async def crash(request: LeanRequest, reply: LeanReply) -> None:
    raise RuntimeError("the handler's own bug")


def route(request: LeanRequest) -> LeanHandler | None:
    if request.path == "/hot/slow":
        return slow
    if request.path == "/hot/crash":
        return crash
    return hot if request.path.startswith("/hot") else None


@asynccontextmanager
async def serving(header_s: float = 5.0, idle_s: float = 30.0) -> AsyncIterator[tuple[int, LeanServer]]:
    application = app()
    lean = LeanServer(route, header_timeout_s=header_s, idle_timeout_s=idle_s)

    async def drain(_app: web.Application) -> None:
        await lean.shutdown(5.0)

    application.on_shutdown.append(drain)
    runner = web.AppRunner(application, access_log=None, handle_signals=False)
    await runner.setup()
    site = LimitedSite(runner, "127.0.0.1", 0, ClientGuard(ClientLimits(header_s, idle_s, 1000)), lean=lean)
    await site.start()
    try:
        yield site.port, lean
    finally:
        await runner.cleanup()


def body_of(answer: bytes) -> bytes:
    return answer.split(b"\r\n\r\n", 1)[1]


async def test_a_hot_path_is_answered_by_the_lean_server_and_the_connection_kept() -> None:
    async with serving() as (port, lean), connection(port) as (reader, writer):
        for i in range(3):
            writer.write(b"GET /hot/%d?q=1 HTTP/1.1\r\nHost: t\r\n\r\n" % i)
            answer = await response(reader)
            assert answer.startswith(b"HTTP/1.1 200 OK\r\n")
            assert body_of(answer) == b"lean:GET:/hot/%d?q=1:0" % i
            assert b"\r\nDate: " in answer
        assert len(lean.connections) == 1


async def test_a_first_request_elsewhere_goes_to_aiohttp_with_the_connection() -> None:
    async with serving() as (port, lean), connection(port) as (reader, writer):
        writer.write(b"GET /cold HTTP/1.1\r\nHost: t\r\n\r\n")
        assert body_of(await response(reader)) == b"aiohttp:GET:/cold:0:"
        writer.write(b"GET /hot/x HTTP/1.1\r\nHost: t\r\n\r\n")  # the connection is aiohttp's for good
        assert body_of(await response(reader)) == b"aiohttp:GET:/hot/x:0:"
        assert not lean.connections


async def test_pipelined_requests_are_answered_in_order_across_the_handover() -> None:
    body = b"0123456789abcdef" * 3
    chunked = b"".join(b"%x\r\n%s\r\n" % (len(part), part) for part in (body[:10], body[10:])) + b"0\r\n\r\n"
    requests = (
        b"GET /hot/slow?s=0.3 HTTP/1.1\r\nHost: t\r\n\r\n"
        b"POST /hot/a HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\n\r\nabc"
        b"POST /cold/b HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
        + chunked
        + b"GET /hot/c HTTP/1.1\r\nHost: t\r\n\r\n"
    )
    async with serving() as (port, _), connection(port) as (reader, writer):
        writer.write(requests)  # one write: llhttp parses them all at once
        answers = [body_of(await response(reader)) for _ in range(4)]
    assert answers == [
        b"slept",
        b"lean:POST:/hot/a:3",
        b"aiohttp:POST:/cold/b:48:" + body[:20],
        b"aiohttp:GET:/hot/c:0:",  # after the handover, aiohttp answers every request of the connection
    ]


async def test_a_websocket_after_a_lean_request_is_aiohttps() -> None:
    async with serving() as (port, _), aiohttp.ClientSession() as session:
        async with session.get(f"http://127.0.0.1:{port}/hot/first") as answer:
            assert await answer.text() == "lean:GET:/hot/first:0"
        async with session.ws_connect(f"http://127.0.0.1:{port}/ws") as ws:  # the same pooled connection
            await ws.send_str("hi")
            assert (await ws.receive()).data == "echo:hi"


async def test_a_large_body_streams_through_with_flow_control() -> None:
    data = b"x" * (5 * 1024 * 1024)
    async with (
        serving() as (port, _),
        aiohttp.ClientSession() as session,
        session.post(f"http://127.0.0.1:{port}/hot/big", data=io.BytesIO(data)) as answer,
    ):
        assert await answer.text() == f"lean:POST:/hot/big:{len(data)}"


async def test_expect_continue_gets_100_before_the_body_is_sent() -> None:
    async with serving() as (port, _), connection(port) as (reader, writer):
        writer.write(b"POST /hot/e HTTP/1.1\r\nHost: t\r\nContent-Length: 4\r\nExpect: 100-continue\r\n\r\n")
        assert await reader.readuntil(b"\r\n\r\n") == b"HTTP/1.1 100 Continue\r\n\r\n"
        writer.write(b"body")
        assert body_of(await response(reader)) == b"lean:POST:/hot/e:4"


async def test_http_1_0_is_answered_as_1_0_and_closed_unless_kept_alive() -> None:
    async with serving() as (port, _):
        async with connection(port) as (reader, writer):
            writer.write(b"GET /hot/old HTTP/1.0\r\n\r\n")
            answer = await closed(reader)
            assert answer.startswith(b"HTTP/1.0 200 OK\r\n")
            assert b"\r\nConnection: close\r\n" in answer
        async with connection(port) as (reader, writer):
            writer.write(b"GET /hot/old HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
            assert b"\r\nConnection: keep-alive\r\n" in await response(reader)
            writer.write(b"GET /hot/again HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
            assert body_of(await response(reader)) == b"lean:GET:/hot/again:0"


async def test_a_malformed_request_gets_400_from_whichever_server_has_the_connection() -> None:
    async with serving() as (port, _):
        async with connection(port) as (reader, writer):
            writer.write(b"NOT HTTP AT ALL\r\n\r\n")
            assert b" 400 Bad Request\r\n" in (await closed(reader)).split(b"\r\n", 1)[0] + b"\r\n"  # aiohttp's
        async with connection(port) as (reader, writer):
            writer.write(b"GET /hot/ok HTTP/1.1\r\nHost: t\r\n\r\n")
            assert body_of(await response(reader)) == b"lean:GET:/hot/ok:0"
            writer.write(b"GET /hot/x HTTP/1.1\r\nContent-Length: nope\r\n\r\n")
            answer = await closed(reader)
            assert answer.startswith(b"HTTP/1.1 400 Bad Request\r\n")
            assert b"\r\nConnection: close\r\n" in answer


async def test_a_crashing_handler_is_a_500_and_the_connection_lives_on() -> None:
    async with serving() as (port, _), connection(port) as (reader, writer):
        writer.write(b"GET /hot/crash HTTP/1.1\r\nHost: t\r\n\r\n")
        assert (await response(reader)).startswith(b"HTTP/1.1 500 Internal Server Error\r\n")
        writer.write(b"GET /hot/after HTTP/1.1\r\nHost: t\r\n\r\n")
        assert body_of(await response(reader)) == b"lean:GET:/hot/after:0"


async def test_shutdown_lets_a_request_in_flight_finish_and_closes_idle_connections() -> None:
    async with (
        serving() as (port, lean),
        connection(port) as (idle_reader, idle_writer),
        connection(port) as (busy_reader, busy_writer),
    ):
        idle_writer.write(b"GET /hot/1 HTTP/1.1\r\nHost: t\r\n\r\n")
        await response(idle_reader)
        busy_writer.write(b"GET /hot/slow?s=0.5 HTTP/1.1\r\nHost: t\r\n\r\n")
        await asyncio.sleep(0.1)
        draining = asyncio.create_task(lean.shutdown(5.0))
        assert await closed(idle_reader) == b""
        answer = await closed(busy_reader)  # answered, then closed
        assert answer.endswith(b"slept")
        assert b"\r\nConnection: close\r\n" in answer
        await draining
        assert not lean.connections


async def test_a_client_that_goes_away_cancels_its_request() -> None:
    cancelled = asyncio.Event()

    async def waits(request: LeanRequest, reply: LeanReply) -> None:
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            cancelled.set()
            raise

    lean = LeanServer(lambda request: waits, header_timeout_s=5, idle_timeout_s=30)
    runner = web.AppRunner(app(), access_log=None, handle_signals=False)
    await runner.setup()
    site = LimitedSite(runner, "127.0.0.1", 0, ClientGuard(ClientLimits(5, 30, 1000)), lean=lean)
    await site.start()
    try:
        async with connection(site.port) as (_, writer):
            writer.write(b"GET /wait HTTP/1.1\r\nHost: t\r\n\r\n")
            await asyncio.sleep(0.1)
        await asyncio.wait_for(cancelled.wait(), 5)
    finally:
        await runner.cleanup()


async def test_a_head_over_the_limit_is_refused_with_431() -> None:
    async with serving() as (port, _), connection(port) as (reader, writer):
        writer.write(b"GET /hot/x HTTP/1.1\r\nHost: t\r\n")
        for _ in range(100):  # 100 KiB of headers, in pieces
            writer.write(b"X-Filler: " + b"a" * 1012 + b"\r\n")
            await writer.drain()
        answer = await closed(reader)
        assert answer.startswith(b"HTTP/1.1 431 Request Header Fields Too Large\r\n")


async def test_a_websocket_upgrade_pipelined_behind_a_slow_lean_request_waits_its_turn() -> None:
    key = "dGhlIHNhbXBsZSBub25jZQ=="
    upgrade = (
        "GET /ws HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
    ).encode()
    frame = bytes([0x81, 0x82, 1, 2, 3, 4]) + bytes(b ^ m for b, m in zip(b"hi", (1, 2), strict=True))
    async with serving() as (port, _), connection(port) as (reader, writer):
        writer.write(b"GET /hot/slow?s=0.3 HTTP/1.1\r\nHost: t\r\n\r\n" + upgrade + frame)
        assert body_of(await response(reader)) == b"slept"
        switching = await reader.readuntil(b"\r\n\r\n")
        assert switching.startswith(b"HTTP/1.1 101 Switching Protocols\r\n")
        echoed = await reader.readexactly(2 + len("echo:hi"))
        assert echoed == bytes([0x81, len("echo:hi")]) + b"echo:hi"
