"""``static`` mode: files under ``static_path``, with index.html for directories, 404 and Range requests.

Unlike Go's http.FileServer there is no directory listing: a directory without index.html is 404.
"""

from __future__ import annotations

from pathlib import Path

from aiohttp import web

from servicekit.aiohttp_reply import AiohttpReply
from servicekit.client_side import ClientRequest, Reply
from watchdog.config import WatchdogConfig
from watchdog.errors import StartupError


class StaticExecutor:
    def __init__(self, config: WatchdogConfig) -> None:
        self._root = Path(config.static_path).resolve()

    async def start(self) -> None:
        if not self._root.is_dir():
            raise StartupError(f"static_path: {self._root} is not a directory")

    async def close(self) -> None:
        return None

    lean = False  # aiohttp's objects: its calls are never the lean server's

    async def invoke(self, request: ClientRequest, timeout_s: float | None, reply: Reply) -> None:
        assert isinstance(request, web.Request)  # not lean: aiohttp serves this mode (watchdog/aiohttp_app.py)
        assert isinstance(reply, AiohttpReply)
        reply.response = await self._answer(request, timeout_s)

    async def _answer(self, request: web.Request, timeout_s: float | None) -> web.StreamResponse:
        if request.method not in ("GET", "HEAD"):
            return web.Response(status=405, headers={"Allow": "GET, HEAD"}, text="405 method not allowed\n")
        target = (self._root / request.path.lstrip("/")).resolve()
        if not target.is_relative_to(self._root):
            return _not_found()
        if target.is_dir():
            if not request.path.endswith("/"):
                location = request.path + "/" + (f"?{request.query_string}" if request.query_string else "")
                return web.Response(status=301, headers={"Location": location})
            target = target / "index.html"
        if not target.is_file():
            return _not_found()
        return web.FileResponse(target)


def _not_found() -> web.Response:
    return web.Response(status=404, text="404 page not found\n")
