"""servicekit.upstream's pool against a real keep-alive server on loopback: reuse, no reuse once stale, and the
deadline a connection keeps for the exchange in progress."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from servicekit import upstream
from servicekit.relay import exchange, read_whole
from servicekit.upstream import UpstreamPool

REQUEST = b"GET / HTTP/1.1\r\nHost: test\r\n\r\n"


@pytest.fixture
async def server() -> AsyncIterator[tuple[int, list[int]]]:
    """A keep-alive server answering ``ok`` to every request but ``GET /slow``, which it never answers; the list
    counts the connections it accepted."""
    accepted: list[int] = []

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        accepted.append(1)
        try:
            while head := await reader.readuntil(b"\r\n\r\n"):
                if head.startswith(b"GET /slow"):
                    await asyncio.sleep(3600)
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    listening = await asyncio.start_server(serve, "127.0.0.1", 0)
    try:
        yield listening.sockets[0].getsockname()[1], accepted
    finally:
        listening.close()


async def get(pool: UpstreamPool) -> bytes:
    connection = await pool.connect()
    await connection.write(REQUEST)
    head = await connection.read_head("GET")
    body = await connection.read_body(head)
    pool.release(connection, head)
    return body


async def test_an_idle_connection_is_reused_until_it_is_older_than_idle_keep(
    server: tuple[int, list[int]], monkeypatch: pytest.MonkeyPatch
) -> None:
    port, accepted = server
    monkeypatch.setattr(upstream, "IDLE_KEEP_S", 0.3)
    pool = UpstreamPool("127.0.0.1", port)
    try:
        assert await get(pool) == b"ok"
        assert await get(pool) == b"ok"
        assert len(accepted) == 1  # kept alive and reused
        await asyncio.sleep(0.5)  # longer than IDLE_KEEP_S: the server might be closing it now
        assert await get(pool) == b"ok"
        assert len(accepted) == 2  # a new connection, not the stale one
    finally:
        pool.close()


async def call(pool: UpstreamPool, path: str, deadline: float | None) -> bytes:
    connection, head = await exchange(
        pool, b"GET %s HTTP/1.1\r\nHost: t\r\n\r\n" % path.encode(), b"", None, deadline=deadline
    )
    return await read_whole(pool, connection, head)


async def test_a_deadline_bounds_the_wait_for_the_answer(server: tuple[int, list[int]]) -> None:
    pool = UpstreamPool("127.0.0.1", server[0])
    loop = asyncio.get_running_loop()
    try:
        started = loop.time()
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(10):  # (a guard: the deadline below is what must end the wait)
                await call(pool, "/slow", loop.time() + 0.2)
        assert 0.15 < loop.time() - started < 5
    finally:
        pool.close()


async def test_a_reused_connection_keeps_to_each_exchanges_own_deadline(server: tuple[int, list[int]]) -> None:
    """The connection's one timer was armed for the first exchange's far deadline: a later exchange with a nearer
    one still ends at its own, and one that answered in time is not failed by an earlier deadline."""
    pool = UpstreamPool("127.0.0.1", server[0])
    loop = asyncio.get_running_loop()
    try:
        assert await call(pool, "/fast", loop.time() + 30) == b"ok"
        assert await call(pool, "/fast", loop.time() + 0.1) == b"ok"
        await asyncio.sleep(0.2)  # past the second deadline: nothing waits, so nothing fails
        assert await call(pool, "/fast", loop.time() + 30) == b"ok"
        started = loop.time()
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(10):
                await call(pool, "/slow", loop.time() + 0.2)
        assert loop.time() - started < 5  # its own deadline, not the 30 s one the timer was armed for
    finally:
        pool.close()


async def test_an_idle_connection_has_no_deadline(server: tuple[int, list[int]]) -> None:
    pool = UpstreamPool("127.0.0.1", server[0])
    loop = asyncio.get_running_loop()
    try:
        assert await call(pool, "/fast", loop.time() + 0.1) == b"ok"
        await asyncio.sleep(0.2)
        assert await call(pool, "/fast", None) == b"ok"  # the same connection, its old deadline long gone
    finally:
        pool.close()
