"""``pyfaasd provider`` (and ``python -m provider``): the faas-provider API over Docker."""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
from collections.abc import Sequence

import structlog

from netconf import ConfigError as NetConfigError
from provider.config import ProviderConfig, PullPolicy
from provider.errors import ProviderError
from servicekit import notify
from servicekit.log import configure_logging
from servicekit.settings import SettingError

FLAGS = {
    "state_dir": "PYFAASD_STATE_DIR",
    "bridge": "PYFAASD_BRIDGE",
    "subnet": "PYFAASD_SUBNET",
    "listen": "PYFAASD_PROVIDER_ADDR",
    "max_replicas": "PYFAASD_MAX_REPLICAS",
    "pull_policy": "PYFAASD_PULL_POLICY",
    "docker_config": "PYFAASD_DOCKER_CONFIG",
    "ready_timeout": "PYFAASD_READY_TIMEOUT",
    "log_level": "PYFAASD_LOG_LEVEL",
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--state-dir", help="state directory (PYFAASD_STATE_DIR, default /var/lib/pyfaasd)")
    parser.add_argument("--bridge", help="bridge name (PYFAASD_BRIDGE, default pyfaasd0)")
    parser.add_argument("--subnet", help="function subnet (PYFAASD_SUBNET, default 10.62.0.0/16)")
    parser.add_argument("--listen", help="listen address (PYFAASD_PROVIDER_ADDR, default 127.0.0.1:8081)")
    parser.add_argument("--max-replicas", help="most replicas of one function (PYFAASD_MAX_REPLICAS, default 20)")
    parser.add_argument(
        "--pull-policy",
        choices=[p.value for p in PullPolicy],
        help="when to pull images (PYFAASD_PULL_POLICY, default if-not-present)",
    )
    parser.add_argument("--docker-config", help="Docker config.json with registry credentials (PYFAASD_DOCKER_CONFIG)")
    parser.add_argument("--ready-timeout", help="how long a new replica may take to become healthy (default 30s)")
    parser.add_argument("--log-level", help="debug, info, warning or error (PYFAASD_LOG_LEVEL, default info)")


def config_from_args(args: argparse.Namespace) -> ProviderConfig:
    overrides = {env: getattr(args, flag, None) for flag, env in FLAGS.items()}
    return ProviderConfig.from_env(os.environ, overrides)


def run(args: argparse.Namespace) -> int:
    try:
        config = config_from_args(args)
        configure_logging(config.log_level)
    except (SettingError, NetConfigError, ValueError) as e:
        print(f"pyfaasd provider: {e}", file=sys.stderr)
        return 2
    return asyncio.run(_main(config))


async def _main(config: ProviderConfig) -> int:
    from provider.server import serve  # the heavy part (aiohttp, aiodocker, pyroute2) only when serving

    log = structlog.get_logger("provider")
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    watchdog = notify.start_watchdog()
    try:
        await serve(config, stop, on_ready=notify.ready, on_stopping=notify.stopping)
    except ProviderError as e:
        log.error("provider_failed", error=str(e))
        return 1
    finally:
        await notify.stop_watchdog(watchdog)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m provider", description="pyfaasd provider")
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
