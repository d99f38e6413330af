"""servicekit.lean_server with no aiohttp behind it (``LeanSite``, the watchdog's http and python modes), and
servicekit.tunnel, over real sockets: raw TCP clients, and a raw TCP upstream for the tunnel."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

from servicekit.client_limits import ClientGuard, ClientLimits, LeanSite
from servicekit.client_side import Answer
from servicekit.lean_server import LeanHandler, LeanReply, LeanRequest, LeanServer
from servicekit.tunnel import UpstreamHeadTimeoutError, tunnel
from tests.slow_clients import closed, connection, response

Upstream = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


async def hello(request: LeanRequest, reply: LeanReply) -> None:
    reply.send(Answer.text(200, f"hello:{request.raw_path}"))


async def early(request: LeanRequest, reply: LeanReply) -> None:
    reply.send(Answer.text(413, "too big\n"))  # without reading the body


@asynccontextmanager
async def lean_alone(route: Callable[[LeanRequest], LeanHandler | None]) -> AsyncIterator[int]:
    lean = LeanServer(route, header_timeout_s=5.0, idle_timeout_s=30.0)
    site = LeanSite(lean, "127.0.0.1", 0, ClientGuard(ClientLimits(5.0, 30.0, 100)))
    await site.start()
    try:
        yield site.port
    finally:
        await site.stop(2.0)


@asynccontextmanager
async def upstream(serve: Upstream) -> AsyncIterator[int]:
    """A raw TCP upstream on a free port: ``serve`` for each connection, which is closed when it returns."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await serve(reader, writer)
        finally:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()


def tunnelling(port: int, head_timeout_s: float | None = 5.0) -> Callable[[LeanRequest], LeanHandler | None]:
    async def through(request: LeanRequest, reply: LeanReply) -> None:
        if request.upgraded is None:
            await hello(request, reply)
            return
        head = b"GET /up HTTP/1.1\r\nConnection: Upgrade\r\nUpgrade: shout\r\n\r\n"
        try:
            await tunnel(request, reply, ("127.0.0.1", port), head, head_timeout_s)
        except UpstreamHeadTimeoutError:
            reply.send(Answer.text(504, "slow upstream\n"))
        except ConnectionRefusedError:
            reply.send(Answer.text(503, "refused\n"))

    return lambda request: through


UPGRADE = b"GET /ws HTTP/1.1\r\nHost: t\r\nConnection: Upgrade\r\nUpgrade: shout\r\n\r\n"


async def test_a_path_no_route_takes_is_404_and_the_connection_kept() -> None:
    async with lean_alone(lambda r: hello if r.path == "/hi" else None) as port, connection(port) as (reader, writer):
        writer.write(b"GET /nothing HTTP/1.1\r\nHost: t\r\n\r\n")
        answer = await response(reader)
        assert answer.startswith(b"HTTP/1.1 404 Not Found\r\n")
        assert answer.endswith(b"\r\n\r\n404 page not found\n")
        writer.write(b"GET /hi HTTP/1.1\r\nHost: t\r\n\r\n")
        assert (await response(reader)).endswith(b"hello:/hi")


async def test_a_malformed_first_request_is_400_and_closed() -> None:
    async with lean_alone(lambda r: hello) as port, connection(port) as (reader, writer):
        writer.write(b"GARBAGE\r\n\r\n")
        answer = await closed(reader)
        assert answer.startswith(b"HTTP/1.1 400 Bad Request\r\n")


async def test_an_answer_before_the_body_arrived_closes_the_connection() -> None:
    async with lean_alone(lambda r: early) as port, connection(port) as (reader, writer):
        writer.write(b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 100000\r\n\r\n" + b"x" * 10)
        answer = await closed(reader)
        assert answer.startswith(b"HTTP/1.1 413 ")
        assert b"\r\nConnection: close\r\n" in answer  # the client must not reuse it: the rest was never read


async def test_an_upgrade_switches_and_bytes_flow_both_ways_including_those_sent_with_the_head() -> None:
    async def shout(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        assert head.startswith(b"GET /up HTTP/1.1\r\n")
        writer.write(b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: shout\r\n\r\n")
        while data := await reader.read(1024):
            writer.write(data.upper())
            if data.endswith(b"bye"):
                return

    async with (
        upstream(shout) as port,
        lean_alone(tunnelling(port)) as lean_port,
        connection(lean_port) as (reader, writer),
    ):
        writer.write(UPGRADE + b"early ")  # bytes right behind the head belong to the new protocol
        head = await reader.readuntil(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 101 Switching Protocols\r\n")
        assert await reader.readexactly(6) == b"EARLY "
        writer.write(b"then bye")
        assert await closed(reader) == b"THEN BYE"  # the upstream ended: so does the client's connection


async def test_a_client_that_goes_away_ends_the_tunnel_upstream() -> None:
    ended = asyncio.Event()

    async def wait_for_end(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: shout\r\n\r\n")
        await reader.read()  # until the tunnel closes this connection
        ended.set()

    async with upstream(wait_for_end) as port, lean_alone(tunnelling(port)) as lean_port:
        async with connection(lean_port) as (reader, writer):
            writer.write(UPGRADE)
            await reader.readuntil(b"\r\n\r\n")
        await asyncio.wait_for(ended.wait(), 5)  # the client has closed: the tunnel closes the upstream's side


async def test_an_upgrade_the_upstream_refuses_passes_its_answer_and_closes() -> None:
    async def refuse(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 5\r\n\r\nnope!")
        await asyncio.sleep(30)  # keeps its connection: the answer's framing, not its close, ends the exchange

    async with (
        upstream(refuse) as port,
        lean_alone(tunnelling(port)) as lean_port,
        connection(lean_port) as (reader, writer),
    ):
        writer.write(UPGRADE)
        answer = await asyncio.wait_for(closed(reader), 5)
        assert answer == b"HTTP/1.1 400 Bad Request\r\nContent-Length: 5\r\n\r\nnope!"


async def test_an_upstream_that_does_not_answer_the_upgrade_in_time_is_a_timeout() -> None:
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await asyncio.sleep(30)

    async with (
        upstream(silent) as port,
        lean_alone(tunnelling(port, head_timeout_s=0.3)) as lean_port,
        connection(lean_port) as (reader, writer),
    ):
        writer.write(UPGRADE)
        assert (await asyncio.wait_for(closed(reader), 5)).startswith(b"HTTP/1.1 504 ")


async def test_an_upstream_that_refuses_the_connection_is_answered_before_anything_was_sent() -> None:
    async with upstream(lambda r, w: asyncio.sleep(0)) as port:
        pass  # closed: nothing listens on the port now
    async with lean_alone(tunnelling(port)) as lean_port, connection(lean_port) as (reader, writer):
        writer.write(UPGRADE)
        assert (await asyncio.wait_for(closed(reader), 5)).startswith(b"HTTP/1.1 503 ")


async def test_a_clone_has_the_head_at_another_target_and_no_body() -> None:
    seen: list[tuple[str, str, bytes, str | None]] = []

    async def probe(request: LeanRequest, reply: LeanReply) -> None:
        clone = request.clone(rel_url="/ready?x=1")
        seen.append((clone.raw_path, clone.path, await clone.read(), clone.headers.get("X-Probe")))
        assert clone.headers.get("Content-Length") is None
        reply.send(Answer.text(200, "ok"))

    async with lean_alone(lambda r: probe) as port, connection(port) as (reader, writer):
        writer.write(b"POST /_/ready HTTP/1.1\r\nHost: t\r\nX-Probe: yes\r\nContent-Length: 3\r\n\r\nabc")
        await response(reader)
    assert seen == [("/ready?x=1", "/ready", b"", "yes")]
