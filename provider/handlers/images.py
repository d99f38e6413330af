"""/system/images/pull (NDJSON progress through the mirrors) and /system/images/refresh (pull again, roll
only the functions whose image changed)."""

from __future__ import annotations

import asyncio
import json

from aiohttp import web

from provider.errors import InvalidRequestError, ProviderError
from provider.handlers import read_json
from provider.keys import IMAGES, ORCHESTRATOR
from provider.models import DEFAULT_NAMESPACE
from provider.registries import Reference


async def pull_image(request: web.Request) -> web.StreamResponse:
    """Progress lines ``{"status","layer","current","total"}``, then the result or ``{"error"}``. A pull that
    fails before any progress (an unknown image, no registry answering) is a 400 naming the sources tried."""
    body = await read_json(request, "pull request")
    image = str(body.get("image") or "").strip()
    if not image:
        raise InvalidRequestError("image is required")
    Reference.parse(image)
    lines: asyncio.Queue[dict[str, object]] = asyncio.Queue()
    pulling = asyncio.create_task(request.app[IMAGES].pull(image, lines.put_nowait))
    first = asyncio.ensure_future(lines.get())
    await asyncio.wait({first, pulling}, return_when=asyncio.FIRST_COMPLETED)
    if not first.done():
        first.cancel()
        if pulling.exception() is not None:
            raise pulling.exception()  # type: ignore[misc]
    response = web.StreamResponse(headers={"Content-Type": "application/x-ndjson"})
    await response.prepare(request)
    if first.done() and not first.cancelled():
        await response.write(json.dumps(first.result()).encode() + b"\n")
    while not pulling.done() or not lines.empty():
        getter = asyncio.ensure_future(lines.get())
        await asyncio.wait({getter, pulling}, return_when=asyncio.FIRST_COMPLETED)
        if getter.done():
            await response.write(json.dumps(getter.result()).encode() + b"\n")
        else:
            getter.cancel()
    try:
        last: dict[str, object] = {**pulling.result().to_json()}
    except ProviderError as e:
        last = {"error": str(e)}
    await response.write(json.dumps(last).encode() + b"\n")
    await response.write_eof()
    return response


async def refresh_images(request: web.Request) -> web.Response:
    """``{"functions": ["name", "name.namespace"]}`` (``{}``: every function)."""
    body = await read_json(request, "refresh request")
    names = body.get("functions") or []
    if not isinstance(names, list) or not all(isinstance(n, str) and n for n in names):
        raise InvalidRequestError("functions must be a list of function names (name or name.namespace)")
    keys = [(n.partition(".")[2] or DEFAULT_NAMESPACE, n.partition(".")[0]) for n in names]
    result = await request.app[ORCHESTRATOR].refresh(keys or None)
    return web.json_response(result)
