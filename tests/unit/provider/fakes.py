"""In-memory stand-ins for Docker (``FakeRuntime``), the bridge (``FakeNetwork``) and the health check (``FakeProbe``).

They keep the parts of the real ones' behaviour the orchestration depends on:
- every start, stop and removal, the provider's own too, sends an event (``start``, ``die``, ``oom``,
  ``destroy``) on the streams open at that moment, delivered asynchronously as Docker's are;
- a stopped container has no process, so its network namespace is gone: ``connect`` raises
  ``NetnsNotFoundError``, and a restarted container has a new PID;
- ``connect`` allocates the owner's address (the same one again) and releases a new one if attaching fails.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import shutil
import tempfile
import uuid
import weakref
from collections.abc import AsyncIterator, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestClient

from netconf import NetConfig, NetnsBusyError, NetnsNotFoundError, SubnetFullError, read_hosts
from provider.app import create_app
from provider.config import ProviderConfig
from provider.core import Core
from provider.docker_runtime import (
    LABEL_BRIDGE,
    LABEL_CREATED,
    LABEL_FUNCTION,
    LABEL_GENERATION,
    LABEL_NAMESPACE,
    LABEL_POOL,
    LABEL_POOL_SLOT,
    LABEL_REPLICA,
    LABEL_SPEC,
)
from provider.errors import ImageUnavailableError, RuntimeFailureError, VolumeMountError
from provider.models import FunctionDeployment, FunctionStatus
from provider.namespaces import NamespaceStore
from provider.orchestrator import Orchestrator
from provider.pool_slots import PoolSlots
from provider.runtime import (
    Container,
    ContainerEvent,
    ContainerUsage,
    ImageInfo,
    LogLine,
    PoolContainer,
    VolumeInfo,
)
from provider.scale_store import ScaleStore
from provider.secrets import SecretStore
from provider.state import Timings
from servicekit.auth import Credentials

EPOCH = datetime(2026, 1, 1, tzinfo=UTC)
RESOURCE_KEYS = ("Memory", "MemorySwap", "NanoCpus", "MemoryReservation")


@dataclass
class Behaviour:
    """How the containers of one image behave."""

    exit_on_start: int | None = None  # the process exits at once: start() already finds it stopped
    oom_at_start: bool = False  # runs at start, then is OOM-killed before the network can be attached
    exit_seen_late: int = 0  # after such an exit, how many inspects still show it running (Docker lags)
    probes_until_ready: int = 0  # health checks answered "not yet" before the first healthy one
    never_ready: bool = False
    exit_when_probed: int | None = None  # the process exits with this status at its first health check
    output: tuple[str, ...] = ()  # what its logs say


@dataclass
class FakeContainer:
    id: str
    name: str
    image: str
    labels: dict[str, str]
    created: str
    image_id: str = ""
    binds: tuple[str, ...] = ()
    env: tuple[str, ...] = ()
    resources: dict[str, int] = field(default_factory=dict)  # the limits it has now (created with, or updated)
    claims: Callable[[str], Mapping[str, str] | None] | None = None  # a pool container's claim records
    running: bool = False  # it has a process (paused or not)
    paused: bool = False  # frozen: its process and namespace are there, it answers nothing
    pid: int = 0
    exit_code: int = 0
    oom_killed: bool = False
    probes: int = 0
    starts: int = 0
    stale: list[Container] = field(default_factory=list)  # what the next inspects show, if Docker lags behind

    @property
    def effective(self) -> Mapping[str, str]:
        """Its labels, a claimed pool container's with the claim record laid over (as DockerRuntime does)."""
        slot = self.labels.get(LABEL_POOL_SLOT)
        record = self.claims(slot) if slot is not None and self.claims is not None else None
        return {**self.labels, **record} if record is not None else self.labels

    @property
    def pooled(self) -> bool:
        """An unclaimed pool container."""
        return LABEL_FUNCTION not in self.effective

    @property
    def key(self) -> tuple[str, str]:
        labels = self.effective
        return (labels.get(LABEL_NAMESPACE, ""), labels.get(LABEL_FUNCTION, ""))

    def pool_view(self) -> PoolContainer:
        return PoolContainer(
            id=self.id,
            name=self.name,
            slot=self.labels.get(LABEL_POOL_SLOT, ""),
            runtime=self.labels.get(LABEL_POOL, ""),
            image_id=self.image_id,
            running=self.running,
            pid=self.pid,
        )

    def view(self) -> Container:
        labels = self.effective
        return Container(
            id=self.id,
            name=self.name,
            function=labels[LABEL_FUNCTION],
            namespace=labels.get(LABEL_NAMESPACE, ""),
            replica=int(labels.get(LABEL_REPLICA, "0")),
            generation=labels.get(LABEL_GENERATION, ""),
            spec=labels.get(LABEL_SPEC, "{}"),
            created_label=labels.get(LABEL_CREATED, ""),
            running=self.running and not self.paused,
            pid=self.pid,
            exit_code=self.exit_code,
            oom_killed=self.oom_killed,
            created=self.created,
            image_id=self.image_id,
            pool_slot=self.labels.get(LABEL_POOL_SLOT, ""),
            paused=self.running and self.paused,
        )


Stream = asyncio.Queue[ContainerEvent | BaseException | None]


class FakeRuntime:
    """Docker with containers in a dict. Implements ``provider.runtime.Runtime``."""

    def __init__(self, bridge: str) -> None:
        self.bridge = bridge
        self.containers: dict[str, FakeContainer] = {}
        self.images: dict[str, str] = {"fn:1": "sha256:fn1-a", "fn:2": "sha256:fn2-a"}  # reference -> image ID
        self.pullable: set[str] = set()
        self.pullable_ids: dict[str, str] = {}  # what a pull of a reference brings (default: a fixed ID)
        self.pulls: list[str] = []  # every reference asked of a registry, in order
        self.image_labels: dict[str, dict[str, str]] = {}
        self.volume_store: dict[str, VolumeInfo] = {}
        self.volume_root = Path(tempfile.mkdtemp(prefix="fake-volumes-"))
        weakref.finalize(self, shutil.rmtree, self.volume_root, True)  # each unit test made one and left it in /tmp
        self.mount_errors: dict[str, str] = {}  # a volume whose mount fails at container start -> Docker's message
        self.one_shot: Callable[[dict[str, Any]], tuple[int, list[str]]] = lambda config: (0, [])
        self.behaviours: dict[str, Behaviour] = {}
        self.cpu_millis = 0.0  # what every running container uses, as stats would say
        self.actions: list[tuple[str, str]] = []  # (what, container name) of every call that changes something
        self.claims: Callable[[str], Mapping[str, str] | None] = lambda slot: None  # PoolSlots.labels_of
        self._streams: list[Stream] = []
        self._pids = itertools.count(1000)
        self._clock = itertools.count(1)

    # -- the Runtime protocol ------------------------------------------------------------------------------

    async def list_functions(self, key: tuple[str, str] | None = None) -> list[Container]:
        await asyncio.sleep(0)
        return [
            c.view()
            for c in self.containers.values()
            if c.labels.get(LABEL_BRIDGE) == self.bridge and not c.pooled and (key is None or c.key == key)
        ]

    async def inspect(self, container_id: str) -> Container | None:
        await asyncio.sleep(0)
        found = self.containers.get(container_id)
        if found is None or found.pooled:
            return None
        return found.stale.pop() if found.stale else found.view()

    async def create(self, name: str, config: Mapping[str, Any]) -> str:
        await asyncio.sleep(0)
        if any(c.name == name for c in self.containers.values()):
            raise RuntimeFailureError(f"docker could not create container {name}: the name is in use")
        created = EPOCH + timedelta(seconds=next(self._clock))
        container = FakeContainer(
            id=uuid.uuid4().hex + uuid.uuid4().hex,
            name=name,
            image=config["Image"],
            labels=dict(config["Labels"]),
            created=created.strftime("%Y-%m-%dT%H:%M:%S.%f000Z"),
            image_id=self.images.get(config["Image"], ""),
            binds=tuple(config.get("HostConfig", {}).get("Binds", ())),
            env=tuple(config.get("Env", ())),
            resources={k: v for k, v in config.get("HostConfig", {}).items() if k in RESOURCE_KEYS},
            claims=lambda slot: self.claims(slot),
        )
        self.containers[container.id] = container
        self.actions.append(("create", name))
        return container.id

    async def list_pool(self) -> list[PoolContainer]:
        await asyncio.sleep(0)
        return [
            c.pool_view()
            for c in self.containers.values()
            if c.labels.get(LABEL_BRIDGE) == self.bridge and LABEL_POOL_SLOT in c.labels and c.pooled
        ]

    async def inspect_pool(self, container_id: str) -> PoolContainer | None:
        await asyncio.sleep(0)
        found = self.containers.get(container_id)
        return found.pool_view() if found is not None and found.pooled and LABEL_POOL_SLOT in found.labels else None

    async def start_pool(self, container_id: str) -> PoolContainer:
        await asyncio.sleep(0)
        container = self._get(container_id)
        self.actions.append(("start", container.name))
        if not container.running:
            self._run(container)
        return container.pool_view()

    async def rename(self, container_id: str, name: str) -> None:
        await asyncio.sleep(0)
        container = self._get(container_id)
        if any(c.name == name for c in self.containers.values() if c is not container):
            raise RuntimeFailureError(f"docker could not rename a container to {name}: the name is in use")
        self.actions.append(("rename", f"{container.name} -> {name}"))
        container.name = name

    async def update_resources(self, container_id: str, resources: Mapping[str, int]) -> None:
        await asyncio.sleep(0)
        container = self._get(container_id)
        self.actions.append(("update", container.name))
        container.resources.update(resources)

    async def start(self, container_id: str) -> Container:
        await asyncio.sleep(0)
        container = self._get(container_id)
        self.actions.append(("start", container.name))
        for bind in container.binds:
            source = bind.split(":", 1)[0]
            if source in self.mount_errors:  # as Docker answers a start whose volume cannot be mounted
                raise VolumeMountError(
                    f"error while mounting volume '/var/lib/docker/volumes/{source}/_data': {self.mount_errors[source]}"
                )
        if not container.running:
            self._run(container)
            behaviour = self.behaviour(container)
            if behaviour.exit_on_start is not None:
                self.exit(container.id, behaviour.exit_on_start)
            elif behaviour.oom_at_start:
                seen = container.view()  # Docker's inspect right after start still saw it running
                self.exit(container.id, 137, oom=True)
                container.stale = [seen] * behaviour.exit_seen_late
                return seen
        return container.view()

    async def stop(self, container_id: str, timeout_s: float) -> None:
        del timeout_s
        await asyncio.sleep(0)
        container = self.containers.get(container_id)
        if container is not None and container.running:
            self.actions.append(("stop", container.name))
            self.exit(container_id, 0)

    async def pause(self, container_id: str) -> None:
        await asyncio.sleep(0)
        container = self._get(container_id)
        if not container.running or container.paused:
            raise RuntimeFailureError(f"docker could not pause a container: {container.name} is not running")
        self.actions.append(("pause", container.name))
        container.paused = True
        self._emit("pause", container)

    async def unpause(self, container_id: str) -> Container:
        await asyncio.sleep(0)
        container = self._get(container_id)
        if container.paused:
            self.actions.append(("unpause", container.name))
            container.paused = False
            self._emit("unpause", container)
        return container.view()

    async def usage(self, container_id: str) -> ContainerUsage | None:
        await asyncio.sleep(0)
        container = self.containers.get(container_id)
        if container is None or not container.running or container.paused:
            return None
        return ContainerUsage(self.cpu_millis, 4 << 20)

    async def remove(self, container_id: str) -> None:
        await asyncio.sleep(0)
        container = self.containers.get(container_id)
        if container is None:
            return
        self.actions.append(("remove", container.name))
        if container.running:
            self.exit(container_id, 137)
        del self.containers[container_id]
        self._emit("destroy", container)

    async def image(self, image: str) -> ImageInfo | None:
        await asyncio.sleep(0)
        found = self.images.get(image)
        return None if found is None else ImageInfo(found, self.image_labels.get(image, {}), (image,))

    async def images_labelled(self, label: str) -> list[ImageInfo]:
        await asyncio.sleep(0)
        return [
            ImageInfo(self.images[ref], labels, (ref,))
            for ref, labels in self.image_labels.items()
            if label in labels and ref in self.images
        ]

    async def create_volume(self, name: str, options: Mapping[str, str], labels: Mapping[str, str]) -> VolumeInfo:
        await asyncio.sleep(0)
        if name in self.volume_store:
            raise RuntimeFailureError(f"docker could not create volume {name}: it exists")
        mountpoint = self.volume_root / name if not options else None
        if mountpoint is not None:
            mountpoint.mkdir(parents=True)
        info = VolumeInfo(name, str(mountpoint or ""), dict(labels), dict(options), "2026-01-01T00:00:00Z")
        self.volume_store[name] = info
        self.actions.append(("create volume", name))
        return info

    async def volumes(self, label: str) -> list[VolumeInfo]:
        await asyncio.sleep(0)
        return [v for v in self.volume_store.values() if label in v.labels]

    async def remove_volume(self, name: str) -> None:
        await asyncio.sleep(0)
        if self.volume_store.pop(name, None) is not None:
            self.actions.append(("remove volume", name))

    async def run_to_completion(
        self, name: str, config: dict[str, Any], timeout_s: float, on_line: Callable[[str], None]
    ) -> tuple[int, list[str]]:
        """One-shot containers (the pip installer) are played by ``self.one_shot``."""
        del timeout_s
        await asyncio.sleep(0)
        self.actions.append(("run", name))
        status, lines = self.one_shot(config)
        for line in lines:
            on_line(line)
        return status, lines

    async def pull(
        self, image: str, auth: Mapping[str, str] | None, on_progress: Callable[[dict[str, object]], None] | None
    ) -> None:
        del auth
        await asyncio.sleep(0)
        self.pulls.append(image)
        if image not in self.pullable:
            raise ImageUnavailableError(f"manifest for {image} not found")
        if on_progress is not None:
            on_progress({"status": "Downloading", "id": "layer1", "progressDetail": {"current": 5, "total": 10}})
        self.images[image] = self.pullable_ids.get(image, f"sha256:{image}-pulled")

    async def tag(self, image: str, target: str) -> None:
        await asyncio.sleep(0)
        self.images[target] = self.images[image]

    async def untag(self, image: str) -> None:
        await asyncio.sleep(0)
        self.images.pop(image, None)

    async def logs(
        self, container_id: str, *, tail: int | None, since: datetime | None, follow: bool
    ) -> AsyncIterator[LogLine]:
        del since, follow
        container = self.containers.get(container_id)
        if container is None:
            return
        lines = self.behaviour(container).output
        for i, text in enumerate(lines[-tail:] if tail else lines):
            yield LogLine(EPOCH + timedelta(milliseconds=i), text)

    async def events(self) -> AsyncIterator[ContainerEvent]:
        stream: Stream = asyncio.Queue()
        self._streams.append(stream)
        try:
            while (item := await stream.get()) is not None:
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            self._streams.remove(stream)

    # -- what happens from outside (docker kill, docker restart, docker rm, the kernel, dockerd) -------------

    def behaviour(self, container: FakeContainer) -> Behaviour:
        return self.behaviours.get(container.image, Behaviour())

    def exit(self, container_id: str, status: int, *, oom: bool = False) -> None:
        """The container's process ends (``docker kill``, a crash, the OOM killer)."""
        container = self._get(container_id)
        container.running, container.pid, container.exit_code, container.oom_killed = False, 0, status, oom
        container.paused = False
        if oom:
            self._emit("oom", container)
        self._emit("die", container, status)

    def restart_outside(self, container_id: str) -> None:
        """``docker restart``: a new process, so a new network namespace without the bridge."""
        container = self._get(container_id)
        if container.running:
            self.exit(container_id, 0)
        self._run(container)

    def remove_outside(self, container_id: str) -> None:
        """``docker rm -f``."""
        container = self._get(container_id)
        if container.running:
            self.exit(container_id, 137)
        del self.containers[container_id]
        self._emit("destroy", container)

    def end_streams(self, error: BaseException | None = None) -> None:
        """The event streams end (dockerd restarted), or break with ``error``."""
        for stream in list(self._streams):
            stream.put_nowait(error)

    @property
    def following(self) -> int:
        """How many event streams are open."""
        return len(self._streams)

    # -- looking at it ---------------------------------------------------------------------------------------

    def of(
        self, name: str, namespace: str = "openfaas-fn", *, running: bool | None = None, paused: bool | None = None
    ) -> list[FakeContainer]:
        """The function's containers; ``running``: (not) running unfrozen; ``paused``: (not) paused."""
        found = [c for c in self.containers.values() if c.key == (namespace, name)]
        if running is not None:
            found = [c for c in found if (c.running and not c.paused) == running]
        if paused is not None:
            found = [c for c in found if (c.running and c.paused) == paused]
        return sorted(found, key=lambda c: c.name)

    def by_pid(self, pid: int) -> FakeContainer | None:
        """The container whose process (and so network namespace) has ``pid``: a paused one too."""
        return next((c for c in self.containers.values() if c.running and c.pid == pid), None)

    def _get(self, container_id: str) -> FakeContainer:
        container = self.containers.get(container_id)
        if container is None:
            raise RuntimeFailureError(f"docker could not find container {container_id[:12]}")
        return container

    def _run(self, container: FakeContainer) -> None:
        container.running, container.pid, container.exit_code, container.oom_killed = True, next(self._pids), 0, False
        container.probes = 0
        container.starts += 1
        self._emit("start", container)

    def _emit(self, action: str, container: FakeContainer, status: int | None = None) -> None:
        namespace, function = container.key
        event = ContainerEvent(action=action, id=container.id, function=function, namespace=namespace, exit_code=status)
        for stream in self._streams:
            stream.put_nowait(event)


@dataclass(frozen=True, slots=True)
class FakeAttachment:
    ip: IPv4Address


@dataclass
class FakeNetwork:
    """The bridge: addresses by owner, namespaces (PIDs) attached by address. Satisfies ``provider.runtime.Network``.

    ``failures`` are raised by the next ``connect`` calls, in order; ``foreign_eth0`` are PIDs whose namespace
    already has an ``eth0`` netconf did not make.
    """

    runtime: FakeRuntime
    subnet: IPv4Network
    allocations: dict[str, IPv4Address] = field(default_factory=dict)
    attached: dict[IPv4Address, int] = field(default_factory=dict)
    failures: list[Exception] = field(default_factory=list)
    foreign_eth0: set[int] = field(default_factory=set)
    bridge_problem: str | None = None  # what check_bridge reports; ensure_bridge clears it
    bridge_failures: list[Exception] = field(default_factory=list)  # raised by the next ensure_bridge calls
    bridges_ensured: int = 0

    async def ensure_bridge(self) -> object:
        await asyncio.sleep(0)
        if self.bridge_failures:
            raise self.bridge_failures.pop(0)
        if self.bridge_problem is not None:
            # A bridge made anew has no ports: the veths of running replicas must be attached again.
            self.bridge_problem = None
            self.attached.clear()
        self.bridges_ensured += 1
        return None

    async def check_bridge(self) -> str | None:
        await asyncio.sleep(0)
        return self.bridge_problem

    async def connect(self, netns: int, owner: str) -> FakeAttachment:
        await asyncio.sleep(0)
        known = owner in self.allocations
        ip = self._allocate(owner)
        try:
            if self.failures:
                raise self.failures.pop(0)
            if self.runtime.by_pid(netns) is None:
                raise NetnsNotFoundError(f"network namespace /proc/{netns}/ns/net cannot be opened: No such file")
            if netns in self.foreign_eth0:
                raise NetnsBusyError("the network namespace already has an interface eth0 that netconf did not create")
        except Exception:
            if not known:
                del self.allocations[owner]
            raise
        self.attached[ip] = netns
        return FakeAttachment(ip)

    async def detach(self, ip: IPv4Address) -> bool:
        await asyncio.sleep(0)
        removed = self.attached.pop(ip, None) is not None
        for owner, owned in list(self.allocations.items()):
            if owned == ip:
                del self.allocations[owner]
        return removed

    async def lookup(self, owner: str) -> IPv4Address | None:
        await asyncio.sleep(0)
        return self.allocations.get(owner)

    async def reconcile(self, owners: Iterable[str]) -> Sequence[object]:
        keep = set(owners)
        freed = [owner for owner in self.allocations if owner not in keep]
        for owner in freed:
            self.attached.pop(self.allocations.pop(owner), None)
        return freed

    def _allocate(self, owner: str) -> IPv4Address:
        if owner in self.allocations:
            return self.allocations[owner]
        used = set(self.allocations.values())
        bridge = next(self.subnet.hosts())
        for ip in self.subnet.hosts():
            if ip != bridge and ip not in used:
                self.allocations[owner] = ip
                return ip
        raise SubnetFullError(f"subnet {self.subnet} is full: all {len(used)} addresses are allocated")


@dataclass
class FakeProbe:
    """A replica is healthy when its container runs at that address and its behaviour says so."""

    runtime: FakeRuntime
    network: FakeNetwork
    # What each replica's watchdog says it is serving (absent: it does not say, as a watchdog without metrics).
    in_flight_at: dict[IPv4Address, float] = field(default_factory=dict)
    in_flight_asks: list[tuple[IPv4Address, int]] = field(default_factory=list)

    async def in_flight(self, ip: IPv4Address, metrics_port: int) -> float | None:
        await asyncio.sleep(0)
        self.in_flight_asks.append((ip, metrics_port))
        return self.in_flight_at.get(ip)

    async def healthy(self, ip: IPv4Address) -> bool:
        await asyncio.sleep(0)
        pid = self.network.attached.get(ip)
        container = None if pid is None else self.runtime.by_pid(pid)
        if container is None or container.paused:  # a frozen watchdog answers nothing
            return False
        behaviour = self.runtime.behaviour(container)
        container.probes += 1
        if behaviour.exit_when_probed is not None:
            self.runtime.exit(container.id, behaviour.exit_when_probed)
            return False
        return not behaviour.never_ready and container.probes > behaviour.probes_until_ready


# The provider's HTTP API over a World, as the tests call it.
CREDENTIALS = Credentials("admin", "secret")
AUTH = {"Authorization": CREDENTIALS.authorization}
Client = TestClient[Any, Any]


FAST = Timings(
    retire_grace_s=0.0,
    drain_poll_s=0.01,
    restart_backoff_s=(0.01, 0.05, 0.2),
    slow_ready_poll_s=0.01,
    exit_report_wait_s=0.2,
    events_retry_s=(0.01, 0.05),
)


POOL_RUNTIME = "rt:py"  # the runtime the pool of a World keeps containers of (when pool_size > 0)


class World:
    """A provider's orchestration over the fakes, with the stores in a temporary state dir.

    ``restart()`` is a provider killed and started again: a new view over the same Docker, bridge and disk.
    """

    def __init__(
        self,
        state_dir: Path,
        subnet: str = "10.99.0.0/28",
        timings: Timings = FAST,
        volume_host_roots: tuple[Path, ...] = (),
        drain_timeout_s: float = 60.0,
        pool_size: int = 0,
        zero_pause_s: float = 0.0,  # the stop path of scale to zero; tests of the pause window set it
    ) -> None:
        state_dir.mkdir(parents=True, exist_ok=True)
        self.config = ProviderConfig(
            net=NetConfig(bridge="pft0", subnet=IPv4Network(subnet), state_dir=state_dir),
            ready_timeout_s=1.0,
            stop_timeout_s=1.0,
            volume_host_roots=volume_host_roots,
            drain_timeout_s=drain_timeout_s,
            pool_size=pool_size,
            pool_runtimes=(POOL_RUNTIME,),
            zero_pause_s=zero_pause_s,
        )
        self.runtime = FakeRuntime(self.config.net.bridge)
        self.slots = PoolSlots(self.config.pool_dir)
        self.runtime.claims = self.slots.labels_of
        self.network = FakeNetwork(self.runtime, self.config.net.subnet)
        self.probe = FakeProbe(self.runtime, self.network)
        self.namespaces = NamespaceStore(state_dir / "namespaces")
        self.secrets = SecretStore(self.config.secrets_dir, os.getgid(), self.namespaces)
        self.scale_store = ScaleStore(state_dir / "replicas")
        self.timings = timings
        self.core = self._build()

    def _build(self) -> Core:
        return Core.build(
            self.config,
            self.runtime,
            self.network,
            self.probe,
            self.secrets,
            self.namespaces,
            self.scale_store,
            self.timings,
            self.slots,
        )

    def app(self, credentials: Credentials) -> web.Application:
        """The provider's HTTP API over this world."""
        return create_app(self.config, credentials, self.core, self.secrets, self.namespaces)

    @property
    def orchestrator(self) -> Orchestrator:
        return self.core.orchestrator

    async def start(self) -> None:
        await self.core.start()
        await until(lambda: self.runtime.following > 0, what="the event follower to subscribe")

    async def restart(self) -> None:
        await self.core.close()
        self.slots = PoolSlots(self.config.pool_dir)  # a new provider reads the claim records from disk
        self.runtime.claims = self.slots.labels_of
        self.core = self._build()
        await self.start()

    async def deploy(self, name: str, image: str = "fn:1", **fields: Any) -> FunctionStatus:
        return await self.orchestrator.deploy(FunctionDeployment.parse({"service": name, "image": image, **fields}))

    def hosts(self, name: str, namespace: str = "openfaas-fn") -> list[str]:
        """The addresses the hosts file gives the function, sorted."""
        return sorted(str(ip) for ip in read_hosts(self.config.hosts_path).lookup(f"{name}.{namespace}"))

    def ips(self, name: str, namespace: str = "openfaas-fn") -> list[str]:
        """The addresses of the function's running containers that are attached to the bridge, sorted."""
        pids = {c.pid for c in self.runtime.of(name, namespace, running=True)}
        return sorted(str(ip) for ip, pid in self.network.attached.items() if pid in pids)

    def serving(self, name: str, replicas: int, namespace: str = "openfaas-fn") -> bool:
        """``replicas`` containers run, each attached, and exactly those are in the hosts file."""
        running = self.runtime.of(name, namespace, running=True)
        hosts = self.hosts(name, namespace)
        return len(running) == len(hosts) == replicas and hosts == self.ips(name, namespace)


async def until(condition: Callable[[], bool], timeout: float = 3.0, what: str = "the condition") -> None:
    """Wait (on the loop, so background tasks run) until ``condition()`` holds."""
    deadline = asyncio.get_running_loop().time() + timeout
    while not condition():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.005)
