"""Logging set-up shared by every pyfaasd process: the watchdog, the provider, the gateway, netconf and the CLI.

structlog renders JSON when the output is not a terminal (journald, Docker) and a readable console format when
it is. Events are snake_case names with keyword fields; per-request values (``request_id``, ``function``) are
bound with :func:`structlog.contextvars.bound_contextvars` so every line of a request carries them.
Standard-library loggers (aiohttp, aiodocker) go through structlog's ``ProcessorFormatter`` to the same
renderer and stream, so a process writes one format.
"""

from __future__ import annotations

import logging
import sys
from typing import Any, TextIO

import structlog

_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING, "error": logging.ERROR}


def parse_level(name: str) -> int:
    """The logging level for ``name`` (debug, info, warning, error); ValueError otherwise."""
    try:
        return _LEVELS[name.strip().lower()]
    except KeyError:
        raise ValueError(f"log level must be one of {', '.join(_LEVELS)}, got {name!r}") from None


def configure_logging(level: str = "info", json: bool | None = None, *, stream: TextIO | None = None) -> None:
    """Configure structlog and the standard library once, at process start.

    Lines go to ``stream`` (default stdout); ``json=None`` picks JSON unless it is a TTY.
    """
    numeric = parse_level(level)
    out = sys.stdout if stream is None else stream
    use_json = (not out.isatty()) if json is None else json
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    rendering: list[Any] = (
        [structlog.processors.dict_tracebacks, structlog.processors.JSONRenderer()]
        if use_json
        else [structlog.dev.ConsoleRenderer(colors=out.isatty())]
    )
    structlog.configure(
        processors=[*shared, *rendering],
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        # One write per line (PrintLogger writes the newline apart), so forked workers never interleave lines.
        logger_factory=structlog.WriteLoggerFactory(out),
        cache_logger_on_first_use=True,
    )
    handler = logging.StreamHandler(out)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=shared,
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, *rendering],
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(numeric)
    # One canonical line per request comes from our own middleware.
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
