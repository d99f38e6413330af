"""``pyfaasd up``: the provider and the gateway in one process, in the foreground.

For a first run and for development. The bridge is ensured and the credentials are created if absent (their
path is printed, never the password). The gateway starts first and serves the functions in the hosts file at
once (after a restart they are still running); it also dispatches async calls and fires cron schedules from
its queue in ``<state>/async`` (docs/gateway.md). Then the provider takes the state dir, listens, and recovers
functions from Docker in the background (its API waits for that). Ctrl-C or SIGTERM drains the gateway, stops
the provider and exits 0; the function containers keep running in Docker for the next start.

With ``--backend swarm`` (docs/swarm.md) it first makes the swarm (if the engine is in none), the overlay and an
anchor container publishing the gateway's address, and moves into the anchor's network namespace; it exits 1 if
the anchor goes, and removes the anchor when it stops (the swarm, the overlay and the services stay). There it
also runs ``nats-server`` with JetStream for the async queue (pyfaasd/nats_server.py) when ``PYFAASD_NATS_URL``
is on loopback (the default), and stops it when it stops.

Everything is configured by the same ``PYFAASD_*`` variables as the two daemons (docs/provider.md,
docs/gateway.md); the flags of ``up`` cover the common ones.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any, Final

import structlog

from gateway.config import ADDR as GATEWAY_ADDR
from gateway.config import PROVIDER_URL, GatewayConfig
from netconf.config import BRIDGE, SUBNET
from provider.config import LISTEN as PROVIDER_ADDR
from provider.config import SWARM_NETWORK, ProviderConfig
from pyfaasd import nats_server, swarm_stack
from pyfaasd.pidfile import pid_file
from pyfaasd.swarm_stack import ADVERTISE_ADDR
from servicekit import notify, open_files
from servicekit.auth import ensure_credentials, secrets_dir
from servicekit.log import configure_logging
from servicekit.settings import BACKEND, LOG_LEVEL, STATE_DIR, Setting, SettingError, add_flags, with_flags
from servicekit.shutdown import Shutdown
from servicekit.swarm import Backend

# The daemons' own rows; the two listen addresses take names that say whose they are.
SETTINGS: Final[tuple[Setting[Any], ...]] = (
    STATE_DIR,
    BRIDGE,
    SUBNET,
    GATEWAY_ADDR.with_flag("--gateway-addr"),
    PROVIDER_ADDR.with_flag("--provider-addr"),
    BACKEND,
    SWARM_NETWORK,
    ADVERTISE_ADDR,
    LOG_LEVEL,
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_flags(parser, SETTINGS)
    parser.add_argument(
        "--pid-file", type=Path, help="write the pid here while running; removed on exit (scripts/run uses it)"
    )


def effective_env(args: argparse.Namespace, env: Mapping[str, str]) -> dict[str, str]:
    """The environment with the flags laid over it; the gateway finds the provider where it listens."""
    merged = with_flags(env, args, SETTINGS)
    if not merged.get(PROVIDER_URL.env, "").strip():
        merged[PROVIDER_URL.env] = PROVIDER_ADDR.local_url(merged)
    return merged


def run(args: argparse.Namespace) -> int:
    try:
        env = effective_env(args, os.environ)
        provider = ProviderConfig.from_env(env)
        gateway = GatewayConfig.from_env(env)
    except SettingError as e:
        print(f"pyfaasd up: {e}", file=sys.stderr)
        return 2
    if gateway.tls:
        from gateway.tls import Certificates, TlsError

        try:
            Certificates(gateway.tls_cert, gateway.tls_key, gateway.tls_dir)
        except TlsError as e:
            print(f"pyfaasd up: {e}", file=sys.stderr)
            return 2
    configure_logging(provider.log_level)
    # One process holds the provider's and the gateway's descriptors: take the whole hard limit (the gateway's
    # default connection cap is three quarters of it).
    before, after = open_files.raise_soft_limit()
    structlog.get_logger("pyfaasd.up").info(
        "open_file_limit",
        soft=after.soft,
        hard=after.hard,
        was=before.soft,
        gateway_max_connections=(gateway.max_connections or open_files.connection_budget()),
    )
    directory = secrets_dir(provider.state_dir)
    credentials, created = ensure_credentials(directory)
    if created:
        print(f"pyfaasd up: created credentials for user {credentials.user!r} in {directory}", file=sys.stderr)
    print(
        f"pyfaasd up: log in with: cat {directory}/basic-auth-password | "
        f"faas-cli login --username {credentials.user} --password-stdin",
        file=sys.stderr,
    )

    import uvloop

    from provider.errors import DockerUnavailableError, RuntimeFailureError, StateDirBusyError
    from provider.state_lock import state_dir_lock

    try:
        # Before the gateway starts: a second `up` on this state dir must not serve, dispatch or autoscale at all.
        with state_dir_lock(provider.state_dir), pid_file(getattr(args, "pid_file", None)):
            if provider.backend is not Backend.SWARM:
                return uvloop.run(_serve(provider, gateway))
            entered = _enter_swarm(provider, gateway, ADVERTISE_ADDR.read(env))
            if entered is None:
                return 1
            inside, anchor_pid = entered
            nats: subprocess.Popen[bytes] | None = None
            try:
                try:
                    nats = nats_server.start(provider.state_dir, inside.nats_url)
                except (nats_server.NatsServerError, OSError) as e:
                    print(f"pyfaasd up: {e}", file=sys.stderr)
                    return 1
                if nats is not None:
                    print(f"pyfaasd up: nats-server (JetStream, the async queue) on {inside.nats_url}", file=sys.stderr)
                return uvloop.run(_serve(provider, inside, until_gone=anchor_pid))
            finally:
                if nats is not None:
                    nats_server.stop(nats)
                try:
                    asyncio.run(swarm_stack.remove_anchor(provider.swarm_network))
                except (swarm_stack.SwarmStackError, RuntimeFailureError, DockerUnavailableError) as e:
                    print(f"pyfaasd up: could not remove the anchor: {e}", file=sys.stderr)
    except StateDirBusyError as e:
        print(f"pyfaasd up: {e}", file=sys.stderr)
        return 1


def _enter_swarm(
    provider: ProviderConfig, gateway: GatewayConfig, advertise_addr: str
) -> tuple[GatewayConfig, int] | None:
    """The swarm, the overlay and the anchor (pyfaasd/swarm_stack.py), then this process inside the anchor's
    network namespace; the gateway's configuration as it listens there (its address published by the anchor)."""
    tls = (gateway.tls_host, gateway.tls_port) if gateway.tls else None
    ports = swarm_stack.gateway_ports(gateway.host, gateway.port, tls)
    try:
        ready = asyncio.run(swarm_stack.prepare(provider.swarm_network, advertise_addr, ports))
        if ready.made_swarm:
            print("pyfaasd up: made this Docker Engine a swarm manager (docker swarm init)", file=sys.stderr)
        swarm_stack.enter_network_namespace(ready.anchor.pid)
    except (swarm_stack.SwarmStackError, OSError) as e:
        print(f"pyfaasd up: {e}", file=sys.stderr)
        return None
    print(
        f"pyfaasd up: provider and gateway run in the network namespace of {ready.anchor.name} on the overlay "
        f"{provider.swarm_network}; the gateway is published on {gateway.host}:{gateway.port}",
        file=sys.stderr,
    )
    return replace(gateway, host="0.0.0.0", tls_host="0.0.0.0"), ready.anchor.pid


async def _anchor_gone(pid: int) -> None:
    """Returns once the anchor's process is gone (its container stopped, or dockerd restarted): the namespace
    the stack runs in has no way out any more. A pidfd becomes readable when its process exits."""
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return
    loop = asyncio.get_running_loop()
    gone: asyncio.Future[None] = loop.create_future()

    def exited() -> None:
        if not gone.done():
            gone.set_result(None)

    loop.add_reader(fd, exited)
    try:
        await gone
    finally:
        loop.remove_reader(fd)
        os.close(fd)


async def _serve(provider_config: ProviderConfig, gateway_config: GatewayConfig, *, until_gone: int = 0) -> int:
    """The gateway first, serving the hosts file that is there (functions that survived a restart answer at
    once), then the provider, which re-reads Docker in the background; ready when both are."""
    from gateway.server import serve as serve_gateway

    log = structlog.get_logger("pyfaasd.up")
    stop = Shutdown().requested
    stopping = asyncio.create_task(stop.wait())
    stop_provider, stop_gateway = asyncio.Event(), asyncio.Event()
    provider_ready, gateway_ready = asyncio.Event(), asyncio.Event()
    gateway = asyncio.create_task(serve_gateway(gateway_config, ready=gateway_ready.set, stop=stop_gateway))
    provider: asyncio.Task[None] | None = None
    anchor: asyncio.Task[None] | None = None
    watchdog = notify.start_watchdog()
    try:
        if not await _until(gateway_ready, gateway, stopping):
            return 0 if stop.is_set() else 1
        from provider.server import serve as serve_provider  # netlink, Docker: loaded once the gateway serves

        provider = asyncio.create_task(serve_provider(provider_config, stop_provider, on_ready=provider_ready.set))
        if not await _until(provider_ready, provider, gateway, stopping):
            return 0 if stop.is_set() else 1
        notify.ready()
        log.info("pyfaasd_up", gateway=f"{gateway_config.host}:{gateway_config.port}")
        parts: set[asyncio.Task[Any]] = {stopping, provider, gateway}
        if until_gone:
            anchor = asyncio.create_task(_anchor_gone(until_gone))
            parts.add(anchor)
        await asyncio.wait(parts, return_when=asyncio.FIRST_COMPLETED)
        if anchor is not None and anchor.done():
            log.error("anchor_gone", pid=until_gone, hint="its container stopped; run pyfaasd up again")
            return 1
        return 0 if stop.is_set() else 1
    finally:
        notify.stopping()
        stopping.cancel()
        if anchor is not None:
            anchor.cancel()
        stop_gateway.set()
        failed = await _failed(gateway)
        stop_provider.set()
        failed = (provider is not None and await _failed(provider)) or failed
        await notify.stop_watchdog(watchdog)
        if failed:
            log.error("pyfaasd_up_stopped_after_a_failure")


async def _until(event: asyncio.Event, *tasks: asyncio.Task[Any]) -> bool:
    """Wait until ``event`` is set or one of ``tasks`` ends; whether the event was set."""
    waiter = asyncio.create_task(event.wait())
    try:
        await asyncio.wait({waiter, *tasks}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        waiter.cancel()
    return event.is_set()


async def _failed(task: asyncio.Task[None]) -> bool:
    """Wait for a part to finish; log and return True if it failed."""
    try:
        await task
    except asyncio.CancelledError:
        return False
    except Exception as e:
        structlog.get_logger("pyfaasd.up").error("pyfaasd_up_part_failed", error=str(e), error_type=type(e).__name__)
        return True
    return False
