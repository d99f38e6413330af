"""``fwatchdog``: the watchdog's entry point.

Configured only by environment variables (of-watchdog's names, see config.py). A bad value or a function that
cannot be loaded exits with status 2 and a message naming the cause.

``fwatchdog --run-healthcheck`` exits 0 when the lock file exists (for exec health checks), else 1.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence

# structlog's development renderer loads rich when it is installed (a development venv has it, for
# import-linter): about 7 MB in every watchdog process, for tracebacks the watchdog renders plainly. It is hidden
# only while structlog loads; a python-mode handler can still import it. (The images have no rich.)
_HIDE_RICH = "rich" not in sys.modules
if _HIDE_RICH:
    sys.modules["rich"] = None  # type: ignore[assignment]
import structlog  # noqa: E402,F401

if _HIDE_RICH:
    del sys.modules["rich"]

from servicekit.log import configure_logging  # noqa: E402
from servicekit.settings import SettingError  # noqa: E402
from servicekit.version import __version__  # noqa: E402
from watchdog.config import WatchdogConfig  # noqa: E402
from watchdog.errors import StartupError  # noqa: E402
from watchdog.pool import ENV_LOAD, LoadError, take_function  # noqa: E402

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
