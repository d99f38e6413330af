"""``fwatchdog``: the watchdog's entry point.

Configured only by environment variables (of-watchdog's names, see config.py). A bad value or a function that
cannot be loaded exits with status 2 and a message naming the cause.

``fwatchdog --run-healthcheck`` exits 0 when the lock file exists (for exec health checks), else 1.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence

from servicekit.log import configure_logging
from servicekit.settings import SettingError
from servicekit.version import __version__
from watchdog.config import WatchdogConfig
from watchdog.errors import StartupError
from watchdog.pool import ENV_LOAD, LoadError, take_function

EXIT_CONFIG = 2


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if args in (["--version"], ["-version"]):
        print(f"fwatchdog {__version__}")
        return 0
    if ENV_LOAD in os.environ and not args:
        try:
            take_function(os.environ)  # a pooled container: wait for the provider to give it a function
        except LoadError as exc:
            print(f"fwatchdog: cannot load the pooled function: {exc}", file=sys.stderr)
            return EXIT_CONFIG
    try:
        config = WatchdogConfig.from_env(os.environ)
    except SettingError as exc:
        print(f"fwatchdog: configuration error: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    if args in (["--run-healthcheck"], ["-run-healthcheck"]):
        return 0 if os.path.exists(config.lock_path) else 1
    if args:
        print(
            f"fwatchdog: unknown arguments {args!r}; it is configured by environment variables",
            file=sys.stderr,
        )
        return EXIT_CONFIG
    configure_logging(config.log_level, config.log_json)
    from watchdog.server import run

    try:
        return run(config)
    except StartupError as exc:
        print(f"fwatchdog: cannot start: {exc}", file=sys.stderr)
        return EXIT_CONFIG


if __name__ == "__main__":
    sys.exit(main())
