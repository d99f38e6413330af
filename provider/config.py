"""The provider's settings: ``PYFAASD_*`` env vars, each also a flag of ``pyfaasd provider`` (docs/provider.md)."""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Self

from netconf import NetConfig
from servicekit.settings import SettingError, parse_duration, parse_int, parse_listen_address


class PullPolicy(enum.StrEnum):
    IF_NOT_PRESENT = "if-not-present"
    ALWAYS = "always"
    NEVER = "never"


@dataclass(frozen=True, slots=True)
class ProviderConfig:
    net: NetConfig = field(default_factory=NetConfig)
    host: str = "127.0.0.1"
    port: int = 8081
    max_replicas: int = 20
    pull_policy: PullPolicy = PullPolicy.IF_NOT_PRESENT
    docker_config: Path | None = None  # a Docker config.json with registry credentials
    ready_timeout_s: float = 30.0
    pids_limit: int = 512
    secrets_gid: int = 2000  # the group that may read mounted secrets; added to every function container
    stop_timeout_s: float = 10.0
    function_port: int = 8080
    log_level: str = "info"

    @property
    def state_dir(self) -> Path:
        return self.net.state_dir

    @property
    def hosts_path(self) -> Path:
        return self.net.hosts_path

    @property
    def secrets_dir(self) -> Path:
        return self.state_dir / "secrets"

    @classmethod
    def from_env(cls, env: Mapping[str, str], overrides: Mapping[str, str | None] | None = None) -> Self:
        """Settings from env vars; ``overrides`` (flags, keyed by env var name) win where not None."""
        values = {k: v for k, v in env.items() if v}
        for key, value in (overrides or {}).items():
            if value is not None:
                values[key] = value
        net = NetConfig.create(
            bridge=values.get("PYFAASD_BRIDGE"),
            subnet=values.get("PYFAASD_SUBNET"),
            state_dir=values.get("PYFAASD_STATE_DIR"),
        )
        defaults = cls()
        host, port = (defaults.host, defaults.port)
        if "PYFAASD_PROVIDER_ADDR" in values:
            host, port = parse_listen_address("PYFAASD_PROVIDER_ADDR", values["PYFAASD_PROVIDER_ADDR"])
        policy = defaults.pull_policy
        if "PYFAASD_PULL_POLICY" in values:
            try:
                policy = PullPolicy(values["PYFAASD_PULL_POLICY"].strip().lower())
            except ValueError:
                allowed = ", ".join(p.value for p in PullPolicy)
                raise SettingError(
                    f"PYFAASD_PULL_POLICY: {values['PYFAASD_PULL_POLICY']!r} is not one of {allowed}"
                ) from None
        docker_config = values.get("PYFAASD_DOCKER_CONFIG")

        def number(key: str, default: int, minimum: int, maximum: int | None = None) -> int:
            return default if key not in values else parse_int(key, values[key], minimum=minimum, maximum=maximum)

        def seconds(key: str, default: float) -> float:
            return default if key not in values else parse_duration(key, values[key])

        return cls(
            net=net,
            host=host,
            port=port,
            max_replicas=number("PYFAASD_MAX_REPLICAS", defaults.max_replicas, 1, 1000),
            pull_policy=policy,
            docker_config=Path(docker_config) if docker_config else None,
            ready_timeout_s=seconds("PYFAASD_READY_TIMEOUT", defaults.ready_timeout_s),
            pids_limit=number("PYFAASD_PIDS_LIMIT", defaults.pids_limit, 16),
            secrets_gid=number("PYFAASD_SECRETS_GID", defaults.secrets_gid, 1, 2**31 - 1),
            stop_timeout_s=seconds("PYFAASD_STOP_TIMEOUT", defaults.stop_timeout_s),
            function_port=number("PYFAASD_FUNCTION_PORT", defaults.function_port, 1, 65535),
            log_level=values.get("PYFAASD_LOG_LEVEL", defaults.log_level),
        )
