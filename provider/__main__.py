"""``pyfaasd provider`` (and ``python -m provider``): the faas-provider API over Docker."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Mapping, Sequence

import structlog

from provider.config import SETTINGS, ProviderConfig
from provider.errors import ProviderError
from servicekit import notify
from servicekit.log import configure_logging
from servicekit.settings import SettingError, add_flags, with_flags
from servicekit.shutdown import Shutdown

EXIT_CONFIG = 2


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The provider's flags (each overrides the ``PYFAASD_*`` variable named in its help)."""
    add_flags(parser, SETTINGS)


def config_from(args: argparse.Namespace, env: Mapping[str, str]) -> ProviderConfig:
    """The environment with the given flags laid over it, parsed; SettingError names the variable."""
    return ProviderConfig.from_env(with_flags(env, args, SETTINGS))


def run(args: argparse.Namespace) -> int:
    try:
        config = config_from(args, os.environ)
    except SettingError as e:
        print(f"pyfaasd provider: {e}", file=sys.stderr)
        return EXIT_CONFIG
    configure_logging(config.log_level)
    return asyncio.run(_main(config))


async def _main(config: ProviderConfig) -> int:
    from provider.server import serve  # the heavy part (aiohttp, aiodocker, pyroute2) only when serving

    log = structlog.get_logger("provider")
    shutdown = Shutdown()
    watchdog = notify.start_watchdog()
    try:
        await serve(config, shutdown.requested, on_ready=notify.ready, on_stopping=notify.stopping)
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
