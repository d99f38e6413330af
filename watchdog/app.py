"""The watchdog's HTTP edge: health, readiness, the concurrency limit, errors to statuses, metrics.

Routes (of-watchdog pkg/watchdog.go):
- ``GET /_/health``: 200 ``OK`` when ready and not draining, else 503.
- ``GET /_/ready``: 503 when not healthy, 429 when ``max_inflight`` is reached, else the function's own answer
  to ``ready_path`` when set, else 200.
- everything else: the function, through the concurrency limit (429 with of-watchdog's body) and the metrics.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import structlog
from aiohttp import web

from servicekit.access_log import AccessLog
from servicekit.client_side import AiohttpReply, ClientRequest, Reply
from servicekit.headers import DURATION, INTERNAL, duration_header
from servicekit.lean_server import LeanHandler, LeanRequest, Router
from servicekit.settings import SettingError, parse_duration
from watchdog.config import WatchdogConfig
from watchdog.errors import InvocationError
from watchdog.executor import Executor
from watchdog.metrics import CONTENT_TYPE, FunctionMetrics, Recorder
from watchdog.readiness import Readiness
from watchdog.shared import Limiter

log = structlog.get_logger("watchdog")

INTERNAL_NAME = "of-watchdog"
LIMITER_NAME = "faas-middleware"
_GO_DURATION_TIMEOUT_HEADER = "X-Timeout"


@dataclass(frozen=True, slots=True)
class Watchdog:
    """What one worker's request handlers need."""

    config: WatchdogConfig
    executor: Executor
    readiness: Readiness
    limiter: Limiter
    recorder: Recorder
    access_log: AccessLog | None


def request_timeout(config: WatchdogConfig, header: str | None) -> float | None:
    """min(X-Timeout, exec_timeout); no deadline when exec_timeout is 0. A bad X-Timeout is ignored."""
    if config.exec_timeout_s <= 0:
        return None
    if header:
        try:
            wanted = parse_duration("X-Timeout", header)
        except SettingError:
            return config.exec_timeout_s
        if 0 < wanted <= config.exec_timeout_s:
            return wanted
    return config.exec_timeout_s


def error_response(status: int, message: str, started: float | None) -> web.Response:
    """A failure the watchdog answers itself: a one-line body, the internal header, and the duration if timed."""
    headers = {INTERNAL: INTERNAL_NAME}
    if started is not None:
        headers[DURATION] = duration_header(started)
    return web.Response(status=status, text=message + "\n", headers=headers)


class FunctionCalls:
    """Every request that is not the watchdog's own: the concurrency limit, the executor, errors to statuses,
    metrics and the access line. :meth:`call` answers through any server's reply (servicekit.client_side)."""

    def __init__(self, watchdog: Watchdog) -> None:
        self._watchdog = watchdog
        self._limit_body = (
            f"Concurrent request limit exceeded. Max concurrent requests: {watchdog.config.max_inflight}\n"
        )

    async def handle(self, request: web.Request) -> web.StreamResponse:
        """The aiohttp route."""
        reply = AiohttpReply(request)
        await self.call(request, reply)
        return reply.result()

    async def call(self, request: ClientRequest, reply: Reply) -> None:
        watchdog = self._watchdog
        config = watchdog.config
        limiter = watchdog.limiter
        if not limiter.try_acquire():
            reply.send(
                web.Response(
                    status=429, text=self._limit_body, content_type="text/plain", headers={INTERNAL: LIMITER_NAME}
                )
            )
            return
        recorder = watchdog.recorder
        started = time.perf_counter()
        call_id = request.headers.get("X-Call-Id", "")
        status = 500
        recorder.started()
        bound = structlog.contextvars.bind_contextvars(request_id=call_id) if call_id else None
        try:
            try:
                timeout = request_timeout(config, request.headers.get(_GO_DURATION_TIMEOUT_HEADER))
                response = await watchdog.executor.invoke(request, timeout, reply)
                if response is not None:
                    assert isinstance(reply, AiohttpReply)  # executors that return aiohttp's response run there only
                    reply.response = response
            except InvocationError as exc:
                reply.send(error_response(exc.status, str(exc), started))
                log.warning("invocation_failed", status=exc.status, error=str(exc))
            except Exception:
                log.exception("invocation_crashed")
                reply.send(error_response(500, "internal watchdog error", started))
            status = reply.status
        finally:
            elapsed = time.perf_counter() - started
            limiter.release()
            recorder.finished(request.method, status, elapsed)
            access_log = watchdog.access_log
            if access_log is not None:
                fields = (("call_id", call_id or "none"),) if config.log_callid else ()
                access_log.request(request.method, request.path, status, elapsed, fields)
            if bound is not None:
                structlog.contextvars.reset_contextvars(**bound)


def lean_routes(watchdog: Watchdog, calls: FunctionCalls) -> Router | None:
    """The requests servicekit.lean_server answers itself: the function's, in the modes whose executor answers
    through any reply (http, python); ``/_/`` and the other modes stay with the aiohttp app. None: no lean server."""
    if not watchdog.executor.lean:
        return None

    def route(request: LeanRequest) -> LeanHandler | None:
        return None if request.raw_path.startswith("/_/") else calls.call

    return route


def create_app(watchdog: Watchdog, calls: FunctionCalls | None = None) -> web.Application:
    """The aiohttp app: ``/_/health``, ``/_/ready`` and every function call (``calls``, made here by default)."""
    if calls is None:
        calls = FunctionCalls(watchdog)
    config = watchdog.config
    flags = watchdog.readiness.flags
    limiter = watchdog.limiter
    executor = watchdog.executor
    access_log = watchdog.access_log

    async def health(request: web.Request) -> web.Response:
        if flags.healthy:
            return web.Response(text="OK")
        return web.Response(status=503)

    async def ready(request: web.Request) -> web.StreamResponse:
        if not flags.healthy:
            return web.Response(status=503)
        if limiter.full:
            return web.Response(status=429)
        if config.ready_path:
            probe = request.clone(rel_url=config.ready_path)
            reply = AiohttpReply(probe)
            try:
                response = await executor.invoke(probe, request_timeout(config, None), reply)
            except InvocationError as exc:
                return error_response(exc.status, str(exc), None)
            return response if response is not None else reply.result()
        return web.Response()

    app = web.Application(client_max_size=0)
    if access_log is not None:

        async def flush_access_log(_app: web.Application) -> None:
            access_log.flush()

        app.on_cleanup.append(flush_access_log)
    app.router.add_get("/_/health", health)
    app.router.add_get("/_/ready", ready)
    app.router.add_route("*", "/{path:.*}", calls.handle)
    return app


def create_metrics_app(metrics: FunctionMetrics) -> web.Application:
    async def render(request: web.Request) -> web.Response:
        return web.Response(body=metrics.render().encode(), headers={"Content-Type": CONTENT_TYPE})

    app = web.Application()
    app.router.add_get("/metrics", render)
    return app
