"""HTTP handlers of the faas-provider API, one module per group of routes; errors are raised, not built."""

from __future__ import annotations

from aiohttp import web

from provider.errors import RequestTooLargeError
from provider.models import parse_json_object


async def read_json(request: web.Request, what: str) -> dict[str, object]:
    try:
        body = await request.read()
    except web.HTTPRequestEntityTooLarge:
        raise RequestTooLargeError(f"the request body is over the limit of {request.client_max_size} bytes") from None
    return parse_json_object(body, what)


def empty(status: int = 200) -> web.Response:
    return web.Response(status=status)
