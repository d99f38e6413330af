"""Volumes for functions: named volumes of this host, host paths under allowed roots, NFS shares.

Every volume is a Docker volume of the local driver owned by this provider instance (labels
``com.pyfaasd.bridge``, ``com.pyfaasd.volume`` and ``com.pyfaasd.volume.type``), so its state is in Docker and
survives restarts and reboots like the functions themselves:

- ``local``: a plain named volume; its directory is made writable for every user, since function images run
  as a non-root user whose uid the provider does not know (the directory is only reachable through Docker's
  root-only volume store and the containers that mount it);
- ``host``: the local driver binding a directory of the host (``type=none, o=bind``), allowed only under a
  root listed in ``PYFAASD_VOLUME_HOST_ROOTS``;
- ``nfs``: the local driver mounting an NFS share the way ``docker volume create --driver local --opt
  type=nfs`` does (``type=nfs``, ``o=addr=<server>,<options>``, ``device=:<path>``).

A function mounts volumes with annotations ``com.pyfaasd.volume.<name>: /path`` or ``/path:ro``;
``com.pyfaasd.volume.auto: /path`` mounts a volume of the function's own (``auto-<name>-<namespace>``), made on
its first deploy and kept after the function is removed, until deleted. Every replica mounts the same volume.

The swarm backend keeps the same records (Docker volumes of the manager the provider runs on, labelled with its
overlay instead of its bridge) and gives services mounts that carry the volume's driver options, so each node
makes the volume where a task lands (``provider/swarm_spec.py``, docs/swarm.md).
"""

from __future__ import annotations

import os
import posixpath
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Final, Protocol

from provider.errors import (
    InvalidRequestError,
    VolumeExistsError,
    VolumeInUseError,
    VolumeMissingError,
    VolumeMountError,
    VolumeNotFoundError,
)
from provider.models import FunctionDeployment
from provider.runtime import VolumeInfo

ANNOTATION_PREFIX: Final = "com.pyfaasd.volume."
AUTO: Final = "auto"
LABEL_OWNER: Final = "com.pyfaasd.bridge"  # the docker backend's instance: its bridge
LABEL_VOLUME: Final = "com.pyfaasd.volume"
LABEL_VOLUME_TYPE: Final = "com.pyfaasd.volume.type"
LABEL_VOLUME_AUTO: Final = "com.pyfaasd.volume.auto"  # the function an auto volume belongs to, name.namespace
# Where a volume may not go: what the provider itself mounts, and above it.
RESERVED_TARGETS: Final = ("/home/app/function", "/home/app/packages", "/var/openfaas/secrets", "/etc/hosts")
FORBIDDEN_TARGETS: Final = ("/", "/proc", "/sys", "/dev", "/etc", "/usr", "/bin", "/sbin", "/lib", "/home/app")
_NAME: Final = re.compile(r"[a-z0-9]([a-z0-9_.-]{0,61}[a-z0-9])?")
_NFS_OPTION: Final = re.compile(r"[A-Za-z0-9_=.:/-]+")


def check_volume_name(value: str) -> str:
    name = value.strip()
    if not _NAME.fullmatch(name):
        raise InvalidRequestError(
            f"volume name {value!r} is not a valid name (lower-case letters, digits, '-', '_' and '.', "
            "starting and ending with a letter or digit, 63 at most)"
        )
    return name


@dataclass(frozen=True, slots=True)
class NfsShare:
    server: str
    path: str
    options: str = ""

    def driver_options(self) -> dict[str, str]:
        address = f"addr={self.server}"
        return {"type": "nfs", "o": f"{address},{self.options}" if self.options else address, "device": f":{self.path}"}


@dataclass(frozen=True, slots=True)
class VolumeRequest:
    """``POST /system/volumes``: a name, and a host path or an NFS share (neither: a named volume)."""

    name: str
    host_path: Path | None = None
    nfs: NfsShare | None = None

    @classmethod
    def parse(cls, body: Mapping[str, object]) -> VolumeRequest:
        name = check_volume_name(str(body.get("name") or ""))
        if name == AUTO:
            raise InvalidRequestError("volume name 'auto' is reserved for the volumes functions get of their own")
        host = body.get("hostPath")
        nfs = body.get("nfs")
        if host is not None and nfs is not None:
            raise InvalidRequestError("a volume has hostPath or nfs, not both")
        if host is not None:
            if not isinstance(host, str) or not host.startswith("/"):
                raise InvalidRequestError(f"hostPath {host!r} is not an absolute path")
            return cls(name, host_path=Path(posixpath.normpath(host)))
        if nfs is not None:
            return cls(name, nfs=_parse_nfs(nfs))
        return cls(name)


def _parse_nfs(value: object) -> NfsShare:
    if not isinstance(value, Mapping):
        raise InvalidRequestError("nfs must be an object with server, path and options")
    server = str(value.get("server") or "").strip()
    path = str(value.get("path") or "").strip()
    options = str(value.get("options") or "").strip()
    if not server or not re.fullmatch(r"[A-Za-z0-9.:\[\]-]+", server):
        raise InvalidRequestError(f"nfs.server {server!r} is not a host name or address")
    if not path.startswith("/"):
        raise InvalidRequestError(f"nfs.path {path!r} is not an absolute path on the server")
    for option in filter(None, options.split(",")):
        if not _NFS_OPTION.fullmatch(option) or option.startswith("addr="):
            raise InvalidRequestError(f"nfs.options: {option!r} is not a mount option this provider passes on")
    return NfsShare(server, path, options)


@dataclass(frozen=True, slots=True)
class Volume:
    name: str
    type: str  # local, host, nfs
    docker_name: str
    created: str
    host_path: str = ""
    nfs: NfsShare | None = None
    auto_for: str = ""

    def driver_options(self) -> dict[str, str]:
        """The local driver's options that make this volume (on any node): none for a named volume."""
        return _driver_options(self.type, self.host_path, self.nfs)

    def to_json(self, functions: list[str]) -> dict[str, object]:
        out: dict[str, object] = {"name": self.name, "type": self.type, "functions": functions, "created": self.created}
        if self.host_path:
            out["hostPath"] = self.host_path
        if self.nfs is not None:
            out["nfs"] = {"server": self.nfs.server, "path": self.nfs.path, "options": self.nfs.options}
        if self.auto_for:
            out["auto"] = self.auto_for
        return out


@dataclass(frozen=True, slots=True)
class VolumeMount:
    """One annotation of a function: which volume, where, read-only or not."""

    volume: str
    target: str
    read_only: bool


def volume_mounts(spec: FunctionDeployment) -> list[VolumeMount]:
    """The volume annotations of a deployment, checked: absolute, no clash with each other or what the provider
    mounts (400 naming the annotation)."""
    found: list[VolumeMount] = []
    for key, value in sorted((spec.annotations or {}).items()):
        if not key.startswith(ANNOTATION_PREFIX) or key.count(".") != 3:
            continue
        name = key.removeprefix(ANNOTATION_PREFIX)
        if name != AUTO:
            check_volume_name(name)
        path, _, mode = value.strip().partition(":")
        if mode not in ("", "ro", "rw"):
            raise InvalidRequestError(f"annotation {key}: {value!r} must be /path, /path:ro or /path:rw")
        target = posixpath.normpath(path) if path.startswith("/") else ""
        if not target or target != path.rstrip("/") or target in FORBIDDEN_TARGETS:
            raise InvalidRequestError(f"annotation {key}: {path!r} is not a path a volume can be mounted at")
        for reserved in RESERVED_TARGETS:
            if _overlaps(target, reserved):
                raise InvalidRequestError(f"annotation {key}: {target} clashes with {reserved}")
        for other in found:
            if _overlaps(target, other.target):
                raise InvalidRequestError(
                    f"annotation {key}: {target} clashes with the mount of volume {other.volume} at {other.target}"
                )
        found.append(VolumeMount(name, target, mode == "ro"))
    return found


def _overlaps(a: str, b: str) -> bool:
    return a == b or a.startswith(b.rstrip("/") + "/") or b.startswith(a.rstrip("/") + "/")


def auto_volume_name(spec: FunctionDeployment) -> str:
    return f"auto-{spec.service}-{spec.namespace}"


def _driver_options(kind: str, host_path: str, nfs: NfsShare | None) -> dict[str, str]:
    if kind == "host":
        return {"type": "none", "o": "bind", "device": host_path}
    if kind == "nfs" and nfs is not None:
        return nfs.driver_options()
    return {}


class VolumeRuntime(Protocol):
    """The Docker volumes of the engine the provider talks to (``Runtime`` and ``SwarmRuntime`` have them)."""

    async def create_volume(self, name: str, options: Mapping[str, str], labels: Mapping[str, str]) -> VolumeInfo: ...

    async def volumes(self, label: str) -> list[VolumeInfo]: ...

    async def remove_volume(self, name: str) -> None: ...


@dataclass(frozen=True, slots=True)
class ResolvedMount:
    """A volume annotation of a function with the volume it names."""

    volume: Volume
    target: str
    read_only: bool

    def labels(self, owner_label: str, owner: str) -> dict[str, str]:
        """The labels a node gives the volume when it makes it for a task (the same as the record's)."""
        labels = {owner_label: owner, LABEL_VOLUME: self.volume.name, LABEL_VOLUME_TYPE: self.volume.type}
        if self.volume.auto_for:
            labels[LABEL_VOLUME_AUTO] = self.volume.auto_for
        return labels


class VolumeStore:
    """The volumes of one provider instance: ``owner`` (its bridge, or with the swarm backend its overlay) in
    the label ``owner_label`` and in the Docker name ``pyfaasd-<owner>-<name>``."""

    def __init__(
        self,
        runtime: VolumeRuntime,
        owner: str,
        host_roots: Iterable[Path] = (),
        owner_label: str = LABEL_OWNER,
    ) -> None:
        self._runtime = runtime
        self._owner = owner
        self.owner_label = owner_label
        self._prefix = f"pyfaasd-{owner}-"
        self.host_roots = tuple(Path(posixpath.normpath(str(root))) for root in host_roots)

    @property
    def owner(self) -> str:
        return self._owner

    def docker_name(self, name: str) -> str:
        return f"{self._prefix}{name}"

    async def all(self) -> list[Volume]:
        found = await self._runtime.volumes(f"{LABEL_VOLUME_TYPE}")
        mine = [self._volume(v) for v in found if v.labels.get(self.owner_label) == self._owner]
        return sorted(mine, key=lambda v: v.name)

    async def get(self, name: str) -> Volume | None:
        return next((v for v in await self.all() if v.name == name), None)

    async def create(self, request: VolumeRequest, *, auto_for: str = "") -> Volume:
        if await self.get(request.name) is not None:
            raise VolumeExistsError(f"volume {request.name} exists already")
        kind = "local"
        if request.host_path is not None:
            self._check_host_path(request.host_path)
            kind = "host"
        elif request.nfs is not None:
            kind = "nfs"
        options = _driver_options(kind, str(request.host_path or ""), request.nfs)
        labels = {self.owner_label: self._owner, LABEL_VOLUME: request.name, LABEL_VOLUME_TYPE: kind}
        if auto_for:
            labels[LABEL_VOLUME_AUTO] = auto_for
        info = await self._runtime.create_volume(self.docker_name(request.name), options, labels)
        if kind == "local" and info.mountpoint:
            os.chmod(info.mountpoint, 0o777)  # noqa: S103 (see the module docstring: any function user may write)
        return self._volume(info)

    async def delete(self, name: str, users: list[str]) -> None:
        check_volume_name(name)
        if await self.get(name) is None:
            raise VolumeNotFoundError(f"volume {name} not found")
        if users:
            raise VolumeInUseError(f"volume {name} is used by {', '.join(users)}: remove or update them first")
        await self._runtime.remove_volume(self.docker_name(name))

    async def for_function(self, spec: FunctionDeployment) -> tuple[list[tuple[str, str, bool]], list[str]]:
        """The (docker volume, target, read-only) mounts of ``spec``, and the auto volumes made for it now.

        A missing volume is a 400 naming it; the function's own ``auto`` volume is made on first use.
        """
        resolved, made = await self.resolve(spec)
        return [(m.volume.docker_name, m.target, m.read_only) for m in resolved], made

    async def resolve(self, spec: FunctionDeployment) -> tuple[list[ResolvedMount], list[str]]:
        """The mounts of ``spec`` with their volumes, and the auto volumes made for it now (as ``for_function``)."""
        mounts: list[ResolvedMount] = []
        made: list[str] = []
        wanted = volume_mounts(spec)
        if not wanted:  # most functions: no need to list Docker's volumes on every replica's creation
            return mounts, made
        existing = {v.name: v for v in await self.all()}
        for mount in wanted:
            name = mount.volume
            if name == AUTO:
                name = auto_volume_name(spec)
                if name not in existing:
                    existing[name] = await self.create(VolumeRequest(name), auto_for=f"{spec.service}.{spec.namespace}")
                    made.append(name)
            elif name not in existing:
                raise VolumeMissingError(
                    f"annotation {ANNOTATION_PREFIX}{name}: there is no volume {name} "
                    f"(create it with: pyfaasd volume create {name})"
                )
            mounts.append(ResolvedMount(existing[name], mount.target, mount.read_only))
        return mounts, made

    def users(self, specs: Iterable[FunctionDeployment]) -> dict[str, list[str]]:
        """The functions mounting each volume, as ``name.namespace``."""
        found: dict[str, set[str]] = {}
        for spec in specs:
            for mount in volume_mounts(spec):
                name = auto_volume_name(spec) if mount.volume == AUTO else mount.volume
                found.setdefault(name, set()).add(f"{spec.service}.{spec.namespace}")
        return {name: sorted(names) for name, names in found.items()}

    def explain_mount_error(self, message: str) -> VolumeMountError:
        """Docker's refusal to mount a volume at container start, naming our volume."""
        match = re.search(rf"{re.escape(self._prefix)}([a-z0-9_.-]+?)(?:/_data|['\s,:]|$)", message)
        name = match.group(1) if match else "a volume"
        return VolumeMountError(f"volume {name} could not be mounted: {message}")

    def _check_host_path(self, path: Path) -> None:
        if not any(path == root or path.is_relative_to(root) for root in self.host_roots):
            roots = ":".join(str(r) for r in self.host_roots) or "none"
            raise InvalidRequestError(
                f"hostPath {path} is not under a root in PYFAASD_VOLUME_HOST_ROOTS (allowed: {roots})"
            )
        if not path.is_dir():
            raise InvalidRequestError(f"hostPath {path} is not a directory on this host")

    def _volume(self, info: VolumeInfo) -> Volume:
        labels = info.labels
        kind = labels.get(LABEL_VOLUME_TYPE, "local")
        nfs = None
        if kind == "nfs":
            address = dict(part.split("=", 1) for part in info.options.get("o", "").split(",") if "=" in part)
            rest = ",".join(p for p in info.options.get("o", "").split(",") if not p.startswith("addr="))
            nfs = NfsShare(address.get("addr", ""), info.options.get("device", "").removeprefix(":"), rest)
        return Volume(
            name=labels.get(LABEL_VOLUME, info.name.removeprefix(self._prefix)),
            type=kind,
            docker_name=info.name,
            created=info.created,
            host_path=info.options.get("device", "") if kind == "host" else "",
            nfs=nfs,
            auto_for=labels.get(LABEL_VOLUME_AUTO, ""),
        )
