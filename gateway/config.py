"""The gateway's configuration: a pure function of an environment mapping (flags are laid over it by __main__).

Every setting is a ``PYFAASD_*`` variable and a flag of the same meaning (SETTINGS, read by the table mechanism
of :mod:`servicekit.settings`); a value that does not parse is a :class:`~servicekit.settings.SettingError`
naming the variable.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, Self
from urllib.parse import urlsplit

from servicekit import defaults
from servicekit.auth import secrets_dir
from servicekit.cpus import available_cpus
from servicekit.settings import (
    BACKEND,
    FUNCTION_PORT,
    HEADER_TIMEOUT,
    IDLE_TIMEOUT,
    LOG_LEVEL,
    MAX_CONNECTIONS,
    MAX_REPLICAS,
    STATE_DIR,
    HttpUrl,
    Setting,
    SettingError,
    parse_bool,
    parse_http_url,
    parse_listen_address,
    parse_optional_path,
    parse_positive_duration,
    whole_number,
    workers_count,
)
from servicekit.swarm import DNS_SERVER, Backend

ProviderAddress = HttpUrl  # the provider's base URL, as the gateway's provider client takes it

ADDR: Final = Setting(
    "PYFAASD_GATEWAY_ADDR", "--addr", defaults.GATEWAY_ADDR, "listen address HOST:PORT (IPv4)", parse_listen_address
)
PROVIDER_URL: Final = Setting(
    "PYFAASD_PROVIDER_URL", "--provider-url", defaults.PROVIDER_URL, "where the provider's API is", parse_http_url
)
HOSTS_FILE: Final = Setting(
    "PYFAASD_HOSTS_FILE", "--hosts-file", "", "hosts file to follow", parse_optional_path, unset="<state dir>/hosts"
)
READ_TIMEOUT: Final = Setting(
    "PYFAASD_READ_TIMEOUT",
    "--read-timeout",
    "60s",
    "longest wait for a request body from a client",
    parse_positive_duration,
)
WRITE_TIMEOUT: Final = Setting(
    "PYFAASD_WRITE_TIMEOUT",
    "--write-timeout",
    "60s",
    "longest a write to a client may stall; also the drain time on SIGTERM",
    parse_positive_duration,
)
UPSTREAM_TIMEOUT: Final = Setting(
    "PYFAASD_UPSTREAM_TIMEOUT",
    "--upstream-timeout",
    "60s",
    "deadline for a function or the provider to answer (streamed bodies excepted)",
    parse_positive_duration,
)
CONNECT_TIMEOUT: Final = Setting(
    "PYFAASD_CONNECT_TIMEOUT",
    "--connect-timeout",
    "2s",
    "longest wait to connect to a replica before trying another or answering 503",
    parse_positive_duration,
)
SCALE_FROM_ZERO: Final = Setting(
    "PYFAASD_SCALE_FROM_ZERO",
    "--scale-from-zero",
    "true",
    "scale a function at 0 replicas up on a request",
    parse_bool,
)
SCALE_FROM_ZERO_TIMEOUT: Final = Setting(
    "PYFAASD_SCALE_FROM_ZERO_TIMEOUT",
    "--scale-from-zero-timeout",
    "30s",
    "how long a request waits for a replica after a scale from zero",
    parse_positive_duration,
)
MAX_BODY_BYTES: Final = Setting(
    "PYFAASD_MAX_BODY_BYTES",
    "--max-body-bytes",
    str(64 * 1024 * 1024),
    "largest request body (0 = no limit)",
    whole_number(0),
)
WORKERS: Final = Setting(
    "PYFAASD_GATEWAY_WORKERS",
    "--workers",
    "auto",
    "serving processes sharing the port (SO_REUSEPORT); auto: the CPUs the process may use (cgroup quota, affinity)",
    workers_count(64),
)
ASYNC_MAX_BODY_BYTES: Final = Setting(
    "PYFAASD_ASYNC_MAX_BODY_BYTES",
    "--async-max-body-bytes",
    str(1024 * 1024),
    "largest /async-function request body, kept in the queue until delivered",
    whole_number(1),
)
ASYNC_CONCURRENCY: Final = Setting(
    "PYFAASD_ASYNC_CONCURRENCY",
    "--async-concurrency",
    "4",
    "queued calls of one function run at once (annotation com.pyfaasd.async.concurrency)",
    whole_number(1, 1024),
)
ASYNC_RETENTION: Final = Setting(
    "PYFAASD_ASYNC_RETENTION",
    "--async-retention",
    "24h",
    "how long a finished async call's status stays in the queue",
    parse_positive_duration,
)


def parse_nats_url(name: str, value: str) -> str:
    """A NATS server's URL: ``nats://HOST:PORT`` (or ``tls://``); several, comma-separated, for a cluster."""
    urls = [part.strip() for part in value.split(",") if part.strip()]
    for url in urls:
        parts = urlsplit(url)
        try:
            port = parts.port
        except ValueError:
            raise SettingError(f"{name}: {url!r} has an invalid port") from None
        if parts.scheme not in ("nats", "tls") or not parts.hostname or port is None:
            raise SettingError(f"{name}: {url!r} must be a nats://HOST:PORT URL")
    if not urls:
        raise SettingError(f"{name}: no URL given")
    return ",".join(urls)


SWARM_DNS: Final = Setting(
    "PYFAASD_SWARM_DNS",
    "--swarm-dns",
    f"{DNS_SERVER}:53",
    "with the swarm backend: the DNS server answering tasks.<namespace>_<name> (Docker's embedded one)",
    parse_listen_address,
)
NATS_URL: Final = Setting(
    "PYFAASD_NATS_URL",
    "--nats-url",
    "nats://127.0.0.1:4222",
    "the NATS server (JetStream) holding the async queue with the swarm backend; comma-separated for a cluster",
    parse_nats_url,
)
ASYNC_LEASE: Final = Setting(
    "PYFAASD_ASYNC_LEASE",
    "--async-lease",
    "15s",
    "with the swarm backend: how long a dead gateway's claim on an async call blocks it before another runs it",
    parse_positive_duration,
)
ACCESS_LOG: Final = Setting(
    "PYFAASD_ACCESS_LOG", "--access-log", "true", "one line per /function request (batched)", parse_bool
)

AUTOSCALE: Final = Setting(
    "PYFAASD_AUTOSCALE",
    "--autoscale",
    "true",
    "scale functions between com.openfaas.scale.min and max on their load, and idle ones to zero",
    parse_bool,
)
AUTOSCALE_INTERVAL: Final = Setting(
    "PYFAASD_AUTOSCALE_INTERVAL",
    "--autoscale-interval",
    "1s",
    "how often the autoscaler measures and decides",
    parse_positive_duration,
)
SCALE_DOWN_WINDOW: Final = Setting(
    "PYFAASD_SCALE_DOWN_WINDOW",
    "--scale-down-window",
    "30s",
    "how long a lower replica count must be wanted before replicas are removed (label com.openfaas.scale.down.window)",
    parse_positive_duration,
)
SCALE_ZERO_DURATION: Final = Setting(
    "PYFAASD_SCALE_ZERO_DURATION",
    "--scale-zero-duration",
    "15m",
    "idle time before a function with com.openfaas.scale.zero=true goes to 0 (label com.openfaas.scale.zero-duration)",
    parse_positive_duration,
)

TLS_ADDR: Final = Setting(
    "PYFAASD_TLS_ADDR",
    "--tls-addr",
    "0.0.0.0:8443",
    "HTTPS listen address HOST:PORT, served when a certificate is set",
    parse_listen_address,
)
TLS_CERT: Final = Setting(
    "PYFAASD_TLS_CERT",
    "--tls-cert",
    "",
    "certificate chain (PEM) of the HTTPS listener; reloaded on SIGHUP",
    parse_optional_path,
    unset="no HTTPS",
)
TLS_KEY: Final = Setting(
    "PYFAASD_TLS_KEY", "--tls-key", "", "private key (PEM) of PYFAASD_TLS_CERT", parse_optional_path, unset="—"
)
TLS_DIR: Final = Setting(
    "PYFAASD_TLS_DIR",
    "--tls-dir",
    "",
    "per-domain certificates chosen by SNI: <dir>/<domain>/fullchain.pem+privkey.pem or <dir>/<domain>.crt+.key",
    parse_optional_path,
    unset="none",
)
HTTP_REDIRECT: Final = Setting(
    "PYFAASD_HTTP_REDIRECT",
    "--http-redirect",
    "false",
    "answer plain-HTTP requests for a routed domain with a 308 to HTTPS",
    parse_bool,
)

_DEFAULT_PROVIDER: Final = PROVIDER_URL.read({})

SETTINGS: Final[tuple[Setting[Any], ...]] = (
    ADDR,
    PROVIDER_URL,
    STATE_DIR,
    HOSTS_FILE,
    BACKEND,
    HEADER_TIMEOUT,
    IDLE_TIMEOUT,
    READ_TIMEOUT,
    WRITE_TIMEOUT,
    UPSTREAM_TIMEOUT,
    CONNECT_TIMEOUT,
    SCALE_FROM_ZERO,
    SCALE_FROM_ZERO_TIMEOUT,
    MAX_BODY_BYTES,
    MAX_CONNECTIONS,
    WORKERS,
    FUNCTION_PORT,
    ASYNC_MAX_BODY_BYTES,
    ASYNC_CONCURRENCY,
    ASYNC_RETENTION,
    SWARM_DNS,
    NATS_URL,
    ASYNC_LEASE,
    ACCESS_LOG,
    AUTOSCALE,
    AUTOSCALE_INTERVAL,
    MAX_REPLICAS,
    SCALE_DOWN_WINDOW,
    SCALE_ZERO_DURATION,
    TLS_ADDR,
    TLS_CERT,
    TLS_KEY,
    TLS_DIR,
    HTTP_REDIRECT,
    LOG_LEVEL,
)


@dataclass(frozen=True, slots=True)
class GatewayConfig:
    host: str = "0.0.0.0"
    port: int = 8080
    provider: ProviderAddress = _DEFAULT_PROVIDER
    state_dir: Path = defaults.STATE_DIR
    hosts_file: Path = defaults.STATE_DIR / "hosts"
    backend: Backend = Backend.DOCKER  # swarm: replicas from Swarm's DNS instead of the hosts file
    header_timeout_s: float = defaults.HEADER_TIMEOUT_S
    idle_timeout_s: float = defaults.IDLE_TIMEOUT_S
    read_timeout_s: float = 60.0
    write_timeout_s: float = 60.0
    upstream_timeout_s: float = 60.0
    connect_timeout_s: float = 2.0
    scale_from_zero: bool = True
    scale_from_zero_timeout_s: float = 30.0
    max_body_bytes: int = 64 * 1024 * 1024
    max_connections: int | None = None  # None: three quarters of the open-file limit (servicekit.open_files)
    workers: int = field(default_factory=lambda: min(available_cpus(), 64))  # PYFAASD_GATEWAY_WORKERS=auto
    function_port: int = defaults.FUNCTION_PORT
    async_max_body_bytes: int = 1024 * 1024
    async_concurrency: int = 4
    async_retention_s: float = 24 * 3600.0
    swarm_dns: tuple[str, int] = (DNS_SERVER, 53)
    nats_url: str = "nats://127.0.0.1:4222"  # the async queue's NATS server with the swarm backend
    async_lease_s: float = 15.0
    access_log: bool = True
    autoscale: bool = True
    autoscale_interval_s: float = 1.0
    max_replicas: int = 20
    scale_down_window_s: float = 30.0
    scale_zero_duration_s: float = 15 * 60.0
    tls_host: str = "0.0.0.0"
    tls_port: int = 8443
    tls_cert: Path | None = None
    tls_key: Path | None = None
    tls_dir: Path | None = None
    http_redirect: bool = False
    log_level: str = "info"

    @property
    def tls(self) -> bool:
        """Whether the gateway serves HTTPS (a certificate, or a directory of them, is set)."""
        return self.tls_cert is not None or self.tls_dir is not None

    @property
    def routes_file(self) -> Path:
        """The routes file the provider writes (netconf/routes.py)."""
        return self.state_dir / "routes"

    @property
    def secrets_dir(self) -> Path:
        return secrets_dir(self.state_dir)

    @property
    def async_dir(self) -> Path:
        """The async queue's directory: ``queue.db`` (SQLite, WAL; the docker backend) and the dispatcher's lock."""
        return self.state_dir / "async"

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Self:
        """Read ``PYFAASD_*`` from ``env``; unset or empty variables take their default."""
        host, port = ADDR.read(env)
        state_dir = STATE_DIR.read(env)
        tls_host, tls_port = TLS_ADDR.read(env)
        tls_cert, tls_key = TLS_CERT.read(env), TLS_KEY.read(env)
        if (tls_cert is None) != (tls_key is None):
            raise SettingError(f"{TLS_CERT.env} and {TLS_KEY.env} go together: set both or neither")
        tls_dir = TLS_DIR.read(env)
        http_redirect = HTTP_REDIRECT.read(env)
        if http_redirect and tls_cert is None and tls_dir is None:
            raise SettingError(
                f"{HTTP_REDIRECT.env} needs HTTPS: set {TLS_CERT.env} and {TLS_KEY.env} or {TLS_DIR.env}"
            )
        return cls(
            host=host,
            port=port,
            provider=PROVIDER_URL.read(env),
            state_dir=state_dir,
            hosts_file=HOSTS_FILE.read(env) or state_dir / "hosts",
            backend=BACKEND.read(env),
            header_timeout_s=HEADER_TIMEOUT.read(env),
            idle_timeout_s=IDLE_TIMEOUT.read(env),
            read_timeout_s=READ_TIMEOUT.read(env),
            write_timeout_s=WRITE_TIMEOUT.read(env),
            upstream_timeout_s=UPSTREAM_TIMEOUT.read(env),
            connect_timeout_s=CONNECT_TIMEOUT.read(env),
            scale_from_zero=SCALE_FROM_ZERO.read(env),
            scale_from_zero_timeout_s=SCALE_FROM_ZERO_TIMEOUT.read(env),
            max_body_bytes=MAX_BODY_BYTES.read(env),
            max_connections=MAX_CONNECTIONS.read(env),
            workers=WORKERS.read(env),
            function_port=FUNCTION_PORT.read(env),
            async_max_body_bytes=ASYNC_MAX_BODY_BYTES.read(env),
            async_concurrency=ASYNC_CONCURRENCY.read(env),
            async_retention_s=ASYNC_RETENTION.read(env),
            swarm_dns=SWARM_DNS.read(env),
            nats_url=NATS_URL.read(env),
            async_lease_s=ASYNC_LEASE.read(env),
            access_log=ACCESS_LOG.read(env),
            autoscale=AUTOSCALE.read(env),
            autoscale_interval_s=AUTOSCALE_INTERVAL.read(env),
            max_replicas=MAX_REPLICAS.read(env),
            scale_down_window_s=SCALE_DOWN_WINDOW.read(env),
            scale_zero_duration_s=SCALE_ZERO_DURATION.read(env),
            tls_host=tls_host,
            tls_port=tls_port,
            tls_cert=tls_cert,
            tls_key=tls_key,
            tls_dir=tls_dir,
            http_redirect=http_redirect,
            log_level=LOG_LEVEL.read(env),
        )

    def summary(self) -> dict[str, Any]:
        """The effective settings, for the one start-up log line."""
        return {
            "address": f"{self.host}:{self.port}",
            "provider_url": self.provider.url,
            "hosts_file": str(self.hosts_file),
            "backend": self.backend.value,
            "secrets_dir": str(self.secrets_dir),
            "header_timeout_s": self.header_timeout_s,
            "idle_timeout_s": self.idle_timeout_s,
            "read_timeout_s": self.read_timeout_s,
            "write_timeout_s": self.write_timeout_s,
            "upstream_timeout_s": self.upstream_timeout_s,
            "connect_timeout_s": self.connect_timeout_s,
            "scale_from_zero": self.scale_from_zero,
            "scale_from_zero_timeout_s": self.scale_from_zero_timeout_s,
            "max_body_bytes": self.max_body_bytes,
            "max_connections": self.max_connections or "three quarters of the open-file limit",
            "workers": self.workers,
            "function_port": self.function_port,
            "async_max_body_bytes": self.async_max_body_bytes,
            "async_concurrency": self.async_concurrency,
            "async_retention_s": self.async_retention_s,
            "access_log": self.access_log,
            "autoscale": self.autoscale,
            "autoscale_interval_s": self.autoscale_interval_s,
            "max_replicas": self.max_replicas,
            "scale_down_window_s": self.scale_down_window_s,
            "scale_zero_duration_s": self.scale_zero_duration_s,
            "routes_file": str(self.routes_file),
            "tls_address": f"{self.tls_host}:{self.tls_port}" if self.tls else "off",
            "tls_cert": str(self.tls_cert) if self.tls_cert else None,
            "tls_dir": str(self.tls_dir) if self.tls_dir else None,
            "http_redirect": self.http_redirect,
        }
