"""``GET /ui/``: the web UI's few hand-written files, served from this package behind the ``/system`` basic auth.

The pages are static; everything they show comes from the browser's own requests to ``/system/*``,
``/function/*`` and ``/metrics`` on the same origin. Nothing is loaded from anywhere else, and the
Content-Security-Policy says so to the browser too.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Final

from aiohttp import web

from gateway.errors import NotFoundError

ASSETS_DIR: Final = Path(__file__).with_name("ui")
_TYPES: Final = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
}
# Same origin only: scripts, styles, images and every fetch().
CONTENT_SECURITY_POLICY: Final = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
    "base-uri 'none'; frame-ancestors 'none'"
)


class UiPages:
    """The files under ``gateway/ui/``, read once; ``authorize`` raises for a request without the credentials."""

    def __init__(self, authorize: Callable[[web.Request], None], assets_dir: Path = ASSETS_DIR) -> None:
        self._authorize = authorize
        self._files: dict[str, tuple[bytes, str]] = {
            path.name: (path.read_bytes(), _TYPES[path.suffix])
            for path in sorted(assets_dir.iterdir())
            if path.is_file() and path.suffix in _TYPES
        }

    async def root(self, request: web.Request) -> web.Response:
        self._authorize(request)
        raise web.HTTPPermanentRedirect("/ui/")

    async def file(self, request: web.Request) -> web.Response:
        self._authorize(request)
        name = request.match_info["file"] or "index.html"
        found = self._files.get(name)
        if found is None:
            raise NotFoundError(f"no such page: /ui/{name}")
        body, content_type = found
        response = web.Response(body=body)
        response.headers["Content-Type"] = content_type
        response.headers["Cache-Control"] = "no-cache"
        response.headers["Content-Security-Policy"] = CONTENT_SECURITY_POLICY
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["Referrer-Policy"] = "no-referrer"
        return response
