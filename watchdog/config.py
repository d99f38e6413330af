"""The watchdog's configuration: a pure function of an environment mapping.

Variable names and defaults follow of-watchdog (config/config.go); the values are read by the parsers every
pyfaasd daemon uses (:mod:`servicekit.settings`: durations, booleans as Go's ``strconv.ParseBool`` takes them
and more, whole numbers). Unlike of-watchdog, a value that does not parse is a
:class:`~servicekit.settings.SettingError` naming the variable, never a silent fallback to the default.
"""

from __future__ import annotations

import os
import shlex
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Self
from urllib.parse import urlsplit

from servicekit.settings import (
    Choice,
    SettingError,
    parse_bool,
    parse_duration,
    parse_http_url,
    parse_int,
    parse_log_level,
    parse_positive_duration,
    workers_count,
)


class Mode(StrEnum):
    HTTP = "http"
    STREAMING = "streaming"
    SERIALIZING = "serializing"
    STATIC = "static"
    PYTHON = "python"


# Modes that run `fprocess` and therefore need it set.
PROCESS_MODES = frozenset({Mode.HTTP, Mode.STREAMING, Mode.SERIALIZING})

_parse_mode = Choice(Mode)


@dataclass(frozen=True, slots=True)
class WatchdogConfig:
    mode: Mode = Mode.STREAMING
    fprocess: tuple[str, ...] = ()
    upstream_url: str = ""
    port: int = 8080
    metrics_port: int = 8081
    read_timeout_s: float = 30.0
    write_timeout_s: float = 30.0
    exec_timeout_s: float = 30.0
    healthcheck_interval_s: float = 30.0
    max_inflight: int = 0
    max_body_bytes: int = 0  # http mode's request body limit; 0 is none, as in of-watchdog
    prefix_logs: bool = True
    log_buffer_size: int = 65536
    content_type: str = "application/octet-stream"
    suppress_lock: bool = False
    buffer_http: bool = False
    static_path: str = "/home/app/public"
    ready_path: str = ""
    log_callid: bool = False
    function_path: str = "/home/app/function"
    packages_path: str = "/home/app/packages"
    function_reload: bool = False  # python mode: re-import the handler when a file under function_path changes
    lock_path: str = "/tmp/.lock"  # noqa: S108  (of-watchdog's lock file, $TMPDIR/.lock)
    # Default: in http mode the CPUs the container may use (auto: its cgroup quota, else the cores), as the Go
    # of-watchdog uses every core; the workers are proxies to the one function process. Other modes: 1, so a
    # python handler keeps one process (its globals seen by every request) unless asked.
    workers: int = 1
    log_requests: bool = True
    log_level: str = "info"
    log_json: bool | None = None

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Self:
        """Read the configuration from ``env``; raise SettingError naming the first bad variable."""

        def first(*names: str) -> tuple[str, str] | None:
            for key in names:
                if key in env:
                    return key, env[key]
            return None

        defaults = cls()
        mode = _parse_mode("mode", env["mode"]) if "mode" in env else defaults.mode

        fprocess: tuple[str, ...] = ()
        found = first("function_process", "fprocess")
        if found is not None:
            key, value = found
            try:
                fprocess = tuple(shlex.split(value))
            except ValueError as exc:
                raise SettingError(f"{key}: {value!r} cannot be split into arguments: {exc}") from None
        if mode in PROCESS_MODES and not fprocess:
            raise SettingError(f"fprocess: required in {mode} mode (the command that runs the function)")

        upstream_url = ""
        found = first("http_upstream_url", "upstream_url")
        if found is not None:
            upstream_url = parse_http_url(*found).url
        if mode is Mode.HTTP and not upstream_url:
            raise SettingError("upstream_url: required in http mode (where fprocess listens)")

        def duration(key: str, default: float) -> float:
            return parse_duration(key, env[key]) if key in env else default

        def integer(key: str, default: int, *, minimum: int, maximum: int | None = None) -> int:
            return parse_int(key, env[key], minimum=minimum, maximum=maximum) if key in env else default

        def boolean(key: str, default: bool) -> bool:
            return parse_bool(key, env[key]) if key in env else default

        write_timeout = (
            parse_positive_duration("write_timeout", env["write_timeout"])
            if "write_timeout" in env
            else defaults.write_timeout_s
        )
        port = integer("port", defaults.port, minimum=1, maximum=65535)
        metrics_port = integer("metrics_port", defaults.metrics_port, minimum=0, maximum=65535)
        if metrics_port == port:
            raise SettingError(f"metrics_port: {metrics_port} is the same as port (use another, or 0 for none)")
        log_buffer_size = integer("log_buffer_size", defaults.log_buffer_size, minimum=-1)
        if log_buffer_size == 0:
            raise SettingError("log_buffer_size: must be -1 (unlimited) or a positive number of bytes")

        buffer_http = False
        found = first("http_buffer_req_body", "buffer_http")
        if found is not None:
            buffer_http = parse_bool(*found)

        log_json: bool | None = None
        if "log_format" in env:
            fmt = env["log_format"].strip().lower()
            if fmt not in {"json", "console"}:
                raise SettingError(f"log_format: {fmt!r} must be json or console")
            log_json = fmt == "json"
        log_level = parse_log_level("log_level", env.get("log_level", defaults.log_level))

        content_type = env.get("content_type", defaults.content_type).strip()
        if not content_type or "\n" in content_type or "\r" in content_type:
            raise SettingError(f"content_type: {content_type!r} is not a usable Content-Type")
        ready_path = env.get("ready_path", "").strip()
        if ready_path and not ready_path.startswith("/"):
            raise SettingError(f"ready_path: {ready_path!r} must start with /")

        return cls(
            mode=mode,
            fprocess=fprocess,
            upstream_url=upstream_url,
            port=port,
            metrics_port=metrics_port,
            read_timeout_s=duration("read_timeout", defaults.read_timeout_s),
            write_timeout_s=write_timeout,
            exec_timeout_s=duration("exec_timeout", defaults.exec_timeout_s),
            healthcheck_interval_s=duration("healthcheck_interval", write_timeout),
            max_inflight=integer("max_inflight", defaults.max_inflight, minimum=0),
            max_body_bytes=integer("max_body_bytes", defaults.max_body_bytes, minimum=0),
            prefix_logs=boolean("prefix_logs", defaults.prefix_logs),
            log_buffer_size=log_buffer_size,
            content_type=content_type,
            suppress_lock=boolean("suppress_lock", defaults.suppress_lock),
            buffer_http=buffer_http,
            static_path=env.get("static_path", defaults.static_path),
            ready_path=ready_path,
            log_callid=boolean("log_callid", defaults.log_callid),
            function_path=env.get("function_path", defaults.function_path),
            packages_path=env.get("packages_path", defaults.packages_path),
            function_reload=boolean("function_reload", defaults.function_reload),
            lock_path=os.path.join(env.get("TMPDIR") or "/tmp", ".lock"),  # noqa: S108
            workers=workers_count(64)("workers", env.get("workers") or ("auto" if mode is Mode.HTTP else "1")),
            log_requests=boolean("log_requests", defaults.log_requests),
            log_level=log_level,
            log_json=log_json,
        )

    @property
    def upstream_address(self) -> tuple[str, int]:
        """Host and port of ``upstream_url`` (which from_env always writes with both)."""
        parts = urlsplit(self.upstream_url)
        return parts.hostname or "", parts.port or 0

    def summary(self) -> dict[str, object]:
        """The effective configuration, for one log line at start."""
        return {
            "mode": self.mode.value,
            "fprocess": " ".join(self.fprocess),
            "upstream_url": self.upstream_url,
            "port": self.port,
            "metrics_port": self.metrics_port,
            "read_timeout_s": self.read_timeout_s,
            "write_timeout_s": self.write_timeout_s,
            "exec_timeout_s": self.exec_timeout_s,
            "healthcheck_interval_s": self.healthcheck_interval_s,
            "max_inflight": self.max_inflight,
            "workers": self.workers,
        }
