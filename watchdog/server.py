"""Running the watchdog: listeners, signals, the SIGTERM drain, and several workers sharing the port.

With ``workers`` = 1 everything runs in one process. With more, the first process keeps what exists once per
watchdog (the supervisor, e.g. http mode's function process; the lock file; the metrics listener) and forks
the workers before it starts an event loop; each worker binds the port with SO_REUSEPORT so the kernel spreads
connections across them. Readiness, the in-flight limit and metrics are in shared memory (shared.py).

On SIGTERM (of-watchdog's listenUntilShutdown): mark unhealthy and remove the lock file, keep serving for
``healthcheck_interval``, then stop accepting and wait up to ``write_timeout`` for in-flight requests, and
only then stop the function process. A second SIGTERM or SIGINT skips the rest of the interval.

In http and python modes the lean server alone serves the port and the metrics port (servicekit.lean_server,
watchdog/app.py): aiohttp is never imported, which keeps each process about 15 MB smaller. The fork and static
modes serve watchdog/aiohttp_app.py's app.
"""

from __future__ import annotations

import sys
from typing import Protocol

import structlog
import uvloop

from servicekit import defaults, open_files
from servicekit.access_log import AccessLog
from servicekit.client_limits import ClientGuard, ClientLimits, LeanSite
from servicekit.lean_server import LeanServer, Router
from servicekit.shutdown import Shutdown
from servicekit.workers import fork_workers, supervise
from watchdog.app import FunctionCalls, Watchdog, lean_routes, metrics_routes
from watchdog.config import WatchdogConfig
from watchdog.executor import Executor, Supervisor, build_executor, build_supervisor
from watchdog.metrics import FunctionMetrics
from watchdog.readiness import Readiness
from watchdog.shared import Flags, Limiter

log = structlog.get_logger("watchdog")

LISTEN_HOST = "0.0.0.0"  # IPv4 only: asyncio makes "::" IPv6-only (docs/architecture.md)
LISTEN_BACKLOG = 1024
METRICS_DRAIN_S = 1.0


class Listener(Protocol):
    async def stop(self, drain_timeout_s: float) -> None:
        """Stop accepting; in-flight requests get up to ``drain_timeout_s``."""


def run(config: WatchdogConfig) -> int:
    """Serve until SIGTERM; the process exit code. Raises StartupError before anything listens."""
    readiness = Readiness(Flags(), config.lock_path, config.suppress_lock)
    readiness.mark_unready()  # a stale lock file from a previous run says nothing about this one
    limiter = Limiter(config.max_inflight, shared=config.workers > 1)
    metrics = FunctionMetrics(config.workers)
    supervisor = build_supervisor(config)
    log.info("watchdog_starting", **config.summary())
    if config.workers == 1:
        return uvloop.run(_serve_single(config, readiness, supervisor, limiter, metrics))
    pids = fork_workers(config.workers, lambda i: uvloop.run(_serve_worker(config, readiness, limiter, metrics, i)))
    return uvloop.run(_serve_primary(config, readiness, supervisor, metrics, pids))


async def _serve_single(
    config: WatchdogConfig, readiness: Readiness, supervisor: Supervisor, limiter: Limiter, metrics: FunctionMetrics
) -> int:
    shutdown = Shutdown()
    listener, executor = await _start_worker(config, readiness, limiter, metrics, 0)
    metrics_site = await _start_metrics(config, metrics)
    await supervisor.start(readiness)
    await shutdown.requested.wait()
    await _drain(config, readiness, listener, shutdown)
    await executor.close()
    await supervisor.stop()
    if metrics_site is not None:
        await metrics_site.stop(METRICS_DRAIN_S)
    log.info("watchdog_stopped")
    return 0


async def _serve_worker(
    config: WatchdogConfig, readiness: Readiness, limiter: Limiter, metrics: FunctionMetrics, index: int
) -> int:
    structlog.contextvars.bind_contextvars(worker=index)
    shutdown = Shutdown()
    listener, executor = await _start_worker(config, readiness, limiter, metrics, index)
    await shutdown.requested.wait()
    await _drain(config, readiness, listener, shutdown)
    await executor.close()
    return 0


async def _serve_primary(
    config: WatchdogConfig, readiness: Readiness, supervisor: Supervisor, metrics: FunctionMetrics, pids: list[int]
) -> int:
    shutdown = Shutdown()
    metrics_site = await _start_metrics(config, metrics)
    await supervisor.start(readiness)
    code = await supervise(pids, shutdown, on_stop=readiness.start_draining)
    await supervisor.stop()
    if metrics_site is not None:
        await metrics_site.stop(METRICS_DRAIN_S)
    log.info("watchdog_stopped", code=code)
    return code


async def _start_worker(
    config: WatchdogConfig, readiness: Readiness, limiter: Limiter, metrics: FunctionMetrics, index: int
) -> tuple[Listener, Executor]:
    executor = build_executor(config, readiness)
    await executor.start()
    access_log = AccessLog(json_lines=_renders_json(config)) if config.log_requests else None
    watchdog = Watchdog(config, executor, readiness, limiter, metrics.recorder(index), access_log)
    calls = FunctionCalls(watchdog)
    # The gateway's client limits at their defaults (of-watchdog has no such settings): other functions can reach
    # this port too. The gateway's pool drops idle connections after 60 s, before this 75 s idle timeout.
    limits = ClientLimits(defaults.HEADER_TIMEOUT_S, defaults.IDLE_TIMEOUT_S, open_files.connection_budget())
    guard = ClientGuard(limits)
    route = lean_routes(watchdog, calls)
    listener: Listener
    if route is not None:
        site = _lean_site(route, limits, guard, config.port, reuse_port=config.workers > 1)
        await site.start()
        listener = _LeanListener(site, access_log)
    else:
        from watchdog.aiohttp_app import serve_app

        listener = await serve_app(
            watchdog, calls, guard, LISTEN_HOST, config.port, reuse_port=config.workers > 1, backlog=LISTEN_BACKLOG
        )
    log.info("listening", address=f"{LISTEN_HOST}:{config.port}")
    return listener, executor


def _lean_site(route: Router, limits: ClientLimits, guard: ClientGuard, port: int, *, reuse_port: bool) -> LeanSite:
    lean = LeanServer(route, header_timeout_s=limits.header_timeout_s, idle_timeout_s=limits.idle_timeout_s)
    return LeanSite(lean, LISTEN_HOST, port, guard, reuse_port=reuse_port, backlog=LISTEN_BACKLOG)


class _LeanListener:
    def __init__(self, site: LeanSite, access_log: AccessLog | None) -> None:
        self._site = site
        self._access_log = access_log

    async def stop(self, drain_timeout_s: float) -> None:
        await self._site.stop(drain_timeout_s)
        if self._access_log is not None:
            self._access_log.flush()


def _renders_json(config: WatchdogConfig) -> bool:
    return (not sys.stdout.isatty()) if config.log_json is None else config.log_json


async def _start_metrics(config: WatchdogConfig, metrics: FunctionMetrics) -> LeanSite | None:
    if not config.metrics_port:
        return None
    limits = ClientLimits(defaults.HEADER_TIMEOUT_S, defaults.IDLE_TIMEOUT_S, open_files.connection_budget())
    site = _lean_site(metrics_routes(metrics), limits, ClientGuard(limits), config.metrics_port, reuse_port=False)
    await site.start()
    return site


async def _drain(config: WatchdogConfig, readiness: Readiness, listener: Listener, shutdown: Shutdown) -> None:
    readiness.start_draining()
    log.info(
        "draining",
        healthcheck_interval_s=config.healthcheck_interval_s,
        write_timeout_s=config.write_timeout_s,
    )
    await shutdown.pause(config.healthcheck_interval_s)
    await listener.stop(config.write_timeout_s)
