"""Run the provider: Docker, the bridge, recovery from Docker labels, the event follower and the HTTP API.

Runs on the stdlib asyncio loop (pyroute2 does not work under uvloop). Stopping the provider stops the API
and the event follower; function containers keep running in Docker for the next start.
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Callable

import structlog
from aiohttp import web

from netconf import Network
from provider.app import create_app
from provider.config import ProviderConfig
from provider.core import Core
from provider.docker_runtime import DockerRuntime
from provider.namespaces import NamespaceStore
from provider.readiness import HttpProbe
from provider.scale_store import ScaleStore
from provider.secrets import SecretStore
from provider.state_lock import state_dir_lock
from servicekit.auth import ensure_credentials
from servicekit.client_limits import ClientGuard, ClientLimits, LimitedSite

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
    with state_dir_lock(config.state_dir):  # before anything is touched: one provider per state dir
        config.state_dir.mkdir(parents=True, exist_ok=True)
        credentials, created = ensure_credentials(config.secrets_dir)
        if created:
            log.info("credentials_created", directory=str(config.secrets_dir), user=credentials.user)
        runtime = await DockerRuntime.connect(config.net.bridge)
        try:
            network = Network(config.net)
            bridge = await network.ensure_bridge()
            log.info("bridge_ready", bridge=bridge.name, ip=str(config.net.bridge_ip), subnet=str(config.net.subnet))
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
            )
            try:
                await core.start()
                loop = asyncio.get_running_loop()
                loop.add_signal_handler(signal.SIGHUP, core.images.reload)  # registries.yaml, read again
                app = create_app(config, credentials, core, secret_store, namespace_store)
                runner = web.AppRunner(app, access_log=None, shutdown_timeout=SHUTDOWN_TIMEOUT_S)
                await runner.setup()
                try:
                    limits = ClientLimits(config.header_timeout_s, config.idle_timeout_s, MAX_CONNECTIONS)
                    site = LimitedSite(runner, config.host, config.port, ClientGuard(limits), reuse_address=True)
                    await site.start()
                    log.info("provider_listening", address=f"{config.host}:{config.port}")
                    if on_ready is not None:
                        on_ready()
                    await stop.wait()
                    log.info("provider_stopping")
                    if on_stopping is not None:
                        on_stopping()
                finally:
                    await runner.cleanup()
            finally:
                asyncio.get_running_loop().remove_signal_handler(signal.SIGHUP)
                await core.close()
                await probe.close()
        finally:
            await runtime.close()
