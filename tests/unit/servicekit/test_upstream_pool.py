"""servicekit.upstream's pool against a real keep-alive server on loopback: reuse, and no reuse once stale."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from servicekit import upstream
from servicekit.upstream import UpstreamPool

REQUEST = b"GET / HTTP/1.1\r\nHost: test\r\n\r\n"


@pytest.fixture
async def server() -> AsyncIterator[tuple[int, list[int]]]:
    """A keep-alive server answering ``ok`` to every request; the list counts the connections it accepted."""
    accepted: list[int] = []

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        accepted.append(1)
        try:
            while await reader.readuntil(b"\r\n\r\n"):
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
        await listening.wait_closed()


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
