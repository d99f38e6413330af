"""Run the provider with ``PYFAASD_BACKEND=swarm``: Swarm services on an attachable overlay, no bridge.

The provider must run on a Swarm manager, attached to the overlay (it probes task addresses on it): see
docs/swarm.md. Stopping the provider stops the API and the publisher; the services keep running in Swarm.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable
from ipaddress import IPv4Address, IPv4Network

import structlog
from aiohttp import web

from provider.code_store import CodeStore
from provider.config import ProviderConfig
from provider.errors import NotOnOverlayError
from provider.namespaces import NamespaceStore
from provider.readiness import HttpProbe
from provider.state_lock import state_dir_lock
from provider.swarm_app import create_swarm_app
from provider.swarm_code import SwarmCode
from provider.swarm_functions import Publisher, SwarmFunctions
from provider.swarm_runtime import SwarmRuntime
from provider.swarm_secrets import SwarmSecrets
from provider.swarm_spec import LABEL_NETWORK
from provider.volumes import VolumeStore
from servicekit.aiohttp_site import LimitedSite
from servicekit.auth import ensure_credentials
from servicekit.client_limits import ClientGuard, ClientLimits

log = structlog.get_logger("provider")

SHUTDOWN_TIMEOUT_S = 10.0
MAX_CONNECTIONS = 1024


def source_address(destination: IPv4Address) -> IPv4Address | None:
    """The address this network namespace would send from to ``destination`` (None: no route). A UDP connect
    only asks the routing table: nothing is sent."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        try:
            sock.connect((str(destination), 9))
        except OSError:
            return None
        return IPv4Address(sock.getsockname()[0])


def check_attached(network: str, subnets: tuple[IPv4Network, ...]) -> None:
    """Refuse to start where the overlay's task addresses are not reachable directly: the health probes and the
    gateway's requests would leave by the default route instead (docs/swarm.md, "What this machine allows")."""
    for subnet in subnets:
        source = source_address(subnet.network_address + 1)
        if source is not None and source in subnet:
            return
    raise NotOnOverlayError(
        f"the provider is not attached to the overlay network {network} "
        f"({', '.join(map(str, subnets)) or 'no IPv4 subnet'}): with PYFAASD_BACKEND=swarm it must run in a network "
        "namespace attached to it, e.g. an anchor container's (docs/swarm.md)"
    )


async def serve_swarm(
    config: ProviderConfig,
    stop: asyncio.Event,
    *,
    on_ready: Callable[[], object] | None = None,
    on_stopping: Callable[[], object] | None = None,
) -> None:
    """Serve until ``stop`` is set, then finish in-flight requests and return."""
    with state_dir_lock(config.state_dir):
        config.state_dir.mkdir(parents=True, exist_ok=True)
        credentials, created = ensure_credentials(config.secrets_dir)
        if created:
            log.info("credentials_created", directory=str(config.secrets_dir), user=credentials.user)
        runtime = await SwarmRuntime.connect(config.swarm_network)
        probe = HttpProbe(config.function_port)
        publisher = Publisher(config, runtime, probe)
        try:
            check_attached(config.swarm_network, await runtime.ensure_network({LABEL_NETWORK: config.swarm_network}))
            namespace_store = NamespaceStore(config.state_dir / "namespaces")
            secrets = SwarmSecrets(config, runtime, namespace_store)
            volumes = VolumeStore(runtime, config.swarm_network, config.volume_host_roots, owner_label=LABEL_NETWORK)
            code_store = CodeStore(config.code_dir, config.code_limits)
            code_store.remove_leftovers()
            code = SwarmCode(config, runtime, code_store)
            functions = SwarmFunctions(config, runtime, publisher, namespace_store, secrets, volumes, code)
            await publisher.refresh()  # the hosts file says what runs before the API answers
            publisher.start()
            app = create_swarm_app(config, credentials, functions, secrets, namespace_store, volumes, code_store)
            runner = web.AppRunner(app, access_log=None, shutdown_timeout=SHUTDOWN_TIMEOUT_S)
            try:
                await runner.setup()
                limits = ClientLimits(config.header_timeout_s, config.idle_timeout_s, MAX_CONNECTIONS)
                site = LimitedSite(runner, config.host, config.port, ClientGuard(limits), reuse_address=True)
                await site.start()
                log.info("provider_listening", address=f"{config.host}:{config.port}", backend="swarm")
                if on_ready is not None:
                    on_ready()
                await stop.wait()
                log.info("provider_stopping")
                if on_stopping is not None:
                    on_stopping()
            finally:
                await runner.cleanup()
        finally:
            await publisher.close()
            await probe.close()
            await runtime.close()
