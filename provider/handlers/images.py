"""/system/images/pull (NDJSON progress through the mirrors) and /system/images/refresh (pull again, roll
only the functions whose image changed)."""

from __future__ import annotations

from aiohttp import web

from provider.errors import InvalidRequestError
from provider.handlers import Progress, read_json, stream_ndjson
from provider.keys import IMAGES, ORCHESTRATOR
from provider.models import DEFAULT_NAMESPACE
from provider.registries import Reference
from servicekit import json_text


async def pull_image(request: web.Request) -> web.StreamResponse:
    """Progress lines ``{"status","layer","current","total"}``, then the result or ``{"error"}``. A pull that
    fails before any progress (an unknown image, no registry answering) is a 400 naming the sources tried."""
    body = await read_json(request, "pull request")
    image = str(body.get("image") or "").strip()
    if not image:
        raise InvalidRequestError("image is required")
    Reference.parse(image)
    puller = request.app[IMAGES]

    async def pull(report: Progress) -> dict[str, object]:
        return {**(await puller.pull(image, report)).to_json()}

    return await stream_ndjson(request, pull, fail_early=True)


async def refresh_images(request: web.Request) -> web.Response:
    """``{"functions": ["name", "name.namespace"]}`` (``{}``: every function)."""
    body = await read_json(request, "refresh request")
    names = body.get("functions") or []
    if not isinstance(names, list) or not all(isinstance(n, str) and n for n in names):
        raise InvalidRequestError("functions must be a list of function names (name or name.namespace)")
    keys = [(n.partition(".")[2] or DEFAULT_NAMESPACE, n.partition(".")[0]) for n in names]
    result = await request.app[ORCHESTRATOR].refresh(keys or None)
    return web.json_response(result, dumps=json_text.dumps)
