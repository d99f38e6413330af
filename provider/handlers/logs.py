"""/system/logs: NDJSON, flushed per line; for either backend."""

from __future__ import annotations

from aiohttp import web

from provider.keys import FUNCTIONS
from provider.logs import LogRequest
from servicekit import json_text


async def function_logs(request: web.Request) -> web.StreamResponse:
    log_request = LogRequest.parse(request.query)
    lines = await request.app[FUNCTIONS].open_logs(log_request)  # a missing function: 404 before the answer
    response = web.StreamResponse(headers={"Content-Type": "application/x-ndjson", "Connection": "Keep-Alive"})
    response.enable_chunked_encoding()
    await response.prepare(request)
    async for message in lines:
        await response.write(json_text.dumps_bytes(message.to_json()) + b"\n")
    await response.write_eof()
    return response
