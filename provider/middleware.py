"""The provider's middlewares: request id, access line and metrics; basic auth; error → status."""

from __future__ import annotations

import asyncio
import time
import uuid

import structlog
from aiohttp import web
from aiohttp.typedefs import Handler, Middleware

from provider.errors import ProviderError
from provider.keys import CORE, CREDENTIALS
from servicekit.auth import CHALLENGE, REJECTION, check_authorization
from servicekit.metrics import Registry

log = structlog.get_logger("provider.http")

INTERNAL_HEADER = "X-OpenFaaS-Internal"
QUIET_PATHS = frozenset({"/healthz", "/metrics"})
# Routes with a name in the path are counted under one label, as faas-provider does.
_TEMPLATED = ("/system/function/", "/system/scale-function/", "/system/namespace/")


def text_error(status: int, message: str) -> web.Response:
    """A Go ``http.Error``-style answer: plain text, the message and a newline."""
    response = web.Response(status=status, text=message + "\n", content_type="text/plain", charset="utf-8")
    if status >= 500:
        response.headers[INTERNAL_HEADER] = "provider"
    return response


@web.middleware
async def errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except ProviderError as e:
        if e.status >= 500:
            log.error("request_failed", error=str(e), error_type=type(e).__name__)
        return text_error(e.status, str(e))
    except web.HTTPException:
        raise
    except Exception as e:
        log.exception("request_crashed")
        return text_error(500, f"internal error: {type(e).__name__}: {e}")


@web.middleware
async def basic_auth(request: web.Request, handler: Handler) -> web.StreamResponse:
    if request.path.startswith("/system/") and not check_authorization(
        request.headers.get("Authorization"), request.app[CREDENTIALS]
    ):
        return web.Response(
            status=401, text=REJECTION, content_type="text/plain", headers={"WWW-Authenticate": CHALLENGE}
        )
    return await handler(request)


# How long an API request waits for the provider to finish recovering its functions from Docker after a start.
RECOVERY_WAIT_S = 60.0


@web.middleware
async def after_recovery(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Hold /system requests until the functions found in Docker are known again (answered after a start from an
    empty view, a deploy could make a second copy of a function, and a list would miss some); 503 after a bound."""
    recovered = request.app[CORE].recovered
    if request.path.startswith("/system/") and not recovered.is_set():
        try:
            async with asyncio.timeout(RECOVERY_WAIT_S):
                await recovered.wait()
        except TimeoutError:
            return text_error(503, "the provider is still recovering its functions from Docker: try again shortly")
    return await handler(request)


def observe(registry: Registry) -> Middleware:
    """The outermost middleware: binds the request id, writes one access line, and counts /system requests."""
    requests = registry.counter(
        "provider_http_requests_total", "Requests to the provider's /system API.", ("code", "method", "path")
    )
    durations = registry.histogram(
        "provider_http_request_duration_seconds",
        "Time to answer a /system API request.",
        ("code", "method", "path"),
    )

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        request_id = request.headers.get("X-Call-Id") or uuid.uuid4().hex
        start = time.perf_counter()
        status = 500
        with structlog.contextvars.bound_contextvars(request_id=request_id):
            try:
                response = await handler(request)
                status = response.status
                return response
            except web.HTTPException as e:
                status = e.status
                raise
            finally:
                elapsed = time.perf_counter() - start
                if request.path.startswith("/system/"):
                    path = next((p.rstrip("/") for p in _TEMPLATED if request.path.startswith(p)), request.path)
                    requests.labels(str(status), request.method, path).inc()
                    durations.labels(str(status), request.method, path).observe(elapsed)
                if request.path not in QUIET_PATHS:
                    log.info(
                        "request",
                        method=request.method,
                        path=request.path,
                        status=status,
                        duration_ms=round(elapsed * 1000, 2),
                    )

    return middleware
