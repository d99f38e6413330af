"""``pyfaasd gateway`` / ``python -m gateway``: the public API on 0.0.0.0:8080.

Settings come from ``PYFAASD_*`` environment variables, and flags of the same meaning win over them (see
``gateway/config.py`` SETTINGS, and docs/gateway.md). A bad setting or missing credentials exit with status 2;
SIGTERM drains in-flight requests and exits 0.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Mapping, Sequence

from gateway.config import SETTINGS, GatewayConfig
from servicekit.auth import CredentialsError
from servicekit.log import configure_logging
from servicekit.settings import SettingError, add_flags, with_flags

EXIT_CONFIG = 2


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The gateway's flags (each overrides the ``PYFAASD_*`` variable named in its help)."""
    add_flags(parser, SETTINGS)


def config_from(args: argparse.Namespace, env: Mapping[str, str]) -> GatewayConfig:
    """The environment with the given flags laid over it, parsed; SettingError names the variable."""
    return GatewayConfig.from_env(with_flags(env, args, SETTINGS))


def run(args: argparse.Namespace) -> int:
    """Run the gateway as the parsed ``args`` and the environment say; the process exit code."""
    try:
        config = config_from(args, os.environ)
    except SettingError as exc:
        print(f"pyfaasd gateway: configuration error: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    configure_logging(config.log_level)
    from gateway.server import run as serve_forever
    from gateway.tls import TlsError

    try:
        return serve_forever(config)
    except (CredentialsError, TlsError) as exc:
        print(f"pyfaasd gateway: cannot start: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    except OSError as exc:
        print(f"pyfaasd gateway: cannot listen on {config.host}:{config.port}: {exc.strerror}", file=sys.stderr)
        return EXIT_CONFIG


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m gateway", description="pyfaasd gateway")
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
