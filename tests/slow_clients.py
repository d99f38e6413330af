"""Raw TCP clients for the client-limit tests: slow heads, silent connections, and reading until the close."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

SLACK_S = 1.0  # how late a close may come on a busy machine
EARLY_S = 0.05  # how early it may seem: the server's clock starts before our read returns, and uvloop's lags


def on_time(elapsed: float, limit: float) -> bool:
    """Whether a close ``elapsed`` seconds after its start came when a ``limit`` second timer says."""
    return limit - EARLY_S <= elapsed < limit + SLACK_S


HEAD = b"GET / HTTP/1.1\r\nHost: test\r\nX-Padding: " + b"a" * 40 + b"\r\n\r\n"


@asynccontextmanager
async def connection(port: int) -> AsyncIterator[tuple[asyncio.StreamReader, asyncio.StreamWriter]]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        yield reader, writer
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()


async def closed(reader: asyncio.StreamReader) -> bytes:
    """Everything the server sends until it closes the connection."""
    data = b""
    with contextlib.suppress(ConnectionError):
        while chunk := await reader.read(65536):
            data += chunk
    return data


async def still_open(reader: asyncio.StreamReader, seconds: float) -> bool:
    """Whether the server keeps the connection open (and silent) for ``seconds``."""
    try:
        await asyncio.wait_for(reader.read(1), seconds)
    except TimeoutError:
        return True
    return False


async def trickle(writer: asyncio.StreamWriter, data: bytes, every_s: float = 0.2) -> None:
    """Send ``data`` a byte at a time (a slowloris client); stops quietly when the server has closed."""
    with contextlib.suppress(ConnectionError):
        for byte in data:
            writer.write(bytes([byte]))
            await writer.drain()
            await asyncio.sleep(every_s)


async def response(reader: asyncio.StreamReader) -> bytes:
    """One response with a Content-Length body, read off a keep-alive connection."""
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    length = next(int(line.split(b":")[1]) for line in lines if line.lower().startswith(b"content-length"))
    return head + await reader.readexactly(length)
