"""What the orchestration needs from outside the process, as protocols, and the data they pass.

- ``Runtime``: the containers (Docker). ``provider/docker_runtime.py`` implements it and stays the provider's
  only aiodocker import.
- ``Network``: the bridge (addresses, veth attach/detach). ``netconf.Network`` satisfies it as it is.
- ``Probe``: whether a replica's watchdog answers ``/_/health`` with 200, and how many requests it is serving
  (``provider/readiness.py``).

The unit tests run the orchestration against in-memory ones (``tests/unit/provider/fakes.py``).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from ipaddress import IPv4Address
from typing import Any, Protocol


@dataclass(frozen=True, slots=True)
class Container:
    """A function container as the provider needs to see it."""

    id: str
    name: str
    function: str
    namespace: str
    replica: int
    generation: str
    spec: str
    created_label: str
    running: bool  # its process runs and is not frozen (a paused container is not "running" here)
    pid: int
    exit_code: int
    oom_killed: bool
    created: str  # the runtime's own creation time (RFC 3339)
    image_id: str = ""  # the image it was created from, by ID (a tag may have moved since)
    pool_slot: str = ""  # a replica made from a pooled container: its slot under <state>/pool
    paused: bool = False  # frozen by ``Runtime.pause``: its process, memory and network namespace are kept

    @property
    def alive(self) -> bool:
        """Whether it has a process (and so a network namespace): running or paused."""
        return self.running or self.paused

    @property
    def key(self) -> tuple[str, str]:
        return (self.namespace, self.function)

    def exit_message(self) -> str:
        """Why a stopped container stopped, as the end of a sentence."""
        why = "it was killed for using more memory than its limit" if self.oom_killed else f"status {self.exit_code}"
        return f"its container exited ({why})"


@dataclass(frozen=True, slots=True)
class PoolContainer:
    """A container of the warm pool (``provider/pool.py``) that no function has claimed."""

    id: str
    name: str
    slot: str  # its directory under <state>/pool
    runtime: str  # the runtime image reference it was made for
    image_id: str
    running: bool
    pid: int


@dataclass(frozen=True, slots=True)
class ContainerEvent:
    action: str  # start, die, oom, destroy, ...
    id: str
    function: str
    namespace: str
    exit_code: int | None

    @property
    def key(self) -> tuple[str, str]:
        return (self.namespace, self.function)


@dataclass(frozen=True, slots=True)
class ImageInfo:
    """A local image: its ID, its labels and the references that name it."""

    id: str
    labels: Mapping[str, str]
    tags: tuple[str, ...] = ()
    digests: tuple[str, ...] = ()  # repository@sha256:... of the manifests it was pulled as


@dataclass(frozen=True, slots=True)
class VolumeInfo:
    """A Docker volume: its name, where its data is on this host (local ones), labels and driver options."""

    name: str
    mountpoint: str
    labels: Mapping[str, str]
    options: Mapping[str, str]
    created: str


@dataclass(frozen=True, slots=True)
class ContainerUsage:
    """What a running container uses now: CPU in milli-CPUs (1000 = one core busy), memory in bytes."""

    cpu_millis: float
    memory_bytes: float


@dataclass(frozen=True, slots=True)
class LogLine:
    timestamp: datetime
    text: str


class Runtime(Protocol):
    """The function containers of this provider instance (stopped ones too)."""

    async def list_functions(self, key: tuple[str, str] | None = None) -> list[Container]: ...

    async def inspect(self, container_id: str) -> Container | None:
        """None when the container does not exist (any more)."""
        ...

    async def create(self, name: str, config: Mapping[str, Any]) -> str: ...

    async def start(self, container_id: str) -> Container:
        """Start (a no-op if running) and return the container as it is right after."""
        ...

    async def stop(self, container_id: str, timeout_s: float) -> None:
        """Stop it (a paused container too: SIGTERM is delivered once it is thawed)."""
        ...

    async def pause(self, container_id: str) -> None:
        """Freeze its processes (the cgroup freezer): no CPU, its memory and network namespace are kept."""
        ...

    async def unpause(self, container_id: str) -> Container:
        """Thaw a paused container (a no-op if it is not paused) and return it as it is right after."""
        ...

    async def remove(self, container_id: str) -> None: ...

    async def usage(self, container_id: str) -> ContainerUsage | None:
        """CPU and memory the container uses now (over about a second); None when it is not running."""
        ...

    async def list_pool(self) -> list[PoolContainer]:
        """This instance's pool containers no function has claimed (a claimed one is a function container)."""
        ...

    async def inspect_pool(self, container_id: str) -> PoolContainer | None:
        """None when it does not exist or a function has claimed it."""
        ...

    async def start_pool(self, container_id: str) -> PoolContainer:
        """Start a pool container; it as it is right after."""
        ...

    async def rename(self, container_id: str, name: str) -> None: ...

    async def update_resources(self, container_id: str, resources: Mapping[str, int]) -> None:
        """Change a container's limits in place (``Memory``, ``MemorySwap``, ``NanoCpus``, ``MemoryReservation``)."""
        ...

    async def image(self, image: str) -> ImageInfo | None:
        """The image a reference names here, None when it is not present."""
        ...

    async def images_labelled(self, label: str) -> list[ImageInfo]:
        """The local images carrying ``label`` (with any value)."""
        ...

    async def create_volume(self, name: str, options: Mapping[str, str], labels: Mapping[str, str]) -> VolumeInfo:
        """A volume of the local driver with these driver options."""
        ...

    async def volumes(self, label: str) -> list[VolumeInfo]:
        """The volumes carrying ``label``."""
        ...

    async def remove_volume(self, name: str) -> None:
        """Remove a volume (a no-op when it is gone)."""
        ...

    async def run_to_completion(
        self, name: str, config: dict[str, Any], timeout_s: float, on_line: Callable[[str], None]
    ) -> tuple[int, list[str]]:
        """Create, start and wait for a short-lived container; its exit status and output lines. The container
        is removed whatever happens; past ``timeout_s`` it is killed and the status is -1."""
        ...

    async def pull(
        self, image: str, auth: Mapping[str, str] | None, on_progress: Callable[[dict[str, object]], None] | None
    ) -> None:
        """Pull ``image`` as named (ImageUnavailableError with the registry's answer), reporting progress."""
        ...

    async def tag(self, image: str, target: str) -> None:
        """Give the image ``image`` names the reference ``target`` too."""
        ...

    async def untag(self, image: str) -> None:
        """Remove the reference ``image`` (the image stays while another reference names it)."""
        ...

    def logs(
        self, container_id: str, *, tail: int | None, since: datetime | None, follow: bool
    ) -> AsyncIterator[LogLine]: ...

    def events(self) -> AsyncIterator[ContainerEvent]:
        """Events of this instance's function containers until the stream ends (the runtime restarted)."""
        ...


class Attached(Protocol):
    """A container connected to the bridge."""

    @property
    def ip(self) -> IPv4Address: ...


class Network(Protocol):
    """The bridge network. Raises netconf's errors (``netconf.NetconfError``); the provider translates them."""

    async def ensure_bridge(self) -> object:
        """Create or repair the bridge, forwarding and the iptables rules. Idempotent."""
        ...

    async def check_bridge(self) -> str | None:
        """What is wrong with the bridge (missing, down, lost its address), or None."""
        ...

    async def connect(self, netns: int, owner: str) -> Attached:
        """Allocate ``owner``'s address (the same one again if it has one) and attach the namespace of ``netns``."""
        ...

    async def detach(self, ip: IPv4Address) -> bool: ...

    async def lookup(self, owner: str) -> IPv4Address | None: ...

    async def reconcile(self, owners: Iterable[str]) -> Sequence[object]:
        """Free the addresses of owners not in ``owners``."""
        ...


class Probe(Protocol):
    async def healthy(self, ip: IPv4Address) -> bool:
        """Whether the replica at ``ip`` answers healthy now (never raises for a replica that is down)."""
        ...

    async def in_flight(self, ip: IPv4Address, metrics_port: int) -> float | None:
        """The requests the replica's watchdog is serving now (its ``http_requests_in_flight`` on
        ``metrics_port``); None when it does not say (no metrics, another watchdog, gone)."""
        ...
