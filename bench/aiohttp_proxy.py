"""A minimal aiohttp reverse proxy: the plain-Python baseline the benches put beside the gateway and the watchdog.

One process on uvloop, one pooled client session, the request and the response each read whole and passed on
with the hop-by-hop headers dropped. No limits, metrics, logs or streaming: what aiohttp costs with nothing else.

Run: ``python bench/aiohttp_proxy.py PORT UPSTREAM_URL`` (listens on 127.0.0.1:PORT until SIGTERM).
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import aiohttp
import uvloop
from aiohttp import web

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from servicekit.headers import HOP_BY_HOP

# Never copied across a proxy: the connection's own headers, and those aiohttp writes itself.
DROPPED = HOP_BY_HOP | {"host", "content-length"}


async def serve(port: int, upstream: str) -> None:
    session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0), auto_decompress=False)

    async def forward(request: web.Request) -> web.Response:
        headers = {k: v for k, v in request.headers.items() if k.lower() not in DROPPED}
        body = await request.read()
        async with session.request(
            request.method, upstream + request.rel_url.raw_path_qs, headers=headers, data=body
        ) as reply:
            payload = await reply.read()
            out = {k: v for k, v in reply.headers.items() if k.lower() not in DROPPED}
            return web.Response(status=reply.status, headers=out, body=payload)

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", forward)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        await asyncio.Event().wait()  # until SIGTERM ends the process
    finally:
        await runner.cleanup()
        await session.close()


def main() -> int:
    uvloop.run(serve(int(sys.argv[1]), sys.argv[2].rstrip("/")))
    return 0


if __name__ == "__main__":
    sys.exit(main())
