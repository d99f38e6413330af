"""Docker Swarm through aiodocker: services, their tasks and the overlay network (``PYFAASD_BACKEND=swarm``).

The second module allowed to import aiodocker (pyproject's import contracts); like ``provider/docker_runtime.py``
everything leaving it is a typed dataclass or one of the provider's errors. Service specs are built by
``provider/swarm_spec.py``; this module only sends them.
"""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from ipaddress import IPv4Address, IPv4Interface, IPv4Network
from typing import Any, Protocol

import aiodocker
import aiohttp
import structlog
from aiodocker.configs import DockerConfigs
from aiodocker.secrets import DockerSecrets

from provider.docker_runtime import DockerRuntime
from provider.errors import DockerUnavailableError, FunctionNotFoundError, RuntimeFailureError
from provider.runtime import ContainerUsage, ImageInfo, LogLine, VolumeInfo

log = structlog.get_logger("provider.swarm")


@dataclass(frozen=True, slots=True)
class Service:
    """A function's Swarm service as the provider needs to see it."""

    id: str
    name: str
    version: int  # the spec version an update must name
    labels: Mapping[str, str]
    replicas: int  # desired
    spec: Mapping[str, Any]  # the service spec as Swarm holds it (for updates)


@dataclass(frozen=True, slots=True)
class Task:
    """A task (one replica) of a service: where it should be and where it is, and its address on the overlay."""

    id: str
    service_id: str
    state: str  # Status.State: new, pending, ..., running, complete, failed, shutdown
    desired_state: str
    ip: IPv4Address | None  # on the functions' overlay network
    node_id: str
    error: str = ""  # why Swarm could not run it (Status.Err: no such image, no suitable node, ...)
    container_id: str = ""  # its container, on the task's node

    @property
    def running(self) -> bool:
        return self.state == "running" and self.desired_state == "running"


@dataclass(frozen=True, slots=True)
class TaskLogLine:
    task_id: str
    line: LogLine


@dataclass(frozen=True, slots=True)
class ConfigInfo:
    """A Swarm config (its data is not read back)."""

    id: str
    name: str
    labels: Mapping[str, str]


@dataclass(frozen=True, slots=True)
class SecretInfo:
    """A Swarm secret (its value cannot be read back)."""

    id: str
    name: str
    labels: Mapping[str, str]
    created: str  # RFC 3339, as Swarm reports it


class Swarm(Protocol):
    """What the operations need of Swarm; ``SwarmRuntime`` implements it, the unit
    tests an in-memory one."""

    async def services(self, label: str) -> list[Service]: ...

    async def service(self, name: str) -> Service | None: ...

    async def create_service(self, spec: Mapping[str, Any]) -> str: ...

    async def update_service(self, service: Service, spec: Mapping[str, Any]) -> None: ...

    async def remove_service(self, service_id: str) -> None: ...

    async def tasks(self, service_ids: list[str]) -> list[Task]: ...

    async def secrets(self, label: str) -> list[SecretInfo]: ...

    async def create_secret(self, name: str, value: bytes, labels: Mapping[str, str]) -> str: ...

    async def remove_secret(self, secret_id: str) -> None: ...

    async def configs(self, label: str) -> list[ConfigInfo]: ...

    async def create_config(self, name: str, data: bytes, labels: Mapping[str, str]) -> str: ...

    async def remove_config(self, config_id: str) -> None: ...

    async def image(self, image: str) -> ImageInfo | None:
        """The image as this node (the manager the provider runs on) has it."""
        ...

    async def images_labelled(self, label: str) -> list[ImageInfo]: ...

    def service_logs(
        self, service_id: str, *, tail: int | None, since: datetime | None, follow: bool
    ) -> AsyncIterator[TaskLogLine]: ...

    async def usage(self, container_id: str) -> ContainerUsage | None: ...


def _error(action: str, e: aiodocker.DockerError) -> RuntimeFailureError:
    message = e.message if isinstance(e.message, str) else str(e.message)
    return RuntimeFailureError(f"swarm could not {action}: {message}")


class SwarmRuntime:
    def __init__(self, client: aiodocker.Docker, network: str) -> None:
        self._docker = client
        self._network = network
        self._network_id = ""

    @classmethod
    async def connect(cls, network: str) -> SwarmRuntime:
        """Reach the engine and check it is a Swarm manager (503 otherwise: nothing could be deployed)."""
        client = aiodocker.Docker()
        try:
            info = await client.system.info()
        except (aiodocker.DockerError, aiohttp.ClientError, OSError) as e:
            await client.close()
            raise DockerUnavailableError(f"cannot reach the Docker Engine: {e}") from e
        swarm = info.get("Swarm") or {}
        if swarm.get("LocalNodeState") != "active" or not swarm.get("ControlAvailable"):
            await client.close()
            raise DockerUnavailableError(
                "PYFAASD_BACKEND=swarm needs this Docker Engine to be a Swarm manager "
                "(docker swarm init, or run the provider on a manager node)"
            )
        return cls(client, network)

    async def close(self) -> None:
        await self._docker.close()

    @property
    def network_id(self) -> str:
        return self._network_id

    # -- the overlay -------------------------------------------------------------------------------------

    async def ensure_network(self, labels: Mapping[str, str]) -> tuple[IPv4Network, ...]:
        """The attachable overlay the functions join (created when missing); its subnets."""
        try:
            found = await self._docker.networks.list(filters={"name": [self._network], "driver": ["overlay"]})
            for net in found:
                if net.get("Name") == self._network:
                    self._network_id = str(net["Id"])
                    return _subnets(net)
            made = await self._docker.networks.create(
                {
                    "Name": self._network,
                    "Driver": "overlay",
                    "Attachable": True,
                    "CheckDuplicate": True,
                    "Labels": dict(labels),
                }
            )
        except aiodocker.DockerError as e:
            raise _error(f"create the overlay network {self._network}", e) from e
        self._network_id = made.id
        log.info("overlay_created", network=self._network, id=made.id)
        try:
            return _subnets(await made.show())
        except aiodocker.DockerError as e:
            raise _error(f"inspect the overlay network {self._network}", e) from e

    # -- services ----------------------------------------------------------------------------------------

    async def services(self, label: str) -> list[Service]:
        """The services carrying ``label`` (``key=value``)."""
        try:
            found = await self._docker.services.list(filters={"label": [label]})
        except aiodocker.DockerError as e:
            raise _error("list services", e) from e
        return [_service(s) for s in found]

    async def service(self, name: str) -> Service | None:
        try:
            return _service(await self._docker.services.inspect(name))
        except aiodocker.DockerError as e:
            if e.status == 404:
                return None
            raise _error(f"inspect the service {name}", e) from e

    async def create_service(self, spec: Mapping[str, Any]) -> str:
        try:
            made = await self._docker._query_json("services/create", method="POST", data=dict(spec))
        except aiodocker.DockerError as e:
            raise _error(f"create the service {spec.get('Name')}", e) from e
        return str(made["ID"])

    async def update_service(self, service: Service, spec: Mapping[str, Any]) -> None:
        """Replace the service's spec (Swarm rolls the tasks as its UpdateConfig says)."""
        try:
            await self._docker._query_json(
                f"services/{service.id}/update", method="POST", params={"version": service.version}, data=dict(spec)
            )
        except aiodocker.DockerError as e:
            if e.status == 404:
                raise FunctionNotFoundError(f"the service {service.name} is gone") from e
            raise _error(f"update the service {service.name}", e) from e

    async def remove_service(self, service_id: str) -> None:
        """Remove a service (its tasks stop); a no-op when it is gone."""
        try:
            await self._docker.services.delete(service_id)
        except aiodocker.DockerError as e:
            if e.status != 404:
                raise _error(f"remove the service {service_id}", e) from e

    # -- usage -------------------------------------------------------------------------------------------

    async def usage(self, container_id: str) -> ContainerUsage | None:
        """A task container's CPU and memory now (as the docker backend reads them); None when the container is
        not on this node's engine or not running."""
        return await DockerRuntime(self._docker, "").usage(container_id)

    # -- images (of this node: the runtime library of code functions) ------------------------------------

    async def image(self, image: str) -> ImageInfo | None:
        return await DockerRuntime(self._docker, "").image(image)

    async def images_labelled(self, label: str) -> list[ImageInfo]:
        return await DockerRuntime(self._docker, "").images_labelled(label)

    # -- configs (the files of code functions) --------------------------------------------------------------

    async def configs(self, label: str) -> list[ConfigInfo]:
        """The configs carrying ``label`` (``key=value``)."""
        found = await _list_objects(self._docker.configs, "configs", label)
        return [ConfigInfo(id=str(raw["ID"]), name=_spec_name(raw), labels=_spec_labels(raw)) for raw in found]

    async def create_config(self, name: str, data: bytes, labels: Mapping[str, str]) -> str:
        return await _create_object(self._docker.configs, "config", name, data, labels)

    async def remove_config(self, config_id: str) -> None:
        """Remove a config; a no-op when it is gone."""
        await _remove_object(self._docker.configs, "config", config_id)

    # -- volumes (of this node: the records of /system/volumes) ------------------------------------------

    async def create_volume(self, name: str, options: Mapping[str, str], labels: Mapping[str, str]) -> VolumeInfo:
        return await DockerRuntime(self._docker, "").create_volume(name, options, labels)

    async def volumes(self, label: str) -> list[VolumeInfo]:
        return await DockerRuntime(self._docker, "").volumes(label)

    async def remove_volume(self, name: str) -> None:
        await DockerRuntime(self._docker, "").remove_volume(name)

    # -- logs --------------------------------------------------------------------------------------------

    async def service_logs(
        self, service_id: str, *, tail: int | None, since: datetime | None, follow: bool
    ) -> AsyncIterator[TaskLogLine]:
        """The service's log lines, every task's, merged by Swarm; with ``follow`` until the caller stops."""
        options: dict[str, Any] = {
            "details": True,
            "stdout": True,
            "stderr": True,
            "timestamps": True,
            "tail": "all" if tail is None else str(tail),
            "since": int(since.timestamp()) if since is not None else 0,
        }
        try:
            if follow:
                async for chunk in self._docker.services.logs(service_id, follow=True, **options):  # type: ignore[union-attr]
                    for line in _task_lines(chunk):
                        yield line
            else:
                chunks = await self._docker.services.logs(service_id, **options)  # type: ignore[misc]
                for chunk in chunks:
                    for line in _task_lines(chunk):
                        yield line
        except aiodocker.DockerError as e:
            raise _error(f"read the logs of the service {service_id}", e) from e

    # -- secrets -----------------------------------------------------------------------------------------

    async def secrets(self, label: str) -> list[SecretInfo]:
        """The secrets carrying ``label`` (``key=value``)."""
        found = await _list_objects(self._docker.secrets, "secrets", label)
        return [
            SecretInfo(
                id=str(raw["ID"]),
                name=_spec_name(raw),
                labels=_spec_labels(raw),
                created=str(raw.get("CreatedAt", "")),
            )
            for raw in found
        ]

    async def create_secret(self, name: str, value: bytes, labels: Mapping[str, str]) -> str:
        return await _create_object(self._docker.secrets, "secret", name, value, labels)

    async def remove_secret(self, secret_id: str) -> None:
        """Remove a secret; a no-op when it is gone."""
        await _remove_object(self._docker.secrets, "secret", secret_id)

    async def tasks(self, service_ids: list[str]) -> list[Task]:
        """The tasks of these services, on every node (a manager sees them all)."""
        if not service_ids:
            return []
        try:
            found = await self._docker.tasks.list(filters={"service": service_ids})
        except aiodocker.DockerError as e:
            raise _error("list tasks", e) from e
        return [self._task(t) for t in found]

    def _task(self, raw: Mapping[str, Any]) -> Task:
        ip: IPv4Address | None = None
        for attachment in raw.get("NetworksAttachments") or []:
            network = attachment.get("Network") or {}
            if network.get("ID") != self._network_id:
                continue
            for address in attachment.get("Addresses") or []:
                interface = IPv4Interface(address)
                ip = interface.ip
        status = raw.get("Status") or {}
        return Task(
            id=str(raw["ID"]),
            service_id=str(raw.get("ServiceID", "")),
            state=str(status.get("State", "")),
            desired_state=str(raw.get("DesiredState", "")),
            ip=ip,
            node_id=str(raw.get("NodeID", "")),
            error=str(status.get("Err", "")),
            container_id=str((status.get("ContainerStatus") or {}).get("ContainerID", "")),
        )


def _task_lines(chunk: str) -> list[TaskLogLine]:
    """``<timestamp> <details> <text>`` lines (``timestamps`` and ``details`` on) as TaskLogLines; the details
    are ``k=v,k=v`` with ``com.docker.swarm.task.id`` among them."""
    out: list[TaskLogLine] = []
    for raw in chunk.splitlines():
        stamp, _, rest = raw.partition(" ")
        try:
            moment = datetime.fromisoformat(stamp)
        except ValueError:
            continue
        details, _, text = rest.partition(" ") if rest.startswith("com.docker.swarm.") else ("", "", rest)
        fields = dict(item.partition("=")[::2] for item in details.split(",") if "=" in item)
        out.append(TaskLogLine(fields.get("com.docker.swarm.task.id", ""), LogLine(moment, text)))
    return out


def _subnets(network: Mapping[str, Any]) -> tuple[IPv4Network, ...]:
    configs = (network.get("IPAM") or {}).get("Config") or []
    return tuple(
        IPv4Network(c["Subnet"]) for c in configs if isinstance(c.get("Subnet"), str) and ":" not in c["Subnet"]
    )


def _service(raw: Mapping[str, Any]) -> Service:
    spec = raw.get("Spec") or {}
    mode = spec.get("Mode") or {}
    replicated = mode.get("Replicated") or {}
    return Service(
        id=str(raw["ID"]),
        name=str(spec.get("Name", "")),
        version=int((raw.get("Version") or {}).get("Index", 0)),
        labels=dict(spec.get("Labels") or {}),
        replicas=int(replicated.get("Replicas", 0)),
        spec=spec,
    )


# -- bringing a stack up on a swarm (pyfaasd up/install --backend swarm) ----------------------------------------

LABEL_ANCHOR = "com.pyfaasd.swarm-anchor"  # on the anchor container: the overlay it holds a namespace on


@dataclass(frozen=True, slots=True)
class Anchor:
    """A container on the overlay whose network namespace the provider and the gateway run in (docs/swarm.md)."""

    name: str
    pid: int  # of its process on this host: /proc/<pid>/ns/net is the namespace


@dataclass(frozen=True, slots=True)
class Published:
    """A port of the anchor published on the host: ``host_ip:port`` → the same port in the namespace."""

    host_ip: str
    port: int


class SwarmNode:
    """The engine-level steps before the provider can start: this engine's swarm membership, the overlay, the
    anchor container."""

    def __init__(self, client: aiodocker.Docker) -> None:
        self._docker = client

    @classmethod
    async def connect(cls) -> SwarmNode:
        client = aiodocker.Docker()
        try:
            await client.version()
        except (aiodocker.DockerError, aiohttp.ClientError, OSError) as e:
            await client.close()
            raise DockerUnavailableError(f"cannot reach the Docker Engine: {e}") from e
        return cls(client)

    async def close(self) -> None:
        await self._docker.close()

    async def swarm_state(self) -> tuple[str, bool]:
        """This engine's ``LocalNodeState`` (inactive, pending, active, error, locked) and whether it is a
        manager."""
        info = await self._docker.system.info()
        swarm = info.get("Swarm") or {}
        return str(swarm.get("LocalNodeState", "")), bool(swarm.get("ControlAvailable"))

    async def init_swarm(self, advertise_addr: str) -> None:
        """``docker swarm init`` (``advertise_addr`` empty: the engine picks its address, and refuses when it
        cannot choose among several)."""
        body: dict[str, Any] = {"ListenAddr": "0.0.0.0:2377", "ForceNewCluster": False}
        if advertise_addr:
            body["AdvertiseAddr"] = advertise_addr
        try:
            await self._docker._query_json("swarm/init", method="POST", data=body)
        except aiodocker.DockerError as e:
            raise _error("make this engine a swarm manager (swarm init)", e) from e
        log.info("swarm_initialised", advertise_addr=advertise_addr or "(the engine's choice)")

    async def ensure_network(self, network: str, labels: Mapping[str, str]) -> tuple[IPv4Network, ...]:
        return await SwarmRuntime(self._docker, network).ensure_network(labels)

    async def ensure_anchor(self, name: str, network: str, image: str, ports: tuple[Published, ...]) -> Anchor:
        """The anchor container, running, on ``network`` with ``ports`` published; one that differs (or has
        stopped) is replaced."""
        bindings = {f"{p.port}/tcp": [{"HostIp": p.host_ip, "HostPort": str(p.port)}] for p in ports}
        try:
            existing = await self._docker.containers.get(name)
        except aiodocker.DockerError as e:
            if e.status != 404:
                raise _error(f"inspect the anchor container {name}", e) from e
        else:
            attrs = existing._container
            state = attrs.get("State") or {}
            same = (attrs.get("HostConfig") or {}).get("PortBindings") == bindings and network in (
                (attrs.get("NetworkSettings") or {}).get("Networks") or {}
            )
            if state.get("Running") and same:
                return Anchor(name, int(state["Pid"]))
            await self.remove_anchor(name)
        config: dict[str, Any] = {
            "Image": image,
            "Entrypoint": ["sleep", "infinity"],
            "Cmd": [],
            "User": "65534:65534",
            "Labels": {LABEL_ANCHOR: network},
            "ExposedPorts": {key: {} for key in bindings},
            "HostConfig": {
                "NetworkMode": network,
                "PortBindings": bindings,
                "RestartPolicy": {"Name": "no"},
                "CapDrop": ["ALL"],
                "SecurityOpt": ["no-new-privileges"],
                "ReadonlyRootfs": True,
            },
        }
        try:
            container = await self._docker.containers.run(config=config, name=name)
            attrs = await container.show()
        except aiodocker.DockerError as e:
            await self.remove_anchor(name)
            raise _error(f"start the anchor container {name} on {network}", e) from e
        log.info("anchor_started", container=name, network=network, ports=[f"{p.host_ip}:{p.port}" for p in ports])
        return Anchor(name, int(attrs["State"]["Pid"]))

    async def running_anchor(self, name: str) -> Anchor | None:
        """The anchor container ``name`` if it runs; None if it is missing or stopped."""
        try:
            attrs = (await self._docker.containers.get(name))._container
        except aiodocker.DockerError as e:
            if e.status == 404:
                return None
            raise _error(f"inspect the anchor container {name}", e) from e
        state = attrs.get("State") or {}
        return Anchor(name, int(state["Pid"])) if state.get("Running") else None

    async def remove_anchor(self, name: str) -> None:
        try:
            container = await self._docker.containers.get(name)
            await container.delete(force=True)
        except aiodocker.DockerError as e:
            if e.status not in (404, 409):  # 409: its removal is under way already
                raise _error(f"remove the anchor container {name}", e) from e


# Swarm's configs and secrets are one kind of object to the Engine API (and to aiodocker): data, a name and labels,
# listed by label, removed by ID.
_SwarmObjects = DockerConfigs | DockerSecrets


async def _list_objects(api: _SwarmObjects, kind: str, label: str) -> list[Mapping[str, Any]]:
    try:
        return await api.list(filters={"label": [label]})
    except aiodocker.DockerError as e:
        raise _error(f"list {kind}", e) from e


async def _create_object(api: _SwarmObjects, kind: str, name: str, data: bytes, labels: Mapping[str, str]) -> str:
    try:
        made = await api.create(name, base64.b64encode(data).decode(), b64=True, labels=dict(labels))
    except aiodocker.DockerError as e:
        raise _error(f"create the {kind} {name}", e) from e
    return str(made["ID"])


async def _remove_object(api: _SwarmObjects, kind: str, object_id: str) -> None:
    """A no-op when it is gone."""
    try:
        await api.delete(object_id)
    except aiodocker.DockerError as e:
        if e.status != 404:
            raise _error(f"remove the {kind} {object_id}", e) from e


def _spec_name(raw: Mapping[str, Any]) -> str:
    return str((raw.get("Spec") or {}).get("Name", ""))


def _spec_labels(raw: Mapping[str, Any]) -> dict[str, str]:
    return dict((raw.get("Spec") or {}).get("Labels") or {})
