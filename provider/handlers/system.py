"""/system/info and /healthz; for either backend."""

from __future__ import annotations

from aiohttp import web

from provider.keys import CONFIG, FUNCTIONS
from servicekit import json_text
from servicekit.version import __version__, commit_sha


async def info(request: web.Request) -> web.Response:
    return web.json_response(
        {
            "provider": "pyfaasd",
            "version": {"sha": commit_sha(), "release": __version__},
            "orchestration": str(request.app[CONFIG].backend),
        },
        dumps=json_text.dumps,
    )


async def healthz(request: web.Request) -> web.Response:
    """200, or 503 with the reason while the provider cannot keep functions running (docker backend: it does not
    follow Docker's events, so crashed replicas would not be restarted, or the bridge is broken and being
    repaired)."""
    problem = request.app[FUNCTIONS].problem()
    if problem is not None:
        return web.Response(status=503, text=problem + "\n", content_type="text/plain")
    return web.Response(status=200)
