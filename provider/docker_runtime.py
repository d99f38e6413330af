"""The Docker Engine, through aiodocker: the provider's only aiodocker import; implements ``provider.runtime.Runtime``.

Everything that leaves this module is a typed dataclass of ``provider/runtime.py`` or one of the provider's
errors; aiodocker's ``dict[str, Any]`` payloads and ``DockerError`` stay inside.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator, Callable, Mapping
from datetime import UTC, datetime
from typing import Any

import aiodocker
import aiohttp
import structlog

from provider.errors import (
    DockerUnavailableError,
    ImageUnavailableError,
    RuntimeFailureError,
    VolumeInUseError,
    VolumeMountError,
)
from provider.runtime import (
    Container,
    ContainerEvent,
    ContainerUsage,
    ImageInfo,
    LogLine,
    PoolContainer,
    VolumeInfo,
)

log = structlog.get_logger("provider.docker")
# How long removing a volume waits for the stopping containers that still hold it, and how often it asks.
VOLUME_RELEASE_WAIT_S = 15.0
VOLUME_RELEASE_STEP_S = 0.25

LABEL_FUNCTION = "com.pyfaasd.function"
LABEL_NAMESPACE = "com.pyfaasd.namespace"
LABEL_REPLICA = "com.pyfaasd.replica"
LABEL_SPEC = "com.pyfaasd.spec"
LABEL_CREATED = "com.pyfaasd.created"  # when the function was first deployed (kept across updates)
LABEL_GENERATION = "com.pyfaasd.generation"  # changes with every deploy/update
# The bridge a container belongs to: the identity of a provider instance, so a second instance (tests, a
# second install) never adopts or restarts the containers of another.
LABEL_BRIDGE = "com.pyfaasd.bridge"
# A container of the warm pool (provider/pool.py): the runtime reference it was made for, and its slot directory.
# Once a function claims it, the slot's claim record holds the labels above, laid over the container's own.
LABEL_POOL = "com.pyfaasd.pool"
LABEL_POOL_SLOT = "com.pyfaasd.pool.slot"

Claims = Callable[[str], Mapping[str, str] | None]


def _no_claims(slot: str) -> Mapping[str, str] | None:
    del slot
    return None


def _error(action: str, e: aiodocker.DockerError) -> Exception:
    message = e.message if isinstance(e.message, str) else str(e.message)
    return RuntimeFailureError(f"docker could not {action}: {message}")


class DockerRuntime:
    def __init__(self, client: aiodocker.Docker, bridge: str, claims: Claims = _no_claims) -> None:
        self._docker = client
        self._instance_filter = f"{LABEL_BRIDGE}={bridge}"
        self._claims = claims

    @classmethod
    async def connect(cls, bridge: str, claims: Claims = _no_claims) -> DockerRuntime:
        """``claims``: the labels a claimed pool container stands for, by slot (``PoolSlots.labels_of``)."""
        client = aiodocker.Docker()
        runtime = cls(client, bridge, claims)
        try:
            await client.version()
        except (aiodocker.DockerError, aiohttp.ClientError, OSError) as e:
            await client.close()
            raise DockerUnavailableError(f"cannot reach the Docker Engine: {e}") from e
        return runtime

    async def close(self) -> None:
        await self._docker.close()

    # -- containers --------------------------------------------------------------------------------------

    async def list_functions(self, key: tuple[str, str] | None = None) -> list[Container]:
        """This instance's function containers, stopped ones too; only those of ``(namespace, name)`` if given.

        Filtering by label in Docker, not afterwards, spares an inspect of every other function's containers.
        """
        labels = [LABEL_FUNCTION, self._instance_filter]
        if key is not None:
            labels += [f"{LABEL_NAMESPACE}={key[0]}", f"{LABEL_FUNCTION}={key[1]}"]
        try:
            found = await self._docker.containers.list(all=True, filters={"label": labels})
            pooled = await self._docker.containers.list(
                all=True, filters={"label": [LABEL_POOL_SLOT, self._instance_filter]}
            )
        except aiodocker.DockerError as e:
            raise _error("list containers", e) from e
        containers = []
        for summary in found + pooled:
            info = await self.inspect(summary.id)
            if info is not None and (key is None or info.key == key):
                containers.append(info)
        return containers

    async def list_pool(self) -> list[PoolContainer]:
        try:
            found = await self._docker.containers.list(
                all=True, filters={"label": [LABEL_POOL_SLOT, self._instance_filter]}
            )
        except aiodocker.DockerError as e:
            raise _error("list containers", e) from e
        members = []
        for summary in found:
            member = await self.inspect_pool(summary.id)
            if member is not None:
                members.append(member)
        return members

    async def inspect_pool(self, container_id: str) -> PoolContainer | None:
        try:
            data = await self._docker.containers.container(container_id).show()
        except aiodocker.DockerError as e:
            if e.status == 404:
                return None
            raise _error("inspect a container", e) from e
        labels = data.get("Config", {}).get("Labels") or {}
        slot = labels.get(LABEL_POOL_SLOT)
        if slot is None or self._claims(slot) is not None:
            return None
        state = data.get("State", {})
        return PoolContainer(
            id=data["Id"],
            name=str(data.get("Name", "")).lstrip("/"),
            slot=slot,
            runtime=labels.get(LABEL_POOL, ""),
            image_id=str(data.get("Image", "")),
            running=bool(state.get("Running")) and not state.get("Restarting"),
            pid=int(state.get("Pid") or 0),
        )

    async def start_pool(self, container_id: str) -> PoolContainer:
        await self._start(container_id)
        member = await self.inspect_pool(container_id)
        if member is None:
            raise RuntimeFailureError(f"pool container {container_id[:12]} disappeared while starting")
        return member

    async def rename(self, container_id: str, name: str) -> None:
        try:
            await self._docker.containers.container(container_id).rename(name)
        except aiodocker.DockerError as e:
            raise _error(f"rename a container to {name}", e) from e

    async def update_resources(self, container_id: str, resources: Mapping[str, int]) -> None:
        # aiodocker has no call for POST /containers/{id}/update; its own request helper sends it.
        try:
            await self._docker._query_json(f"containers/{container_id}/update", method="POST", data=dict(resources))
        except aiodocker.DockerError as e:
            raise _error("change a container's limits", e) from e

    async def inspect(self, container_id: str) -> Container | None:
        try:
            data = await self._docker.containers.container(container_id).show()
        except aiodocker.DockerError as e:
            if e.status == 404:
                return None
            raise _error("inspect a container", e) from e
        return _container(data, self._claims)

    async def usage(self, container_id: str) -> ContainerUsage | None:
        """From one ``stats`` answer (``stream=0``: the engine samples twice, about a second apart)."""
        try:
            answers = await self._docker.containers.container(container_id).stats(stream=False, timeout=10.0)
        except aiodocker.DockerError as e:
            if e.status in (404, 409):
                return None
            raise _error("read a container's stats", e) from e
        except (aiohttp.ClientError, TimeoutError):
            return None
        return _usage(answers[0]) if answers else None

    async def create(self, name: str, config: Mapping[str, Any]) -> str:
        try:
            container = await self._docker.containers.create(dict(config), name=name)
        except aiodocker.DockerError as e:
            raise _error(f"create container {name}", e) from e
        return container.id

    async def _start(self, container_id: str) -> None:
        try:
            await self._docker.containers.container(container_id).start()
        except aiodocker.DockerError as e:
            message = e.message if isinstance(e.message, str) else str(e.message)
            if "mounting volume" in message or "failed to mount local volume" in message:
                raise VolumeMountError(message) from e
            if e.status != 304:  # already started
                raise _error("start a container", e) from e

    async def start(self, container_id: str) -> Container:
        await self._start(container_id)
        info = await self.inspect(container_id)
        if info is None:
            raise RuntimeFailureError(f"container {container_id[:12]} disappeared while starting")
        return info

    async def stop(self, container_id: str, timeout_s: float) -> None:
        try:
            await self._docker.containers.container(container_id).stop(t=max(int(timeout_s), 0))
        except aiodocker.DockerError as e:
            if e.status not in (304, 404):
                raise _error("stop a container", e) from e

    async def pause(self, container_id: str) -> None:
        try:
            await self._docker.containers.container(container_id).pause()
        except aiodocker.DockerError as e:
            raise _error("pause a container", e) from e

    async def unpause(self, container_id: str) -> Container:
        try:
            await self._docker.containers.container(container_id).unpause()
        except aiodocker.DockerError as e:
            if e.status != 409 or "is not paused" not in str(e.message):
                raise _error("unpause a container", e) from e
        info = await self.inspect(container_id)
        if info is None:
            raise RuntimeFailureError(f"container {container_id[:12]} disappeared while unpausing")
        return info

    async def remove(self, container_id: str) -> None:
        try:
            await self._docker.containers.container(container_id).delete(force=True)
        except aiodocker.DockerError as e:
            if e.status != 404:
                raise _error("remove a container", e) from e

    # -- images ------------------------------------------------------------------------------------------

    async def image(self, image: str) -> ImageInfo | None:
        try:
            data = await self._docker.images.inspect(image)
        except aiodocker.DockerError as e:
            if e.status == 404:
                return None
            raise _error(f"inspect image {image}", e) from e
        labels = (data.get("Config") or {}).get("Labels") or {}
        tags, digests = tuple(data.get("RepoTags") or ()), tuple(data.get("RepoDigests") or ())
        return ImageInfo(str(data["Id"]), dict(labels), tags, digests)

    async def images_labelled(self, label: str) -> list[ImageInfo]:
        try:
            found = await self._docker.images.list(filters={"label": [label]})
        except aiodocker.DockerError as e:
            raise _error("list images", e) from e
        return [ImageInfo(str(i["Id"]), dict(i.get("Labels") or {}), tuple(i.get("RepoTags") or ())) for i in found]

    # -- volumes -------------------------------------------------------------------------------------------

    async def create_volume(self, name: str, options: Mapping[str, str], labels: Mapping[str, str]) -> VolumeInfo:
        config = {"Name": name, "Driver": "local", "DriverOpts": dict(options), "Labels": dict(labels)}
        try:
            volume = await self._docker.volumes.create(config)  # type: ignore[no-untyped-call]
            data = await volume.show()
        except aiodocker.DockerError as e:
            raise _error(f"create volume {name}", e) from e
        return _volume(data)

    async def volumes(self, label: str) -> list[VolumeInfo]:
        try:
            found = await self._docker.volumes.list(filters={"label": [label]})  # type: ignore[no-untyped-call]
        except aiodocker.DockerError as e:
            raise _error("list volumes", e) from e
        return [_volume(v) for v in found.get("Volumes") or []]

    async def remove_volume(self, name: str) -> None:
        """Remove a volume; a no-op when it is gone. No function uses it (the caller checked): containers that
        still hold it are stopping (with Swarm, the draining tasks of a removed service), so wait for them for up
        to :data:`VOLUME_RELEASE_WAIT_S` before a 409."""
        deadline = time.monotonic() + VOLUME_RELEASE_WAIT_S
        while True:
            try:
                volume = await self._docker.volumes.get(name)  # type: ignore[no-untyped-call]
                await volume.delete()
                return
            except aiodocker.DockerError as e:
                if e.status == 404:
                    return
                if e.status != 409:
                    raise _error(f"remove volume {name}", e) from e
                if time.monotonic() > deadline:
                    raise VolumeInUseError(
                        f"volume {name} is still mounted by containers {VOLUME_RELEASE_WAIT_S:g}s after it was asked "
                        "to go (no function uses it: they are stopping, or are not pyfaasd's); try again shortly"
                    ) from e
            await asyncio.sleep(VOLUME_RELEASE_STEP_S)

    async def run_to_completion(
        self, name: str, config: dict[str, Any], timeout_s: float, on_line: Callable[[str], None]
    ) -> tuple[int, list[str]]:
        try:
            container = await self._docker.containers.create(config, name=name)
        except aiodocker.DockerError as e:
            raise _error(f"create container {name}", e) from e
        lines: list[str] = []
        try:
            await container.start()
            try:
                async with asyncio.timeout(timeout_s):
                    async for chunk in container.log(stdout=True, stderr=True, follow=True):
                        for line in chunk.splitlines():
                            lines.append(line)
                            on_line(line)
                    result = await container.wait()
                status = int(result.get("StatusCode", -1))
            except TimeoutError:
                lines.append(f"(stopped after {timeout_s:g}s)")
                status = -1
            return status, lines
        except aiodocker.DockerError as e:
            raise _error(f"run container {name}", e) from e
        finally:
            with contextlib.suppress(aiodocker.DockerError):
                await container.delete(force=True)

    async def pull(
        self, image: str, auth: Mapping[str, str] | None, on_progress: Callable[[dict[str, object]], None] | None
    ) -> None:
        try:
            async for message in self._docker.images.pull(image, auth=dict(auth) if auth else None, stream=True):
                if on_progress is not None and isinstance(message, dict):
                    on_progress(message)
        except aiodocker.DockerError as e:
            answer = e.message if isinstance(e.message, str) else json.dumps(e.message)
            raise ImageUnavailableError(answer) from e
        except (ValueError, aiohttp.ClientError) as e:
            raise ImageUnavailableError(str(e)) from e

    async def tag(self, image: str, target: str) -> None:
        repository, _, tag = target.rpartition(":") if ":" in target.rsplit("/", 1)[-1] else (target, "", "latest")
        try:
            await self._docker.images.tag(image, repository, tag=tag or "latest")
        except aiodocker.DockerError as e:
            raise _error(f"tag {image} as {target}", e) from e

    async def untag(self, image: str) -> None:
        try:
            await self._docker.images.delete(image, noprune=True)
        except aiodocker.DockerError as e:
            if e.status != 404:
                raise _error(f"remove the tag {image}", e) from e

    # -- logs and events ---------------------------------------------------------------------------------

    async def logs(
        self, container_id: str, *, tail: int | None, since: datetime | None, follow: bool
    ) -> AsyncIterator[LogLine]:
        """The container's stdout and stderr as lines, oldest first, each with Docker's timestamp."""
        params: dict[str, Any] = {"timestamps": True}
        if tail is not None:
            params["tail"] = str(tail)
        if since is not None:
            params["since"] = f"{since.timestamp():.9f}"
        container = self._docker.containers.container(container_id)
        try:
            if follow:
                stream = container.log(stdout=True, stderr=True, follow=True, **params)
                pending = ""
                async for chunk in stream:
                    pending += chunk
                    *lines, pending = pending.split("\n")
                    for line in lines:
                        yield _log_line(line)
                if pending:
                    yield _log_line(pending)
            else:
                chunks = await container.log(stdout=True, stderr=True, follow=False, **params)
                for line in "".join(chunks).split("\n"):
                    if line:
                        yield _log_line(line)
        except aiodocker.DockerError as e:
            if e.status == 404:
                return
            raise _error("read container logs", e) from e

    async def events(self) -> AsyncIterator[ContainerEvent]:
        """Container events of function containers until the stream ends (dockerd stopped).

        aiodocker's public event API: a subscriber of ``docker.events`` fed by ``events.run``, which runs in a
        task of ours so that its failure (Docker unreachable, a broken stream) is raised here, not lost.
        """
        # Every container of this instance: function containers and pool ones (whose function, once claimed,
        # is in the claim record, not in a label). Others (the pip installer) have no function and are ignored.
        filters = {"type": ["container"], "label": [self._instance_filter]}
        subscriber = self._docker.events.subscribe(create_task=False)  # type: ignore[no-untyped-call]
        feed = asyncio.create_task(self._docker.events.run(filters=filters), name="docker events feed")
        try:
            while (event := await subscriber.get()) is not None:
                yield _event(event, self._claims)
            await feed  # the stream ended: raise what ended it, if anything did
        except aiodocker.DockerError as e:
            raise _error("follow events", e) from e
        finally:
            feed.cancel()
            await asyncio.gather(feed, return_exceptions=True)


def _event(event: Mapping[str, Any], claims: Claims = _no_claims) -> ContainerEvent:
    actor = event.get("Actor") or {}
    attributes = _claimed(actor.get("Attributes") or {}, claims) or {}
    code = attributes.get("exitCode")
    return ContainerEvent(
        action=str(event.get("Action", "")).split(":", 1)[0],
        id=str(event.get("id") or actor.get("ID", "")),
        function=attributes.get(LABEL_FUNCTION, ""),
        namespace=attributes.get(LABEL_NAMESPACE, ""),
        exit_code=int(code) if code is not None and str(code).isdigit() else None,
    )


def _claimed(labels: Mapping[str, str], claims: Claims) -> Mapping[str, str] | None:
    """A container's labels, a pool container's with its claim record laid over; None for an unclaimed one."""
    slot = labels.get(LABEL_POOL_SLOT)
    if slot is None:
        return labels
    record = claims(slot)
    return None if record is None else {**labels, **record}


def _container(data: Mapping[str, Any], claims: Claims = _no_claims) -> Container | None:
    labels = _claimed(data.get("Config", {}).get("Labels") or {}, claims)
    if labels is None or LABEL_FUNCTION not in labels:
        return None
    state = data.get("State", {})
    try:
        replica = int(labels.get(LABEL_REPLICA, "0"))
    except ValueError:
        replica = 0
    return Container(
        id=data["Id"],
        name=str(data.get("Name", "")).lstrip("/"),
        function=labels[LABEL_FUNCTION],
        namespace=labels.get(LABEL_NAMESPACE, ""),
        replica=replica,
        generation=labels.get(LABEL_GENERATION, ""),
        spec=labels.get(LABEL_SPEC, "{}"),
        created_label=labels.get(LABEL_CREATED, ""),
        running=bool(state.get("Running")) and not state.get("Restarting") and not state.get("Paused"),
        pid=int(state.get("Pid") or 0),
        exit_code=int(state.get("ExitCode") or 0),
        oom_killed=bool(state.get("OOMKilled")),
        created=str(data.get("Created", "")),
        image_id=str(data.get("Image", "")),
        pool_slot=labels.get(LABEL_POOL_SLOT, ""),
        paused=bool(state.get("Running")) and bool(state.get("Paused")),
    )


def _volume(data: Mapping[str, Any]) -> VolumeInfo:
    return VolumeInfo(
        name=str(data["Name"]),
        mountpoint=str(data.get("Mountpoint") or ""),
        labels=dict(data.get("Labels") or {}),
        options=dict(data.get("Options") or {}),
        created=str(data.get("CreatedAt") or ""),
    )


def _log_line(line: str) -> LogLine:
    stamp, _, text = line.partition(" ")
    try:
        moment = datetime.fromisoformat(stamp)
    except ValueError:
        return LogLine(datetime.now(UTC), line)
    return LogLine(moment, text.rstrip("\r"))


def _usage(stats: Mapping[str, Any]) -> ContainerUsage | None:
    """Milli-CPUs as ``docker stats`` computes its CPU % (times 10), and memory without the page cache."""
    cpu, pre = stats.get("cpu_stats") or {}, stats.get("precpu_stats") or {}
    if not cpu.get("system_cpu_usage"):
        return None  # not running
    used = (cpu.get("cpu_usage") or {}).get("total_usage", 0) - (pre.get("cpu_usage") or {}).get("total_usage", 0)
    elapsed = cpu.get("system_cpu_usage", 0) - pre.get("system_cpu_usage", 0)
    cores = cpu.get("online_cpus") or len((cpu.get("cpu_usage") or {}).get("percpu_usage") or ()) or 1
    millis = used / elapsed * cores * 1000.0 if elapsed > 0 and used > 0 else 0.0
    memory = stats.get("memory_stats") or {}
    details = memory.get("stats") or {}
    cache = details.get("inactive_file", details.get("total_inactive_file", 0))  # cgroup v2, v1
    return ContainerUsage(cpu_millis=millis, memory_bytes=max(0.0, float(memory.get("usage", 0)) - cache))
