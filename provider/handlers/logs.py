"""/system/logs: NDJSON, flushed per line."""

from __future__ import annotations

from aiohttp import web

from provider.keys import ORCHESTRATOR
from provider.logs import LogRequest, read_logs, select
from servicekit import json_text


async def function_logs(request: web.Request) -> web.StreamResponse:
    log_request = LogRequest.parse(request.query)
    orchestrator = request.app[ORCHESTRATOR]
    containers = select(await orchestrator.containers_of(log_request.namespace, log_request.name), log_request.instance)
    response = web.StreamResponse(headers={"Content-Type": "application/x-ndjson", "Connection": "Keep-Alive"})
    response.enable_chunked_encoding()
    await response.prepare(request)
    async for message in read_logs(orchestrator.runtime, log_request, containers):
        await response.write(json_text.dumps_bytes(message.to_json()) + b"\n")
    await response.write_eof()
    return response
