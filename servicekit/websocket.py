"""Relaying an accepted websocket upgrade: messages both ways until either side closes.

Used by the gateway's /function proxy (the gateway may import this module:
docs/architecture.md, "Decisions → Packages").
"""

from __future__ import annotations

import asyncio

import aiohttp
from aiohttp import web

Socket = web.WebSocketResponse | aiohttp.ClientWebSocketResponse


async def relay_websocket(request: web.Request, upstream: aiohttp.ClientWebSocketResponse) -> web.WebSocketResponse:
    """Accept the client's upgrade with the upstream's chosen subprotocol and relay text and binary messages
    both ways; when one side closes, close the other with its close code. Returns the finished response."""
    client = web.WebSocketResponse(protocols=(upstream.protocol,) if upstream.protocol else ())
    await client.prepare(request)
    async with upstream:
        tasks = [asyncio.create_task(_pump(client, upstream)), asyncio.create_task(_pump(upstream, client))]
        try:
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
    await client.close()
    return client


async def _pump(source: Socket, sink: Socket) -> None:
    async for message in source:
        if message.type is aiohttp.WSMsgType.TEXT:
            await sink.send_str(message.data)
        elif message.type is aiohttp.WSMsgType.BINARY:
            await sink.send_bytes(message.data)
    await sink.close(code=source.close_code or aiohttp.WSCloseCode.OK)
