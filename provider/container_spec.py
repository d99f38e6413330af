"""The Docker create config of a function replica: built here and nowhere else.

Everything a replica gets comes from the FunctionDeployment and the provider config: env (with ``fprocess``
from ``envProcess``), labels (the user's plus the state labels), limits, secrets and the hosts file as
read-only binds, the mounts of code functions (provider/code_functions.py), and the hardening defaults.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from provider.code_functions import FUNCTION_MOUNT, PACKAGES_MOUNT, Mount
from provider.config import ProviderConfig
from provider.docker_runtime import (
    LABEL_BRIDGE,
    LABEL_CREATED,
    LABEL_FUNCTION,
    LABEL_GENERATION,
    LABEL_NAMESPACE,
    LABEL_REPLICA,
    LABEL_SPEC,
)
from provider.models import FunctionDeployment
from servicekit.pool_handover import CONTROL_MOUNT, ENV_LOAD, LOAD_FILE

SECRETS_MOUNT = "/var/openfaas/secrets"
LABEL_DEFAULTS = "com.pyfaasd.defaults"  # the operator defaults a replica got (PYFAASD_DEFAULT_*)
ANNOTATION_WRITABLE_ROOT = "com.pyfaasd.writable-root"  # "true": no default read-only root for this function
# The provider takes a replica out of the hosts file before it stops it, so the watchdog need not keep
# answering for long after SIGTERM (of-watchdog's default is write_timeout); a function may still set it.
DEFAULT_HEALTHCHECK_INTERVAL = "1s"
TMPFS_SIZE = "64m"


@dataclass(frozen=True, slots=True)
class ReplicaSpec:
    """One replica to create: which function, which index, which deploy generation."""

    spec: FunctionDeployment
    replica: int
    generation: str
    created: str  # the function's createdAt, RFC 3339

    @property
    def container_name(self) -> str:
        return f"{self.spec.service}.{self.spec.namespace}.{self.replica}.{self.generation[:8]}"


def container_config(
    replica: ReplicaSpec, config: ProviderConfig, secret_paths: dict[str, Path], mounts: Sequence[Mount] = ()
) -> dict[str, Any]:
    spec = replica.spec
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
            LABEL_BRIDGE: config.net.bridge,
            LABEL_FUNCTION: spec.service,
            LABEL_NAMESPACE: spec.namespace,
            LABEL_REPLICA: str(replica.replica),
            LABEL_GENERATION: replica.generation,
            LABEL_CREATED: replica.created,
            LABEL_SPEC: spec.to_label(),
        }
    )
    binds = [f"{path}:{SECRETS_MOUNT}/{name}:ro" for name, path in secret_paths.items()]
    binds += [mount.bind() for mount in mounts]
    host = _hardened_host(config, binds)
    # The function's own limits, else the operator's defaults (recorded in a label: the API echoes only what
    # was deployed, as faas-cli and the certifier compare it with the request).
    applied: list[str] = []
    memory = spec.limits.memory_bytes("limits") if spec.limits is not None else None
    if memory is None and config.default_memory_bytes is not None:
        memory = config.default_memory_bytes
        applied.append(f"memory={memory}")
    if memory is not None:
        host["Memory"] = memory
        host["MemorySwap"] = memory  # no swap beyond the limit
    cpus = spec.limits.nano_cpus("limits") if spec.limits is not None else None
    if cpus is None and config.default_nano_cpus is not None:
        cpus = config.default_nano_cpus
        applied.append(f"nanocpus={cpus}")
    if cpus is not None:
        host["NanoCpus"] = cpus
    if spec.requests is not None:
        reservation = spec.requests.memory_bytes("requests")
        if reservation is not None:
            host["MemoryReservation"] = reservation
    read_only = root_read_only(spec, config)
    if read_only and not spec.read_only_root_filesystem:
        applied.append("read-only-root")
    if applied:
        labels[LABEL_DEFAULTS] = ",".join(applied)
    if read_only:
        host["ReadonlyRootfs"] = True
        host["Tmpfs"] = {"/tmp": f"rw,nosuid,nodev,size={TMPFS_SIZE}"}  # noqa: S108 (inside the container)
    return {
        "Image": spec.image,
        "Env": env,
        "Labels": labels,
        "StopSignal": "SIGTERM",
        "StopTimeout": int(config.stop_timeout_s),
        "HostConfig": host,
    }


def root_read_only(spec: FunctionDeployment, config: ProviderConfig) -> bool:
    """Whether a replica's root file system is read-only: asked for, or the operator's default not opted out of."""
    writable = (spec.annotations or {}).get(ANNOTATION_WRITABLE_ROOT, "").strip().lower() == "true"
    return spec.read_only_root_filesystem or (config.default_read_only_root and not writable)


def _hardened_host(config: ProviderConfig, binds: Sequence[str]) -> dict[str, Any]:
    """What every function container gets, fresh or pooled: the hosts file, no capabilities, the pids limit."""
    return {
        "NetworkMode": "none",
        "Binds": [f"{config.hosts_path}:/etc/hosts:ro", *binds],
        "CapDrop": ["ALL"],
        "SecurityOpt": ["no-new-privileges"],
        "PidsLimit": config.pids_limit,
        "GroupAdd": [str(config.secrets_gid)],
        "RestartPolicy": {"Name": "no"},  # the provider restarts replicas itself, re-attaching the network
        "LogConfig": {"Type": "json-file", "Config": {"max-size": "10m", "max-file": "3"}},
        "Init": False,
    }


# The limits a pooled container takes from the function's config when it is claimed (``docker update``).
UPDATABLE_LIMITS = ("Memory", "MemorySwap", "NanoCpus", "MemoryReservation")


def pool_container_config(
    runtime: str, slot_dir: Path, labels: dict[str, str], config: ProviderConfig
) -> dict[str, Any]:
    """A warm pool container of ``runtime`` (provider/pool.py): a function container's shape with nothing of a
    function in it yet. Its code, packages, secrets and load file come through the slot's directories, its limits
    are the operator's defaults until a function's replace them; what cannot change later (the root's being
    read-only, the mounts) is the same for every code function without volumes, so any of them can claim it."""
    binds = [
        f"{slot_dir / 'function'}:{FUNCTION_MOUNT}:ro",
        f"{slot_dir / 'packages'}:{PACKAGES_MOUNT}:ro",
        f"{slot_dir / 'secrets'}:{SECRETS_MOUNT}:ro",
        f"{slot_dir / 'control'}:{CONTROL_MOUNT}:ro",
    ]
    host = _hardened_host(config, binds)
    if config.default_memory_bytes is not None:
        host["Memory"] = config.default_memory_bytes
        host["MemorySwap"] = config.default_memory_bytes
    if config.default_nano_cpus is not None:
        host["NanoCpus"] = config.default_nano_cpus
    if config.default_read_only_root:
        host["ReadonlyRootfs"] = True
        host["Tmpfs"] = {"/tmp": f"rw,nosuid,nodev,size={TMPFS_SIZE}"}  # noqa: S108 (inside the container)
    return {
        "Image": runtime,
        "Env": [f"{ENV_LOAD}={CONTROL_MOUNT}/{LOAD_FILE}"],
        "Labels": labels,
        "StopSignal": "SIGTERM",
        "StopTimeout": int(config.stop_timeout_s),
        "HostConfig": host,
    }
