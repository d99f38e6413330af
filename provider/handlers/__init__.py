"""HTTP handlers of the faas-provider API, one module per group of routes; errors are raised, not built."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any

from aiohttp import web

from provider.errors import ProviderError, RequestTooLargeError
from provider.models import parse_json_object
from servicekit import json_text


async def read_json(request: web.Request, what: str) -> dict[str, object]:
    try:
        body = await request.read()
    except web.HTTPRequestEntityTooLarge:
        raise RequestTooLargeError(f"the request body is over the limit of {request.client_max_size} bytes") from None
    return parse_json_object(body, what)


def empty(status: int = 200) -> web.Response:
    return web.Response(status=status)


Progress = Callable[[dict[str, object]], None]


async def stream_ndjson(
    request: web.Request,
    work: Callable[[Progress], Coroutine[Any, Any, dict[str, object]]],
    *,
    fail_early: bool = False,
) -> web.StreamResponse:
    """Run ``work`` and answer NDJSON: each progress object it reports as it comes, then the object it returns,
    or ``{"error"}`` when it raises a ProviderError. With ``fail_early``, an error before any progress is raised
    instead, so the error middleware answers with its status (nothing was streamed yet)."""
    lines: asyncio.Queue[dict[str, object]] = asyncio.Queue()
    progressed = asyncio.Event()

    def report(line: dict[str, object]) -> None:
        lines.put_nowait(line)
        progressed.set()

    task = asyncio.create_task(work(report))
    if fail_early:
        waiter = asyncio.ensure_future(progressed.wait())
        await asyncio.wait({waiter, task}, return_when=asyncio.FIRST_COMPLETED)
        waiter.cancel()
        if task.done() and not progressed.is_set():
            task.result()  # raises the failure
    response = web.StreamResponse(headers={"Content-Type": "application/x-ndjson"})
    await response.prepare(request)
    while not task.done() or not lines.empty():
        getter = asyncio.ensure_future(lines.get())
        await asyncio.wait({getter, task}, return_when=asyncio.FIRST_COMPLETED)
        if getter.done():
            await response.write(json_text.dumps_bytes(getter.result()) + b"\n")
        else:
            getter.cancel()
    try:
        last = task.result()
    except ProviderError as e:
        last = {"error": str(e)}
    await response.write(json_text.dumps_bytes(last) + b"\n")
    await response.write_eof()
    return response
