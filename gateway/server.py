"""Running the gateway: one serving process, or several sharing the port, and the SIGTERM drain.

:func:`serve` runs one serving process's app until ``stop`` is set (or SIGTERM/SIGINT when no ``stop`` is
given), then stops accepting, lets in-flight requests finish within ``write_timeout`` and returns. It calls
``ready`` once it listens, so ``pyfaasd up`` can run it beside the provider in one loop and systemd notify can
be hooked in.

:func:`run_workers` forks ``workers`` serving processes before any event loop exists; each binds the port with
SO_REUSEPORT so the kernel spreads connections across them, and follows the hosts file itself. The metrics are
in shared memory created before the fork, so ``/metrics`` shows totals whichever worker answers. The first
process only supervises: it passes SIGTERM and SIGHUP on and exits 0 when every worker exited 0.

With a certificate set (gateway/tls.py) each serving process also listens with HTTPS on ``PYFAASD_TLS_ADDR``,
the same app behind both listeners. SIGHUP reloads the certificate files in every serving process.
"""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import Callable

import structlog
import uvloop
from aiohttp import web

from gateway.app import INTERNAL, INTERNAL_NAME, create_app, lean_routes
from gateway.config import GatewayConfig
from gateway.keys import METRICS
from gateway.metrics import GatewayMetrics
from gateway.tls import Certificates
from servicekit import notify, open_files
from servicekit.aiohttp_site import LimitedSite
from servicekit.auth import Credentials, load_credentials
from servicekit.client_limits import ClientGuard, ClientLimits, refusal_response
from servicekit.lean_server import LeanServer
from servicekit.shutdown import Shutdown
from servicekit.workers import fork_workers, send_signal, supervise

log = structlog.get_logger("gateway")

LISTEN_BACKLOG = 1024


async def serve(
    config: GatewayConfig,
    *,
    ready: Callable[[], object] | None = None,
    stop: asyncio.Event | None = None,
    credentials: Credentials | None = None,
    metrics: GatewayMetrics | None = None,
    worker: int | None = None,
) -> None:
    """Serve until ``stop`` is set (default: until SIGTERM or SIGINT), then drain and return."""
    if stop is None:
        stop = Shutdown().requested
    # One process decides for the whole gateway: the only one, or worker 0 (the metrics it reads are shared).
    app = create_app(config, credentials=credentials, metrics=metrics, worker=worker, autoscale=worker in (None, 0))
    guard = client_guard(config, app[METRICS])
    lean = lean_server(config, app, guard)
    certificates = Certificates(config.tls_cert, config.tls_key, config.tls_dir) if config.tls else None
    loop = asyncio.get_running_loop()
    runner = web.AppRunner(app, handle_signals=False, access_log=None, shutdown_timeout=config.write_timeout_s)
    await runner.setup()
    loop.add_signal_handler(signal.SIGHUP, _reload, certificates)
    try:
        site = LimitedSite(
            runner, config.host, config.port, guard, reuse_port=config.workers > 1, backlog=LISTEN_BACKLOG, lean=lean
        )
        await site.start()
        if certificates is not None:
            secure = LimitedSite(
                runner,
                config.tls_host,
                config.tls_port,
                guard,
                reuse_port=config.workers > 1,
                backlog=LISTEN_BACKLOG,
                ssl_context=certificates.context,
                lean=lean,
            )
            await secure.start()
            log.info("listening_tls", address=f"{config.tls_host}:{config.tls_port}", domains=certificates.domains)
        log.info(
            "listening",
            address=f"{config.host}:{config.port}",
            header_timeout_s=guard.limits.header_timeout_s,
            idle_timeout_s=guard.limits.idle_timeout_s,
            max_connections=guard.limits.max_connections,
        )
        if ready is not None:
            ready()
        await stop.wait()
        log.info("draining", write_timeout_s=config.write_timeout_s)
    finally:
        loop.remove_signal_handler(signal.SIGHUP)
        await runner.cleanup()
    log.info("gateway_stopped")


def _reload(certificates: Certificates | None) -> None:
    """SIGHUP: load the certificate files again (the listeners and their connections stay)."""
    if certificates is None:
        log.info("reload_requested", tls="off")
        return
    certificates.reload()


def lean_server(config: GatewayConfig, app: web.Application, guard: ClientGuard) -> LeanServer:
    """The hot paths' server in front of the app (servicekit.lean_server), under the same client limits; it
    drains with the app: on shutdown, before the app's own connections are waited for."""
    lean = LeanServer(
        lean_routes(app), header_timeout_s=guard.limits.header_timeout_s, idle_timeout_s=guard.limits.idle_timeout_s
    )

    async def drain(_app: web.Application) -> None:
        await lean.shutdown(config.write_timeout_s)

    app.on_shutdown.append(drain)
    return lean


def client_guard(config: GatewayConfig, metrics: GatewayMetrics) -> ClientGuard:
    """The limits on this serving process's clients, counted in its metrics (docs/gateway.md, "Client limits")."""
    limits = ClientLimits(
        header_timeout_s=config.header_timeout_s,
        idle_timeout_s=config.idle_timeout_s,
        max_connections=config.max_connections or open_files.connection_budget(),
    )
    refusal = refusal_response("too many connections to the gateway\n", [(INTERNAL, INTERNAL_NAME)])
    return ClientGuard(limits, metrics, refusal=refusal)


def run_single(config: GatewayConfig, credentials: Credentials) -> int:
    """One serving process; tells systemd (if it is watching) when it listens and when it stops."""

    async def main() -> None:
        watchdog = notify.start_watchdog()
        try:
            await serve(config, credentials=credentials, ready=notify.ready)
        finally:
            notify.stopping()
            await notify.stop_watchdog(watchdog)

    uvloop.run(main())
    return 0


def run_workers(config: GatewayConfig, credentials: Credentials) -> int:
    """Fork ``config.workers`` serving processes and supervise them; the exit code.

    Each worker writes one byte to a pipe once it listens; the supervisor (the process systemd watches) reports
    READY=1 when every worker has.
    """
    metrics = GatewayMetrics(config.workers)
    ready_r, ready_w = os.pipe()
    pids = fork_workers(config.workers, lambda i: _worker(config, credentials, metrics, i, ready_w))
    os.close(ready_w)
    try:
        return uvloop.run(_supervise(pids, ready_r, config.workers))
    finally:
        os.close(ready_r)


def _worker(config: GatewayConfig, credentials: Credentials, metrics: GatewayMetrics, index: int, ready_w: int) -> int:
    metrics.select_worker(index)
    structlog.contextvars.bind_contextvars(worker=index)

    def ready() -> None:
        os.write(ready_w, b".")
        os.close(ready_w)

    signal.signal(signal.SIGHUP, signal.SIG_IGN)  # until serve() handles it: a reload must not end a worker
    uvloop.run(serve(config, credentials=credentials, metrics=metrics, worker=index, ready=ready))
    return 0


async def _supervise(pids: list[int], ready_r: int, workers: int) -> int:
    shutdown = Shutdown()
    loop = asyncio.get_running_loop()
    listening = 0

    def on_ready() -> None:
        nonlocal listening
        data = os.read(ready_r, 64)
        listening += len(data)
        if not data or listening >= workers:
            loop.remove_reader(ready_r)
            if listening >= workers:
                notify.ready()

    def reload() -> None:
        log.info("reload_requested", workers=len(pids))
        for pid in pids:
            send_signal(pid, signal.SIGHUP)

    os.set_blocking(ready_r, False)
    loop.add_reader(ready_r, on_ready)
    loop.add_signal_handler(signal.SIGHUP, reload)
    watchdog = notify.start_watchdog()
    try:
        code = await supervise(pids, shutdown)
        log.info("gateway_stopped", code=code)
        return code
    finally:
        loop.remove_signal_handler(signal.SIGHUP)
        loop.remove_reader(ready_r)
        notify.stopping()
        await notify.stop_watchdog(watchdog)


def run(config: GatewayConfig) -> int:
    """Serve with ``config.workers`` processes until SIGTERM; the exit code. CredentialsError before listening."""
    credentials = load_credentials(config.secrets_dir)
    if config.tls:
        Certificates(config.tls_cert, config.tls_key, config.tls_dir)  # TlsError before listening or forking
    before, after = open_files.raise_soft_limit()
    log.info("gateway_starting", open_file_limit=after.soft, open_file_limit_was=before.soft, **config.summary())
    if config.workers == 1:
        return run_single(config, credentials)
    return run_workers(config, credentials)
