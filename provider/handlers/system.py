"""/system/info and /healthz."""

from __future__ import annotations

from aiohttp import web

from servicekit.version import __version__, commit_sha


async def info(request: web.Request) -> web.Response:
    del request
    return web.json_response(
        {
            "provider": "pyfaasd",
            "version": {"sha": commit_sha(), "release": __version__},
            "orchestration": "docker",
        }
    )


async def healthz(request: web.Request) -> web.Response:
    del request
    return web.Response(status=200)
