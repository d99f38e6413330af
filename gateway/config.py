"""The gateway's configuration: a pure function of an environment mapping (flags are laid over it by __main__).

Every setting is a ``PYFAASD_*`` variable and a flag of the same meaning (SETTINGS); a value that does not parse
is a :class:`~servicekit.settings.SettingError` naming the variable.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Self
from urllib.parse import urlsplit

from servicekit.auth import secrets_dir
from servicekit.log import parse_level
from servicekit.settings import SettingError, parse_bool, parse_duration, parse_int, parse_listen_address


@dataclass(frozen=True, slots=True)
class Setting:
    env: str
    flag: str
    default: str
    help: str


SETTINGS: Final = (
    Setting("PYFAASD_GATEWAY_ADDR", "--addr", "0.0.0.0:8080", "listen address HOST:PORT (IPv4)"),
    Setting("PYFAASD_PROVIDER_URL", "--provider-url", "http://127.0.0.1:8081", "where the provider's API is"),
    Setting("PYFAASD_STATE_DIR", "--state-dir", "/var/lib/pyfaasd", "state dir (hosts file, secrets/basic-auth-*)"),
    Setting("PYFAASD_HOSTS_FILE", "--hosts-file", "", "hosts file to follow (default <state dir>/hosts)"),
    Setting("PYFAASD_READ_TIMEOUT", "--read-timeout", "60s", "longest wait for a request body from a client"),
    Setting(
        "PYFAASD_WRITE_TIMEOUT",
        "--write-timeout",
        "60s",
        "longest a write to a client may stall; also the drain time on SIGTERM",
    ),
    Setting(
        "PYFAASD_UPSTREAM_TIMEOUT",
        "--upstream-timeout",
        "60s",
        "deadline for a function or the provider to answer (streamed bodies excepted)",
    ),
    Setting("PYFAASD_SCALE_FROM_ZERO", "--scale-from-zero", "true", "scale a function at 0 replicas up on a request"),
    Setting(
        "PYFAASD_SCALE_FROM_ZERO_TIMEOUT",
        "--scale-from-zero-timeout",
        "30s",
        "how long a request waits for a replica after a scale from zero",
    ),
    Setting("PYFAASD_MAX_BODY_BYTES", "--max-body-bytes", str(64 * 1024 * 1024), "largest request body (0 = no limit)"),
    Setting("PYFAASD_GATEWAY_WORKERS", "--workers", "1", "serving processes sharing the port (SO_REUSEPORT)"),
    Setting("PYFAASD_FUNCTION_PORT", "--function-port", "8080", "port of the watchdog in every replica"),
    Setting("PYFAASD_ACCESS_LOG", "--access-log", "true", "one line per /function request (batched)"),
    Setting("PYFAASD_LOG_LEVEL", "--log-level", "info", "debug, info, warning or error"),
)
_DEFAULTS: Final = {s.env: s.default for s in SETTINGS}


@dataclass(frozen=True, slots=True)
class ProviderAddress:
    """The provider's base URL split for the upstream client: ``http://host:port[/base]``."""

    url: str
    host: str
    port: int
    base_path: str  # "" or "/prefix" without a trailing slash

    @classmethod
    def parse(cls, name: str, value: str) -> ProviderAddress:
        parts = urlsplit(value.strip())
        if parts.scheme != "http" or not parts.hostname:
            raise SettingError(f"{name}: {value!r} must be an http:// URL such as http://127.0.0.1:8081")
        try:
            port = parts.port or 80
        except ValueError:
            raise SettingError(f"{name}: {value!r} has an invalid port") from None
        host = "127.0.0.1" if parts.hostname == "localhost" else parts.hostname
        if ":" in host:
            raise SettingError(f"{name}: {value!r} is IPv6; pyfaasd dials IPv4 only")
        if parts.query or parts.fragment:
            raise SettingError(f"{name}: {value!r} must not have a query or fragment")
        base = parts.path.rstrip("/")
        return cls(url=f"http://{host}:{port}{base}", host=host, port=port, base_path=base)


@dataclass(frozen=True, slots=True)
class GatewayConfig:
    host: str = "0.0.0.0"
    port: int = 8080
    provider: ProviderAddress = ProviderAddress("http://127.0.0.1:8081", "127.0.0.1", 8081, "")
    state_dir: Path = Path("/var/lib/pyfaasd")
    hosts_file: Path = Path("/var/lib/pyfaasd/hosts")
    read_timeout_s: float = 60.0
    write_timeout_s: float = 60.0
    upstream_timeout_s: float = 60.0
    scale_from_zero: bool = True
    scale_from_zero_timeout_s: float = 30.0
    max_body_bytes: int = 64 * 1024 * 1024
    workers: int = 1
    function_port: int = 8080
    access_log: bool = True
    log_level: str = "info"

    @property
    def secrets_dir(self) -> Path:
        return secrets_dir(self.state_dir)

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Self:
        """Read ``PYFAASD_*`` from ``env``; unset or empty variables take their default."""

        def get(name: str) -> str:
            value = env.get(name, "")
            return value if value.strip() else _DEFAULTS[name]

        host, port = parse_listen_address("PYFAASD_GATEWAY_ADDR", get("PYFAASD_GATEWAY_ADDR"))
        state_dir = Path(get("PYFAASD_STATE_DIR"))
        hosts = get("PYFAASD_HOSTS_FILE")
        level = get("PYFAASD_LOG_LEVEL").strip().lower()
        try:
            parse_level(level)
        except ValueError as exc:
            raise SettingError(f"PYFAASD_LOG_LEVEL: {exc}") from None
        return cls(
            host=host,
            port=port,
            provider=ProviderAddress.parse("PYFAASD_PROVIDER_URL", get("PYFAASD_PROVIDER_URL")),
            state_dir=state_dir,
            hosts_file=Path(hosts) if hosts else state_dir / "hosts",
            read_timeout_s=_positive("PYFAASD_READ_TIMEOUT", get("PYFAASD_READ_TIMEOUT")),
            write_timeout_s=_positive("PYFAASD_WRITE_TIMEOUT", get("PYFAASD_WRITE_TIMEOUT")),
            upstream_timeout_s=_positive("PYFAASD_UPSTREAM_TIMEOUT", get("PYFAASD_UPSTREAM_TIMEOUT")),
            scale_from_zero=parse_bool("PYFAASD_SCALE_FROM_ZERO", get("PYFAASD_SCALE_FROM_ZERO")),
            scale_from_zero_timeout_s=_positive(
                "PYFAASD_SCALE_FROM_ZERO_TIMEOUT", get("PYFAASD_SCALE_FROM_ZERO_TIMEOUT")
            ),
            max_body_bytes=parse_int("PYFAASD_MAX_BODY_BYTES", get("PYFAASD_MAX_BODY_BYTES"), minimum=0),
            workers=parse_int("PYFAASD_GATEWAY_WORKERS", get("PYFAASD_GATEWAY_WORKERS"), minimum=1, maximum=64),
            function_port=parse_int("PYFAASD_FUNCTION_PORT", get("PYFAASD_FUNCTION_PORT"), minimum=1, maximum=65535),
            access_log=parse_bool("PYFAASD_ACCESS_LOG", get("PYFAASD_ACCESS_LOG")),
            log_level=level,
        )

    def summary(self) -> dict[str, Any]:
        """The effective settings, for the one start-up log line."""
        return {
            "address": f"{self.host}:{self.port}",
            "provider_url": self.provider.url,
            "hosts_file": str(self.hosts_file),
            "secrets_dir": str(self.secrets_dir),
            "read_timeout_s": self.read_timeout_s,
            "write_timeout_s": self.write_timeout_s,
            "upstream_timeout_s": self.upstream_timeout_s,
            "scale_from_zero": self.scale_from_zero,
            "scale_from_zero_timeout_s": self.scale_from_zero_timeout_s,
            "max_body_bytes": self.max_body_bytes,
            "workers": self.workers,
            "function_port": self.function_port,
            "access_log": self.access_log,
        }


def _positive(name: str, value: str) -> float:
    seconds = parse_duration(name, value)
    if seconds <= 0 or seconds == float("inf"):
        raise SettingError(f"{name}: {value!r} must be a finite duration above zero")
    return seconds
