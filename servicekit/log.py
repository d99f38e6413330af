"""Logging set-up shared by the provider, the gateway and the CLI.

structlog renders JSON when stdout is not a terminal (journald, Docker) and a readable console format when it
is. Events are snake_case names with keyword fields; per-request values (``request_id``, ``function``) are bound
with :func:`structlog.contextvars.bound_contextvars` so every line of a request carries them. Standard-library
loggers (aiohttp, aiodocker) are routed through the same renderer.

The watchdog has its own copy in ``watchdog/log.py`` because it ships alone inside function images and may not
import this package (docs/architecture.md).
"""

from __future__ import annotations

import logging
import sys
from typing import Any

import structlog

_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING, "error": logging.ERROR}


def parse_level(name: str) -> int:
    """The logging level for ``name`` (debug, info, warning, error); ValueError otherwise."""
    try:
        return _LEVELS[name.strip().lower()]
    except KeyError:
        raise ValueError(f"log level must be one of {', '.join(_LEVELS)}, got {name!r}") from None


def configure_logging(level: str = "info", json: bool | None = None) -> None:
    """Configure structlog and the standard library once, at process start.

    ``json=None`` picks JSON unless stdout is a TTY.
    """
    numeric = parse_level(level)
    use_json = (not sys.stdout.isatty()) if json is None else json
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    renderer: Any = (
        structlog.processors.JSONRenderer() if use_json else structlog.dev.ConsoleRenderer(colors=sys.stdout.isatty())
    )
    structlog.configure(
        processors=[*shared, structlog.processors.dict_tracebacks, renderer] if use_json else [*shared, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        # One write per line (PrintLogger writes the newline apart), so forked workers never interleave lines.
        logger_factory=structlog.WriteLoggerFactory(sys.stdout),
        cache_logger_on_first_use=True,
    )
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=shared,
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(numeric)
    # One canonical line per request comes from our own middleware.
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
