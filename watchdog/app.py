"""The watchdog's HTTP edge: health, readiness, the concurrency limit, errors to statuses, metrics.

Written once against servicekit.client_side. In the modes whose executor answers through any reply (http, python)
the lean server alone serves them (:func:`lean_routes`) and the process never imports aiohttp; the fork and
static modes put watchdog/aiohttp_app.py's app over the same handlers.

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

from servicekit.access_log import AccessLog
from servicekit.client_side import Answer, ClientRequest, Reply, header_text
from servicekit.headers import DURATION, INTERNAL, duration_header
from servicekit.lean_server import LeanHandler, LeanReply, LeanRequest, Router
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
_GO_DURATION_TIMEOUT_HEADER = b"x-timeout"


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


def error_answer(status: int, message: str, started: float | None) -> Answer:
    """A failure the watchdog answers itself: a one-line body, the internal header, and the duration if timed."""
    headers = [(INTERNAL, INTERNAL_NAME)]
    if started is not None:
        headers.append((DURATION, duration_header(started)))
    return Answer.text(status, message + "\n", headers)


class FunctionCalls:
    """Every request that is not the watchdog's own: the concurrency limit, the executor, errors to statuses,
    metrics and the access line, answered through any server's reply (servicekit.client_side)."""

    def __init__(self, watchdog: Watchdog) -> None:
        self._watchdog = watchdog
        self._limit_body = (
            f"Concurrent request limit exceeded. Max concurrent requests: {watchdog.config.max_inflight}\n"
        )

    async def call(self, request: ClientRequest, reply: Reply) -> None:
        watchdog = self._watchdog
        config = watchdog.config
        limiter = watchdog.limiter
        if not limiter.try_acquire():
            reply.send(Answer.text(429, self._limit_body, ((INTERNAL, LIMITER_NAME),)))
            return
        recorder = watchdog.recorder
        started = time.perf_counter()
        call_id = header_text(request, b"x-call-id") or ""
        status = 500
        recorder.started()
        bound = structlog.contextvars.bind_contextvars(request_id=call_id) if call_id else None
        try:
            try:
                timeout = request_timeout(config, header_text(request, _GO_DURATION_TIMEOUT_HEADER))
                await watchdog.executor.invoke(request, timeout, reply)
            except InvocationError as exc:
                reply.send(error_answer(exc.status, str(exc), started))
                log.warning("invocation_failed", status=exc.status, error=str(exc))
            except Exception:
                log.exception("invocation_crashed")
                reply.send(error_answer(500, "internal watchdog error", started))
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


class OwnRoutes:
    """``/_/health`` and ``/_/ready``."""

    def __init__(self, watchdog: Watchdog) -> None:
        self._watchdog = watchdog

    async def health(self, request: ClientRequest, reply: Reply) -> None:
        if self._watchdog.readiness.flags.healthy:
            reply.send(Answer.text(200, "OK"))
        else:
            reply.send(Answer(503))

    async def ready(self, request: ClientRequest, reply: Reply) -> None:
        watchdog = self._watchdog
        config = watchdog.config
        if not watchdog.readiness.flags.healthy:
            reply.send(Answer(503))
        elif watchdog.limiter.full:
            reply.send(Answer(429))
        elif config.ready_path:
            probe = request.clone(rel_url=config.ready_path)
            try:
                await watchdog.executor.invoke(probe, request_timeout(config, None), reply)
            except InvocationError as exc:
                reply.send(error_answer(exc.status, str(exc), None))
        else:
            reply.send(Answer())


def lean_routes(watchdog: Watchdog, calls: FunctionCalls) -> Router | None:
    """Every request, on the lean server alone, in the modes whose executor answers through any reply (http,
    python); None in the others (watchdog/aiohttp_app.py serves them)."""
    if not watchdog.executor.lean:
        return None
    own = OwnRoutes(watchdog)
    health: LeanHandler = own.health
    ready: LeanHandler = own.ready
    call: LeanHandler = calls.call

    def route(request: LeanRequest) -> LeanHandler:
        if request.raw_path.startswith("/_/") and request.method in ("GET", "HEAD"):
            path = request.raw_path.partition("?")[0]
            if path == "/_/health":
                return health
            if path == "/_/ready":
                return ready
        return call

    return route


def metrics_routes(metrics: FunctionMetrics) -> Router:
    """The metrics listener: ``GET /metrics``; anything else is the lean server's 404."""

    async def render(request: LeanRequest, reply: LeanReply) -> None:
        answer = Answer(body=metrics.render().encode())
        answer.headers["Content-Type"] = CONTENT_TYPE
        reply.send(answer)

    def route(request: LeanRequest) -> LeanHandler | None:
        if request.method in ("GET", "HEAD") and request.raw_path.partition("?")[0] == "/metrics":
            return render
        return None

    return route
