"""The aiohttp app of the fork and static modes, whose executors use aiohttp's request and response objects
(the CGI environment, streamed stdin, ``FileResponse``): the same handlers as the lean server's (watchdog/app.py),
each answering through an :class:`~servicekit.aiohttp_reply.AiohttpReply`."""

from __future__ import annotations

from aiohttp import web
from aiohttp.typedefs import Handler

from servicekit.aiohttp_reply import AiohttpReply
from servicekit.aiohttp_site import LimitedSite
from servicekit.client_limits import ClientGuard
from servicekit.client_side import ClientHandler
from watchdog.app import FunctionCalls, OwnRoutes, Watchdog


def create_app(watchdog: Watchdog, calls: FunctionCalls | None = None) -> web.Application:
    """``/_/health``, ``/_/ready`` and every function call (``calls``, made here by default)."""
    if calls is None:
        calls = FunctionCalls(watchdog)
    own = OwnRoutes(watchdog)
    access_log = watchdog.access_log
    app = web.Application(client_max_size=0)
    if access_log is not None:

        async def flush_access_log(_app: web.Application) -> None:
            access_log.flush()

        app.on_cleanup.append(flush_access_log)
    app.router.add_get("/_/health", _aiohttp_handler(own.health))
    app.router.add_get("/_/ready", _aiohttp_handler(own.ready))
    app.router.add_route("*", "/{path:.*}", _aiohttp_handler(calls.call))
    return app


def _aiohttp_handler(handler: ClientHandler) -> Handler:
    async def handle(request: web.Request) -> web.StreamResponse:
        reply = AiohttpReply(request)
        await handler(request, reply)
        return reply.result()

    return handle


class _AppListener:
    def __init__(self, runner: web.AppRunner) -> None:
        self._runner = runner

    async def stop(self, drain_timeout_s: float) -> None:
        await self._runner.cleanup()  # (its shutdown_timeout is the drain's: set when the runner was made)


async def serve_app(
    watchdog: Watchdog,
    calls: FunctionCalls,
    guard: ClientGuard,
    host: str,
    port: int,
    *,
    reuse_port: bool,
    backlog: int,
) -> _AppListener:
    """The app listening on ``port`` under ``guard``'s client limits; stop() drains it for ``write_timeout``."""
    runner = web.AppRunner(
        create_app(watchdog, calls),
        handle_signals=False,
        access_log=None,
        shutdown_timeout=watchdog.config.write_timeout_s,
    )
    await runner.setup()
    site = LimitedSite(runner, host, port, guard, reuse_port=reuse_port, backlog=backlog)
    await site.start()
    return _AppListener(runner)
