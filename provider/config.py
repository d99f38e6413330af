"""The provider's settings: ``PYFAASD_*`` env vars, most also a flag of ``pyfaasd provider`` (docs/provider.md).

SETTINGS is the table (servicekit.settings): the network's rows come from netconf, the shared ones from
servicekit; a row without a flag is read from the environment only.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, Self

from netconf import NetConfig
from netconf.config import BRIDGE, FUNCTION_HOST_PORTS, ISOLATE_FUNCTIONS, SUBNET
from provider.code_store import CodeLimits
from provider.dependencies import PipSettings
from provider.errors import InvalidRequestError
from provider.quantity import memory_bytes, nano_cpus
from servicekit import defaults, settings
from servicekit.settings import (
    LOG_LEVEL,
    MAX_REPLICAS,
    STATE_DIR,
    Choice,
    Setting,
    parse_duration,
    parse_listen_address,
    parse_optional_path,
    parse_text,
    whole_number,
)
from servicekit.swarm import Backend as Backend  # re-exported: the provider's callers name it here


class PullPolicy(enum.StrEnum):
    IF_NOT_PRESENT = "if-not-present"
    ALWAYS = "always"
    NEVER = "never"


BACKEND: Final = settings.BACKEND
SWARM_NETWORK: Final = Setting(
    "PYFAASD_SWARM_NETWORK",
    "--swarm-network",
    "pyfaasd-functions",
    "the attachable overlay network of function services (swarm backend)",
    parse_text,
)
LISTEN: Final = Setting(
    "PYFAASD_PROVIDER_ADDR", "--listen", defaults.PROVIDER_ADDR, "where the provider listens", parse_listen_address
)
# The gateway's client limits, read by the provider's listener too (env only: one setting for both under `up`).
HEADER_TIMEOUT: Final = settings.HEADER_TIMEOUT.with_flag(None)
IDLE_TIMEOUT: Final = settings.IDLE_TIMEOUT.with_flag(None)
PULL_POLICY: Final = Setting(
    "PYFAASD_PULL_POLICY", "--pull-policy", PullPolicy.IF_NOT_PRESENT.value, "when to pull images", Choice(PullPolicy)
)
DOCKER_CONFIG: Final = Setting(
    "PYFAASD_DOCKER_CONFIG",
    "--docker-config",
    "",
    "a Docker config.json with registry credentials",
    parse_optional_path,
)
READY_TIMEOUT: Final = Setting(
    "PYFAASD_READY_TIMEOUT",
    "--ready-timeout",
    "30s",
    "how long a new replica may take to become healthy",
    parse_duration,
)
PIDS_LIMIT: Final = Setting("PYFAASD_PIDS_LIMIT", None, "512", "pids limit per function container", whole_number(16))
SECRETS_GID: Final = Setting(
    "PYFAASD_SECRETS_GID",
    None,
    "2000",
    "group owning secret files, added to function containers",
    whole_number(1, 2**31 - 1),
)
STOP_TIMEOUT: Final = Setting("PYFAASD_STOP_TIMEOUT", None, "10s", "Docker stop timeout of a replica", parse_duration)
DRAIN_TIMEOUT: Final = Setting(
    "PYFAASD_DRAIN_TIMEOUT",
    None,
    "60s",
    "longest a replica being removed may take to finish its in-flight requests before it is stopped",
    parse_duration,
)
FUNCTION_PORT: Final = settings.FUNCTION_PORT.with_flag(None)  # a flag of the gateway only
CODE_MAX_BYTES: Final = Setting(
    "PYFAASD_CODE_MAX_BYTES", None, str(64 << 20), "largest code bundle upload (bytes)", whole_number(1)
)
CODE_MAX_FILES: Final = Setting(
    "PYFAASD_CODE_MAX_FILES", None, "10000", "most files in one code bundle", whole_number(1)
)
CODE_MAX_UNPACKED_BYTES: Final = Setting(
    "PYFAASD_CODE_MAX_UNPACKED_BYTES", None, str(256 << 20), "largest unpacked code bundle (bytes)", whole_number(1)
)


def parse_find_links(name: str, value: str) -> tuple[Path, ...]:
    """Whitespace-separated absolute directories of wheels (mounted read-only into the installer)."""
    found = []
    for item in value.split():
        path = Path(item)
        if not path.is_absolute():
            raise settings.SettingError(f"{name}: {item!r} is not an absolute directory path")
        found.append(path)
    return tuple(found)


def parse_index_url(name: str, value: str) -> str:
    """An http(s) URL, or empty for pip's default index."""
    text = value.strip()
    if text and not text.startswith(("http://", "https://")):
        raise settings.SettingError(f"{name}: {value!r} is not an http:// or https:// URL")
    return text


def parse_host_roots(name: str, value: str) -> tuple[Path, ...]:
    """Colon-separated absolute directories (empty: host paths refused)."""
    roots = []
    for item in filter(None, value.split(":")):
        if not item.startswith("/"):
            raise settings.SettingError(f"{name}: {item!r} is not an absolute directory path")
        roots.append(Path(item))
    return tuple(roots)


VOLUME_HOST_ROOTS: Final = Setting(
    "PYFAASD_VOLUME_HOST_ROOTS",
    None,
    "",
    "colon-separated directories under which volumes may bind host paths",
    parse_host_roots,
    "none (host paths refused)",
)


def _quantity(kind: str) -> settings.Parser[int | None]:
    """A Kubernetes quantity (``128Mi``, ``500m``) as bytes or nano-CPUs; empty: none."""

    def parse(name: str, value: str) -> int | None:
        if not value.strip():
            return None
        try:
            return memory_bytes(name, value) if kind == "memory" else nano_cpus(name, value)
        except InvalidRequestError as e:
            raise settings.SettingError(str(e)) from None

    return parse


DEFAULT_MEMORY: Final = Setting(
    "PYFAASD_DEFAULT_MEMORY",
    None,
    "",
    "memory limit of a function that sets none (e.g. 256Mi)",
    _quantity("memory"),
    "none",
)
DEFAULT_CPU: Final = Setting(
    "PYFAASD_DEFAULT_CPU", None, "", "CPU limit of a function that sets none (e.g. 500m)", _quantity("cpu"), "none"
)
DEFAULT_READ_ONLY_ROOT: Final = Setting(
    "PYFAASD_DEFAULT_READ_ONLY_ROOT",
    None,
    "false",
    "every function gets a read-only root with a writable /tmp (opt out: annotation com.pyfaasd.writable-root)",
    settings.parse_bool,
)
REGISTRIES: Final = Setting(
    "PYFAASD_REGISTRIES",
    None,
    "/etc/pyfaasd/registries.yaml",
    "mirrors per registry (read at start and on SIGHUP; a missing file: none)",
    settings.parse_path,
)
PULL_TIMEOUT: Final = Setting(
    "PYFAASD_PULL_TIMEOUT", None, "10m", "longest one pull from one source may take", settings.parse_positive_duration
)
PIP_INDEX_URL: Final = Setting(
    "PYFAASD_PIP_INDEX_URL", None, "", "where pip finds code functions' requirements", parse_index_url, "pip's default"
)
PIP_FIND_LINKS: Final = Setting(
    "PYFAASD_PIP_FIND_LINKS",
    None,
    "",
    "local directories of wheels for requirements (alone: no network)",
    parse_find_links,
    "none",
)
PIP_TIMEOUT: Final = Setting(
    "PYFAASD_PIP_TIMEOUT", None, "10m", "longest a requirements install may take", settings.parse_positive_duration
)


def parse_runtimes(name: str, value: str) -> tuple[str, ...]:
    """Comma-separated image references; empty: none."""
    found = tuple(part.strip() for part in value.split(",") if part.strip())
    for ref in found:
        if any(c.isspace() for c in ref):
            raise settings.SettingError(f"{name}: {ref!r} is not an image reference")
    return found


POOL_SIZE: Final = Setting(
    "PYFAASD_POOL_SIZE",
    None,
    "2",
    "started, idle containers kept per pool runtime for code functions (0: no pool)",
    whole_number(0, 64),
)
POOL_RUNTIMES: Final = Setting(
    "PYFAASD_POOL_RUNTIMES",
    None,
    "pyfaasd/runtime-python:latest",
    "runtime images the warm pool keeps containers of (comma-separated)",
    parse_runtimes,
)
ZERO_PAUSE: Final = Setting(
    "PYFAASD_ZERO_PAUSE",
    None,
    "5m",
    "how long a function scaled to zero keeps its last replica paused, for a fast wake (0: stopped at once)",
    parse_duration,
)

SETTINGS: Final[tuple[Setting[Any], ...]] = (
    STATE_DIR,
    BRIDGE,
    SUBNET,
    FUNCTION_HOST_PORTS,
    ISOLATE_FUNCTIONS,
    BACKEND,
    SWARM_NETWORK,
    LISTEN,
    HEADER_TIMEOUT,
    IDLE_TIMEOUT,
    MAX_REPLICAS,
    PULL_POLICY,
    DOCKER_CONFIG,
    READY_TIMEOUT,
    PIDS_LIMIT,
    SECRETS_GID,
    STOP_TIMEOUT,
    DRAIN_TIMEOUT,
    FUNCTION_PORT,
    CODE_MAX_BYTES,
    CODE_MAX_FILES,
    CODE_MAX_UNPACKED_BYTES,
    PIP_INDEX_URL,
    PIP_FIND_LINKS,
    PIP_TIMEOUT,
    VOLUME_HOST_ROOTS,
    DEFAULT_MEMORY,
    DEFAULT_CPU,
    DEFAULT_READ_ONLY_ROOT,
    POOL_SIZE,
    POOL_RUNTIMES,
    ZERO_PAUSE,
    REGISTRIES,
    PULL_TIMEOUT,
    LOG_LEVEL,
)


@dataclass(frozen=True, slots=True)
class ProviderConfig:
    net: NetConfig = field(default_factory=NetConfig)
    backend: Backend = Backend.DOCKER
    swarm_network: str = "pyfaasd-functions"
    host: str = defaults.PROVIDER_HOST
    port: int = defaults.PROVIDER_PORT
    header_timeout_s: float = defaults.HEADER_TIMEOUT_S
    idle_timeout_s: float = defaults.IDLE_TIMEOUT_S
    max_replicas: int = 20
    pull_policy: PullPolicy = PullPolicy.IF_NOT_PRESENT
    docker_config: Path | None = None  # a Docker config.json with registry credentials
    ready_timeout_s: float = 30.0
    pids_limit: int = 512
    secrets_gid: int = 2000  # the group that may read mounted secrets; added to every function container
    stop_timeout_s: float = 10.0
    drain_timeout_s: float = 60.0  # the gateway's upstream timeout: no buffered request runs longer
    function_port: int = defaults.FUNCTION_PORT
    code_limits: CodeLimits = field(default_factory=CodeLimits)
    pip: PipSettings = field(default_factory=PipSettings)
    volume_host_roots: tuple[Path, ...] = ()
    default_memory_bytes: int | None = None  # applied to a function that sets no memory limit
    default_nano_cpus: int | None = None
    default_read_only_root: bool = False
    pool_size: int = 2  # provider/pool.py
    pool_runtimes: tuple[str, ...] = ("pyfaasd/runtime-python:latest",)
    zero_pause_s: float = 300.0  # provider/replicas.py: the last replica of a function at zero, paused this long
    registries: Path = Path("/etc/pyfaasd/registries.yaml")  # mirrors; a missing file means none
    pull_timeout_s: float = 600.0
    log_level: str = "info"

    @property
    def state_dir(self) -> Path:
        return self.net.state_dir

    @property
    def hosts_path(self) -> Path:
        return self.net.hosts_path

    @property
    def routes_path(self) -> Path:
        """The routes file the gateway follows (netconf/routes.py), beside the hosts file."""
        return self.state_dir / "routes"

    @property
    def secrets_dir(self) -> Path:
        return self.state_dir / "secrets"

    @property
    def code_dir(self) -> Path:
        return self.state_dir / "code"

    @property
    def deps_dir(self) -> Path:
        return self.state_dir / "deps"

    @property
    def pool_dir(self) -> Path:
        return self.state_dir / "pool"

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Self:
        """Settings from ``PYFAASD_*`` in ``env`` (flags already laid over it); SettingError names the variable."""
        host, port = LISTEN.read(env)
        return cls(
            net=NetConfig.from_env(env),
            backend=BACKEND.read(env),
            swarm_network=SWARM_NETWORK.read(env),
            host=host,
            port=port,
            header_timeout_s=HEADER_TIMEOUT.read(env),
            idle_timeout_s=IDLE_TIMEOUT.read(env),
            max_replicas=MAX_REPLICAS.read(env),
            pull_policy=PULL_POLICY.read(env),
            docker_config=DOCKER_CONFIG.read(env),
            ready_timeout_s=READY_TIMEOUT.read(env),
            pids_limit=PIDS_LIMIT.read(env),
            secrets_gid=SECRETS_GID.read(env),
            stop_timeout_s=STOP_TIMEOUT.read(env),
            drain_timeout_s=DRAIN_TIMEOUT.read(env),
            function_port=FUNCTION_PORT.read(env),
            code_limits=CodeLimits(
                max_bytes=CODE_MAX_BYTES.read(env),
                max_files=CODE_MAX_FILES.read(env),
                max_unpacked_bytes=CODE_MAX_UNPACKED_BYTES.read(env),
            ),
            pip=PipSettings(
                index_url=PIP_INDEX_URL.read(env), find_links=PIP_FIND_LINKS.read(env), timeout_s=PIP_TIMEOUT.read(env)
            ),
            volume_host_roots=VOLUME_HOST_ROOTS.read(env),
            default_memory_bytes=DEFAULT_MEMORY.read(env),
            default_nano_cpus=DEFAULT_CPU.read(env),
            default_read_only_root=DEFAULT_READ_ONLY_ROOT.read(env),
            pool_size=POOL_SIZE.read(env),
            pool_runtimes=POOL_RUNTIMES.read(env),
            zero_pause_s=ZERO_PAUSE.read(env),
            registries=REGISTRIES.read(env),
            pull_timeout_s=PULL_TIMEOUT.read(env),
            log_level=LOG_LEVEL.read(env),
        )
