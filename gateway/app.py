"""The gateway's aiohttp application: routes, the error middleware, and the parts they share.

Routes:

| route | what | auth |
|---|---|---|
| ``* /function/<name>[.<ns>][/<path>]`` | the function proxy (proxy.py) | no |
| ``POST /async-function/<name>[.<ns>][/<path>]`` | into the durable queue, 202 (async_edge.py) | no |
| ``GET /system/async/<call-id>`` | an async call's status (async_edge.py) | basic |
| ``* /system/...`` | passed to the provider (system.py) | basic |
| ``GET /healthz`` | the provider's ``/healthz`` | no |
| ``GET /metrics`` | Prometheus text | no |
| ``GET /ui/`` | the web UI's pages (ui.py; they call ``/system``, ``/function`` and ``/metrics``) | basic |
| ``GET /_/health`` | the gateway's own liveness: 200 ``OK`` | no |
| ``* /<prefix>[/<path>]`` | a function's path route (``com.pyfaasd.path``), prefix stripped (routes.py) | no |
| ``*`` with ``Host: <domain>`` | a function's domain route (``com.pyfaasd.domain``): every path, before the rest | no |

Handlers never build error responses: they raise a :class:`~gateway.errors.GatewayError` (or let the shared
relay's :class:`~servicekit.relay.RelayError` through, mapped by ``from_relay``), and one middleware turns it
into its status with a one-line text body and ``X-OpenFaaS-Internal: gateway``, logging it once.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
from collections.abc import AsyncIterator, Awaitable, Callable

import structlog
from aiohttp import web
from aiohttp.typedefs import Handler, Middleware

from gateway.async_calls import CallQueue
from gateway.async_edge import AsyncEdge
from gateway.async_invoke import FunctionInvoker
from gateway.autoscaler import Autoscaler
from gateway.callbacks import CallbackSender
from gateway.config import GatewayConfig
from gateway.cron import CronScheduler, provider_lister
from gateway.dispatcher import Dispatcher, DispatchRole, SettingsCache
from gateway.doorbell import Doorbell
from gateway.errors import GatewayError, NotFoundError, from_relay
from gateway.jetstream_queue import JetStreamCallQueue
from gateway.keys import (
    ASYNC_QUEUE,
    ASYNC_ROLE,
    CONFIG,
    METRICS,
    POOLS,
    PROVIDER,
    PROXY,
    RESOLVER,
    ROUTES,
    SCALER,
    SYSTEM,
)
from gateway.metrics import GatewayMetrics
from gateway.platform import ProviderPlatform
from gateway.pools import Pools
from gateway.provider import ProviderClient
from gateway.proxy import PREFIX, FunctionProxy
from gateway.resolver import Resolver
from gateway.routes import Routes, host_name
from gateway.scaler import Scaler
from gateway.scaling_policy import Decision, Policy, ScaleDefaults
from gateway.sqlite_queue import SqliteCallQueue
from gateway.swarm_dns import SwarmDns
from gateway.system import SystemProxy, version_info
from gateway.ui import UiPages
from servicekit.access_log import AccessLog
from servicekit.aiohttp_reply import aiohttp_response
from servicekit.auth import Credentials, load_credentials
from servicekit.client_side import Answer, ClientRequest, header_value
from servicekit.lean_server import LeanHandler, LeanReply, LeanRequest, Router
from servicekit.metrics import CONTENT_TYPE
from servicekit.relay import RelayError
from servicekit.swarm import Backend

log = structlog.get_logger("gateway")

INTERNAL = "X-OpenFaaS-Internal"
INTERNAL_NAME = "gateway"


def error_answer(error: GatewayError) -> Answer:
    return Answer.text(error.status, f"{error}\n", ((INTERNAL, INTERNAL_NAME), *error.headers))


def failure_answer(request: ClientRequest, exc: GatewayError | RelayError) -> Answer:
    """A handler's failure as the client sees it, logged once (refusals other than 401 and 404 at info)."""
    error = exc if isinstance(exc, GatewayError) else from_relay(exc)
    status = error.status
    if status >= 500:
        log.warning("request_failed", method=request.method, path=request.path, status=status, error=str(error))
    elif status != 401 and status != 404:
        log.info("request_refused", method=request.method, path=request.path, status=status, error=str(error))
    return error_answer(error)


@web.middleware
async def errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except (GatewayError, RelayError) as exc:
        return aiohttp_response(failure_answer(request, exc))
    except web.HTTPException:
        raise
    except Exception:
        log.exception("request_crashed", method=request.method, path=request.path)
        return aiohttp_response(error_answer(GatewayError("internal gateway error")))


# The first segments of the gateway's own routes (create_app): a path under them is never a path route's.
OWN_PATHS = ("/async-function/", "/system/", "/healthz", "/metrics", "/_/", "/ui")


def lean_routes(app: web.Application) -> Router:
    """The requests servicekit.lean_server answers itself: ``/function/``, a routed domain's and a path route's
    (every other one, and a websocket upgrade, goes to the aiohttp app). The same proxy and the same error answers
    as the app's."""
    proxy = app[PROXY]
    routes = app[ROUTES]
    config = app[CONFIG]

    def answering(call: Callable[[LeanRequest, LeanReply], Awaitable[None]]) -> LeanHandler:
        """``call`` with the error middleware's answers."""

        async def handler(request: LeanRequest, reply: LeanReply) -> None:
            try:
                await call(request, reply)
            except (GatewayError, RelayError) as exc:
                reply.send(failure_answer(request, exc))

        return handler

    function_call = answering(proxy.call)

    def route(request: LeanRequest) -> LeanHandler | None:
        host = header_value(request, b"host")
        function = routes.domain(host.decode("latin-1")) if host is not None else None
        if function is not None:
            if config.http_redirect and not request.secure:
                return None  # the 308 is the app's
            return answering(lambda request, reply: proxy.call_route(request, reply, function, request.raw_path, ""))
        raw_path = request.raw_path
        if raw_path.startswith(PREFIX):
            return function_call
        if raw_path.startswith(OWN_PATHS):
            return None
        match = routes.by_path(raw_path)
        if match is None:
            return None  # the app's 404
        return answering(
            lambda request, reply: proxy.call_route(request, reply, match.function, match.target, match.prefix)
        )

    return route


def create_app(
    config: GatewayConfig,
    *,
    credentials: Credentials | None = None,
    metrics: GatewayMetrics | None = None,
    access_log: AccessLog | None = None,
    worker: int | None = None,
    autoscale: bool = False,
) -> web.Application:
    """The gateway for one serving process.

    ``credentials`` default to the files in ``<state>/secrets`` (CredentialsError when missing); ``metrics``
    to a new local set (pass the one created before forking when there are several workers); ``access_log``
    to one on stdout when ``config.access_log`` is set. ``autoscale``: this process runs the autoscaler (when
    ``config.autoscale`` is on too); exactly one process of a gateway does (``serve`` picks it).
    """
    if credentials is None:
        credentials = load_credentials(config.secrets_dir)
    if metrics is None:
        metrics = GatewayMetrics()
    if access_log is None and config.access_log:
        access_log = AccessLog(json_lines=not sys.stdout.isatty(), worker=worker)
    resolver = Resolver(SwarmDns(*config.swarm_dns) if config.backend is Backend.SWARM else config.hosts_file)
    routes = Routes(config.routes_file)
    pools = Pools(config.function_port, config.connect_timeout_s)
    resolver.on_change = lambda: pools.prune(resolver.addresses())
    provider = ProviderClient(config.provider, credentials, config.upstream_timeout_s)
    scaler = Scaler(provider, resolver, enabled=config.scale_from_zero, timeout_s=config.scale_from_zero_timeout_s)
    metrics.follow_service_counts(lambda: (((name,), float(n)) for name, n in resolver.functions()))
    proxy = FunctionProxy(config, resolver, pools, scaler, metrics, access_log)
    system = SystemProxy(config, provider, credentials, metrics, version_info())

    # Async calls: every process accepts into the queue; the one holding the dispatcher's lock dispatches. With
    # the swarm backend the queue is on NATS JetStream, shared by every gateway (each dispatches its share).
    doorbell = Doorbell(config.async_dir)
    queue = open_queue(config, doorbell)
    callbacks = CallbackSender(config.upstream_timeout_s)
    dispatcher = Dispatcher(
        queue,
        FunctionInvoker(config, resolver, pools, scaler, metrics),
        callbacks,
        SettingsCache(scaler, config.async_concurrency),
        metrics.async_metrics,
        doorbell,
        retention_s=config.async_retention_s,
    )
    cron = CronScheduler(queue, provider_lister(provider), doorbell.ring)
    role = DispatchRole(config.async_dir / "dispatcher.lock", dispatcher, doorbell, cron.run)
    edge = AsyncEdge(config, resolver, scaler, queue, doorbell, metrics.async_metrics, system)

    app = web.Application(middlewares=[errors, routed_domains(routes, proxy, config)], client_max_size=0)
    app[CONFIG] = config
    app[ROUTES] = routes
    app[RESOLVER] = resolver
    app[POOLS] = pools
    app[PROVIDER] = provider
    app[SCALER] = scaler
    app[METRICS] = metrics
    app[PROXY] = proxy
    app[SYSTEM] = system
    app[ASYNC_QUEUE] = queue
    app[ASYNC_ROLE] = role
    autoscaler = _autoscaler(config, provider, resolver, metrics) if autoscale and config.autoscale else None

    dispatch_stopping: list[asyncio.Task[None]] = []

    async def stop_dispatching(app: web.Application) -> None:
        # On shutdown, before the HTTP requests in flight are waited for: both drains run at once.
        dispatch_stopping.append(asyncio.create_task(role.stop(config.write_timeout_s)))

    app.on_shutdown.append(stop_dispatching)

    async def resources(app: web.Application) -> AsyncIterator[None]:
        role.start()
        running = asyncio.create_task(autoscaler.run(), name="autoscaler") if autoscaler is not None else None
        yield
        if running is not None:
            running.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await running
        if dispatch_stopping:
            await dispatch_stopping[0]
        else:
            await role.stop(config.write_timeout_s)
        await callbacks.close()
        await queue.close()
        await scaler.close()
        await proxy.close()
        await resolver.close()
        pools.close()
        provider.close()
        if access_log is not None:
            access_log.flush()

    app.cleanup_ctx.append(resources)

    async def render_metrics(request: web.Request) -> web.Response:
        resolver.refresh(force=True)
        response = web.Response(text=metrics.render())
        response.headers["Content-Type"] = CONTENT_TYPE
        return response

    async def liveness(request: web.Request) -> web.Response:
        return web.Response(text="OK")

    async def not_found(request: web.Request) -> web.StreamResponse:
        match = routes.by_path(request.raw_path)
        if match is None:
            raise NotFoundError("404 page not found")
        return await proxy.invoke_route(request, match.function, match.target, match.prefix)

    router = app.router
    router.add_route("*", "/function/{tail:.*}", proxy.invoke)
    router.add_route("*", "/async-function/{tail:.*}", edge.accept)
    router.add_get("/system/async/{call_id}", edge.status, allow_head=False)
    router.add_get("/system/functions", system.list_functions, allow_head=False)
    router.add_get("/system/info", system.info, allow_head=False)
    router.add_get("/system/logs", system.logs, allow_head=False)
    router.add_route("*", "/system/{tail:.*}", system.forward)
    router.add_get("/healthz", system.healthz)
    router.add_get("/metrics", render_metrics)
    router.add_get("/_/health", liveness)
    ui = UiPages(system.authorize)
    router.add_get("/ui", ui.root, allow_head=False)
    router.add_get("/ui/{file:[A-Za-z0-9._-]*}", ui.file, allow_head=False)
    router.add_route("*", "/{tail:.*}", not_found)
    return app


def open_queue(config: GatewayConfig, doorbell: Doorbell) -> CallQueue:
    """SQLite in the state dir (one host), or NATS JetStream with the swarm backend (several gateways)."""
    if config.backend is Backend.SWARM:
        return JetStreamCallQueue(config.nats_url, lease_s=config.async_lease_s, on_work=doorbell.ring_here)
    return SqliteCallQueue(config.async_dir / "queue.db")


def routed_domains(routes: Routes, proxy: FunctionProxy, config: GatewayConfig) -> Middleware:
    """A request whose ``Host`` is a function's domain goes to that function, every path of it (docs/gateway.md,
    "Routes"); with ``PYFAASD_HTTP_REDIRECT`` a plain-HTTP one is sent to HTTPS instead (308)."""
    redirect = config.http_redirect
    port = "" if config.tls_port == 443 else f":{config.tls_port}"

    @web.middleware
    async def routed(request: web.Request, handler: Handler) -> web.StreamResponse:
        host = request.headers.get("Host")
        function = routes.domain(host) if host else None
        if function is None:
            return await handler(request)
        if redirect and not request.secure:
            location = f"https://{host_name(host or '')}{port}{request.raw_path}"
            return web.Response(status=308, headers={"Location": location, INTERNAL: INTERNAL_NAME})
        return await proxy.invoke_route(request, function, request.raw_path, "")

    return routed


def _autoscaler(
    config: GatewayConfig, provider: ProviderClient, resolver: Resolver, metrics: GatewayMetrics
) -> Autoscaler:
    defaults = ScaleDefaults(
        max_replicas=config.max_replicas,
        zero_duration_s=config.scale_zero_duration_s,
        down_window_s=config.scale_down_window_s,
    )

    def ready() -> dict[str, int]:
        resolver.refresh(force=True)
        return dict(resolver.functions())

    def record(key: str, policy: Policy, decision: Decision) -> None:
        metrics.desired.labels(key).set(decision.replicas)
        metrics.target_load.labels(key, policy.type.value).set(policy.target)
        metrics.current_load.labels(key, policy.type.value).set(decision.load)

    def gone(key: str) -> None:
        metrics.desired.labels(key).set(0)

    return Autoscaler(
        ProviderPlatform(provider, on_listed=resolver.watch),
        metrics.load_totals,
        ready,
        defaults,
        interval_s=config.autoscale_interval_s,
        on_decision=record,
        on_gone=gone,
    )
