"""Run the provider: Docker, the bridge, recovery from Docker labels, the event follower and the HTTP API.

Runs on the stdlib asyncio loop (pyroute2 does not work under uvloop). Stopping the provider stops the API
and the event follower; function containers keep running in Docker for the next start.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
from collections.abc import Callable

import structlog
from aiohttp import web

from netconf import Network
from provider.app import create_app
from provider.config import Backend, ProviderConfig
from provider.core import Core
from provider.docker_runtime import DockerRuntime
from provider.namespaces import NamespaceStore
from provider.pool_slots import PoolSlots
from provider.readiness import HttpProbe
from provider.scale_store import ScaleStore
from provider.secrets import SecretStore
from provider.state_lock import state_dir_lock
from provider.swarm_server import serve_swarm
from servicekit.aiohttp_site import LimitedSite
from servicekit.auth import ensure_credentials
from servicekit.client_limits import ClientGuard, ClientLimits

log = structlog.get_logger("provider")

SHUTDOWN_TIMEOUT_S = 10.0
# The provider's clients are the gateway (a keep-alive pool) and the CLI; a fixed cap keeps a flood of local
# connections from taking the descriptors the gateway needs under `pyfaasd up` (one process, one limit).
MAX_CONNECTIONS = 1024


async def serve(
    config: ProviderConfig,
    stop: asyncio.Event,
    *,
    on_ready: Callable[[], object] | None = None,
    on_stopping: Callable[[], object] | None = None,
) -> None:
    """Serve until ``stop`` is set, then finish in-flight requests and return."""
    if config.backend is Backend.SWARM:
        await serve_swarm(config, stop, on_ready=on_ready, on_stopping=on_stopping)
        return
    with state_dir_lock(config.state_dir):  # before anything is touched: one provider per state dir
        config.state_dir.mkdir(parents=True, exist_ok=True)
        credentials, created = ensure_credentials(config.secrets_dir)
        if created:
            log.info("credentials_created", directory=str(config.secrets_dir), user=credentials.user)
        slots = PoolSlots(config.pool_dir)
        runtime = await DockerRuntime.connect(config.net.bridge, slots.labels_of)
        try:
            network = Network(config.net)
            namespace_store = NamespaceStore(config.state_dir / "namespaces")
            secret_store = SecretStore(config.secrets_dir, config.secrets_gid, namespace_store)
            probe = HttpProbe(config.function_port)
            core = Core.build(
                config,
                runtime,
                network,
                probe,
                secret_store,
                namespace_store,
                ScaleStore(config.state_dir / "replicas"),
                slots=slots,
            )
            loop = asyncio.get_running_loop()
            loop.add_signal_handler(signal.SIGHUP, core.images.reload)  # registries.yaml, read again
            app = create_app(config, credentials, core, secret_store, namespace_store)
            runner = web.AppRunner(app, access_log=None, shutdown_timeout=SHUTDOWN_TIMEOUT_S)
            try:
                await runner.setup()
                # Listen first: the port is taken (or its conflict reported) before the bridge or Docker is
                # touched, and the API answers from now on (/system requests wait for the recovery below).
                limits = ClientLimits(config.header_timeout_s, config.idle_timeout_s, MAX_CONNECTIONS)
                site = LimitedSite(runner, config.host, config.port, ClientGuard(limits), reuse_address=True)
                await site.start()
                log.info("provider_listening", address=f"{config.host}:{config.port}")
                if await _start(network, core, config, stop):
                    if on_ready is not None:
                        on_ready()
                    await stop.wait()
                log.info("provider_stopping")
                if on_stopping is not None:
                    on_stopping()
            finally:
                await runner.cleanup()
                loop.remove_signal_handler(signal.SIGHUP)
                await core.close()
                await probe.close()
        finally:
            await runtime.close()


async def _start(network: Network, core: Core, config: ProviderConfig, stop: asyncio.Event) -> bool:
    """The bridge, then the functions found in Docker; False if ``stop`` came first. Failures propagate."""
    started = time.monotonic()

    async def start() -> None:
        bridge = await network.ensure_bridge()
        log.info("bridge_ready", bridge=bridge.name, ip=str(config.net.bridge_ip), subnet=str(config.net.subnet))
        await core.start()

    starting = asyncio.create_task(start(), name="provider start")
    stopping = asyncio.create_task(stop.wait())
    try:
        await asyncio.wait({starting, stopping}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        stopping.cancel()
        if not starting.done():
            starting.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await starting
    if starting.cancelled():
        return False
    starting.result()  # raises what the start raised
    log.info("provider_started", duration_s=round(time.monotonic() - started, 3))
    return True
