"""The Swarm service spec of a function (``PYFAASD_BACKEND=swarm``): built here and nowhere else.

The same labels as a container of the docker backend (``provider/container_spec.py``) on the service and on its
containers, the function's limits as task resources, its constraints as placement constraints, the overlay as
the only network with ``endpoint_mode: dnsrr`` (no VIP: the kernel may have no IPVS, and the gateway picks the
replica itself), and rolling updates that start the new task before stopping the old one. Volumes are mounts of
type ``volume`` that carry the local driver's options (as ``provider/volumes.py`` makes them on the docker
backend), so the node a task lands on makes the volume if it has none of that name.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from provider.code_functions import FUNCTION_MOUNT
from provider.config import ProviderConfig
from provider.container_spec import DEFAULT_HEALTHCHECK_INTERVAL, LABEL_DEFAULTS, SECRETS_MOUNT, root_read_only
from provider.docker_runtime import LABEL_CREATED, LABEL_FUNCTION, LABEL_GENERATION, LABEL_NAMESPACE, LABEL_SPEC
from provider.models import FunctionDeployment
from provider.volumes import ResolvedMount
from servicekit.swarm import service_name as service_name  # re-exported for the operations

# The overlay a function service belongs to: the identity of a provider instance on the swarm, so a second
# instance (tests, a second install) never lists or removes the services of another.
LABEL_NETWORK: Final = "com.pyfaasd.swarm-network"
NANOS: Final = 1_000_000_000
# Swarm counts a task as running once its healthcheck passes, and only then stops the task it replaces
# (start-first): without one, an update would stop the old tasks before the new ones answer. The watchdog's own
# check (of-watchdog's ``-run-healthcheck`` too): its lock file exists while the function is ready.
HEALTHCHECK: Final = ["CMD", "fwatchdog", "--run-healthcheck"]
TMPFS_SIZE_BYTES: Final = 64 * 2**20


SECRET_MODE: Final = 0o440  # root and the PYFAASD_SECRETS_GID group, as the docker backend's files
CODE_FILE_MODE: Final = 0o444  # a code function's files (provider/swarm_code.py): read by any user
EMPTY_SOURCE: Final = "/dev/null"  # what an empty file of a bundle is bound to (Swarm has no empty config)


@dataclass(frozen=True, slots=True)
class SecretMount:
    """A Swarm secret a function mounts at ``/var/openfaas/secrets/<name>``."""

    id: str
    swarm_name: str  # versioned by content (Swarm secrets cannot change)
    name: str  # the name the function asked for

    def reference(self, gid: int) -> dict[str, Any]:
        return {
            "SecretID": self.id,
            "SecretName": self.swarm_name,
            "File": {"Name": f"{SECRETS_MOUNT}/{self.name}", "UID": "0", "GID": str(gid), "Mode": SECRET_MODE},
        }


@dataclass(frozen=True, slots=True)
class CodeConfig:
    """A config holding one file of a function's bundle."""

    id: str
    swarm_name: str
    path: str

    def reference(self) -> dict[str, Any]:
        return {
            "ConfigID": self.id,
            "ConfigName": self.swarm_name,
            "File": {"Name": f"{FUNCTION_MOUNT}/{self.path}", "UID": "0", "GID": "0", "Mode": CODE_FILE_MODE},
        }


@dataclass(frozen=True, slots=True)
class CodeMounts:
    """What a code function's tasks mount for its bundle: the configs, and the empty files."""

    configs: tuple[CodeConfig, ...] = ()
    empty: tuple[str, ...] = ()

    def config_references(self) -> list[dict[str, Any]]:
        return [config.reference() for config in self.configs]

    def empty_mounts(self) -> list[dict[str, Any]]:
        return [
            {"Type": "bind", "Source": EMPTY_SOURCE, "Target": f"{FUNCTION_MOUNT}/{path}", "ReadOnly": True}
            for path in self.empty
        ]


def service_spec(
    spec: FunctionDeployment,
    config: ProviderConfig,
    *,
    replicas: int,
    created: str,
    generation: str,
    secrets: Sequence[SecretMount] = (),
    volumes: Sequence[ResolvedMount] = (),
    code: CodeMounts | None = None,
) -> dict[str, Any]:
    env = [f"{k}={v}" for k, v in spec.env_vars.items() if k != "fprocess"]
    if spec.env_process:
        env.append(f"fprocess={spec.env_process}")
    elif "fprocess" in spec.env_vars:
        env.append(f"fprocess={spec.env_vars['fprocess']}")
    if "healthcheck_interval" not in spec.env_vars:
        env.append(f"healthcheck_interval={DEFAULT_HEALTHCHECK_INTERVAL}")
    labels = dict(spec.labels or {})
    labels.update(
        {
            LABEL_NETWORK: config.swarm_network,
            LABEL_FUNCTION: spec.service,
            LABEL_NAMESPACE: spec.namespace,
            LABEL_GENERATION: generation,
            LABEL_CREATED: created,
            LABEL_SPEC: spec.to_label(),
        }
    )
    # The function's own limits, else the operator's defaults, recorded as the docker backend records them (the
    # API echoes only what was deployed)
    resources, applied = _resources(spec, config)
    read_only = root_read_only(spec, config)
    if read_only and not spec.read_only_root_filesystem:
        applied.append("read-only-root")
    if applied:
        labels[LABEL_DEFAULTS] = ",".join(applied)
    container: dict[str, Any] = {
        "Image": spec.image,
        "Env": env,
        "Labels": labels,
        "StopSignal": "SIGTERM",
        "StopGracePeriod": int(config.stop_timeout_s * NANOS),
        "Privileges": {"NoNewPrivileges": True},
        "CapabilityDrop": ["ALL"],
        "Groups": [str(config.secrets_gid)],
        "Secrets": [secret.reference(config.secrets_gid) for secret in secrets],
    }
    container["Healthcheck"] = {
        "Test": HEALTHCHECK,
        "Interval": NANOS,
        "Timeout": 3 * NANOS,
        "Retries": 3,
        "StartPeriod": int(config.ready_timeout_s * NANOS),
    }
    mounts = [volume_mount(m, config.swarm_network) for m in volumes]
    if code is not None:
        container["Configs"] = code.config_references()  # the bundle's files at /home/app/function
        mounts += code.empty_mounts()
    if read_only:
        container["ReadOnly"] = True  # the watchdog's lock file and the function's scratch space: a tmpfs
        mounts.append(
            {"Type": "tmpfs", "Target": "/tmp", "TmpfsOptions": {"SizeBytes": TMPFS_SIZE_BYTES}}  # noqa: S108
        )
    if mounts:
        container["Mounts"] = mounts
    return {
        "Name": service_name(spec.namespace, spec.service),
        "Labels": labels,
        "TaskTemplate": {
            "ContainerSpec": container,
            "Resources": resources,
            "RestartPolicy": {"Condition": "any", "Delay": NANOS},
            "Placement": {"Constraints": list(spec.constraints)},
            "Networks": [{"Target": config.swarm_network, "Aliases": [spec.service]}],
            "LogDriver": {"Name": "json-file", "Options": {"max-size": "10m", "max-file": "3"}},
        },
        "Mode": {"Replicated": {"Replicas": replicas}},
        "UpdateConfig": {"Parallelism": 1, "Order": "start-first", "FailureAction": "rollback"},
        "RollbackConfig": {"Parallelism": 1, "Order": "start-first"},
        "EndpointSpec": {"Mode": "dnsrr"},
    }


def volume_mount(mount: ResolvedMount, network: str) -> dict[str, Any]:
    """A volume annotation as a service mount: the volume by its Docker name, made with the local driver and the
    volume's options (a host directory's bind, an NFS share) by the node a task lands on when it has none yet."""
    driver: dict[str, Any] = {"Name": "local"}
    options = mount.volume.driver_options()
    if options:
        driver["Options"] = options
    return {
        "Type": "volume",
        "Source": mount.volume.docker_name,
        "Target": mount.target,
        "ReadOnly": mount.read_only,
        "VolumeOptions": {"Labels": mount.labels(LABEL_NETWORK, network), "DriverConfig": driver},
    }


def with_replicas(spec: Mapping[str, Any], replicas: int) -> dict[str, Any]:
    """A service spec as Swarm holds it with another replica count (the rest unchanged: no task is rolled)."""
    out = dict(spec)
    out["Mode"] = {"Replicated": {"Replicas": replicas}}
    return out


def with_secret(spec: Mapping[str, Any], old_id: str, new: SecretMount, gid: int) -> dict[str, Any]:
    """A service spec as Swarm holds it with the secret ``old_id`` replaced by ``new`` (a rolling update)."""
    template = dict(spec["TaskTemplate"])
    container = dict(template["ContainerSpec"])
    container["Secrets"] = [
        new.reference(gid) if ref.get("SecretID") == old_id else ref for ref in container.get("Secrets") or []
    ]
    template["ContainerSpec"] = container
    return {**spec, "TaskTemplate": template}


def _resources(spec: FunctionDeployment, config: ProviderConfig) -> tuple[dict[str, Any], list[str]]:
    """The task's resources, and the operator's defaults among them (``memory=``, ``nanocpus=``)."""
    limits: dict[str, int] = {}
    applied: list[str] = []
    memory = spec.limits.memory_bytes("limits") if spec.limits is not None else None
    if memory is None and config.default_memory_bytes is not None:
        memory = config.default_memory_bytes
        applied.append(f"memory={memory}")
    if memory is not None:
        limits["MemoryBytes"] = memory
    cpus = spec.limits.nano_cpus("limits") if spec.limits is not None else None
    if cpus is None and config.default_nano_cpus is not None:
        cpus = config.default_nano_cpus
        applied.append(f"nanocpus={cpus}")
    if cpus is not None:
        limits["NanoCPUs"] = cpus
    limits["Pids"] = config.pids_limit
    reservations: dict[str, int] = {}
    if spec.requests is not None:
        reserved = spec.requests.memory_bytes("requests")
        if reserved is not None:
            reservations["MemoryBytes"] = reserved
    return {"Limits": limits, "Reservations": reservations}, applied
