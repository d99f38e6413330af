"""The replica lifecycle: create, bring up (start, attach, wait until healthy), retire, stop and remove; the
image a function needs; and the hosts file, which lists exactly the ready replicas.

A replica enters the hosts file only once its watchdog answers ``/_/health`` with 200, and leaves it before its
container is stopped.

A function scaled to zero keeps its first replica: paused (``docker pause``, the cgroup freezer: no CPU, its
memory, process and bridge attachment kept) for ``PYFAASD_ZERO_PAUSE``, then stopped. Out of the hosts file and
not ready, it counts as no replica anywhere; a wake from zero within the window thaws it instead of starting a
container, so the first request waits for an unpause and a health check, not for a process to boot.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable
from ipaddress import IPv4Address

import structlog

from netconf import NetconfError, NetnsNotFoundError, write_hosts
from netconf.routes import write_routes
from provider.code_functions import ANNOTATION_DEV, CodeFunctions, Mount, code_digest
from provider.config import ProviderConfig, PullPolicy
from provider.container_spec import ReplicaSpec, container_config, root_read_only
from provider.errors import FunctionStartError, ImageUnavailableError, ProviderError, VolumeMountError, network_error
from provider.images import ImagePuller
from provider.models import FunctionDeployment
from provider.pool import WarmPool
from provider.readiness import NotReadyError, wait_ready
from provider.routes import published_routes
from provider.runtime import Container, ImageInfo, Network, Probe, Runtime
from provider.scale_store import ScaleStore
from provider.secrets import SecretStore
from provider.state import FunctionState, ReplicaState, State, Timings
from provider.tasks import Background
from provider.volumes import VolumeStore, volume_mounts

log = structlog.get_logger("provider")

EXIT_POLL_S = 0.05
DEFAULT_METRICS_PORT = 8081  # the watchdog's (of-watchdog's) metrics_port
PAUSED_STOP_TIMEOUT_S = 2.0  # the stop of a replica paused at zero once its window ended (SIGKILL after it)


def _poolable(spec: FunctionDeployment) -> bool:
    """A code function from a stored bundle (not ``pyfaasd dev``'s live directory): the pool can deliver its code."""
    annotations = spec.annotations or {}
    return ANNOTATION_DEV not in annotations and code_digest(spec) is not None


def metrics_port_of(spec: FunctionDeployment) -> int | None:
    """The port a replica's watchdog serves its metrics on; None when the function turned them off."""
    text = spec.env_vars.get("metrics_port", "").strip()
    if not text:
        return DEFAULT_METRICS_PORT
    try:
        port = int(text)
    except ValueError:
        return None
    return port if 0 < port < 65536 else None


class Replicas:
    def __init__(
        self,
        config: ProviderConfig,
        state: State,
        runtime: Runtime,
        network: Network,
        probe: Probe,
        secrets: SecretStore,
        scale_store: ScaleStore,
        background: Background,
        timings: Timings,
        code: CodeFunctions,
        volumes: VolumeStore,
        images: ImagePuller,
        pool: WarmPool,
    ) -> None:
        self._config = config
        self._pool = pool
        self._images = images
        self._code = code
        self._volumes = volumes
        self._state = state
        self._runtime = runtime
        self._network = network
        self._probe = probe
        self._secrets = secrets
        self._scale_store = scale_store
        self._background = background
        self._timings = timings

    # -- a function's set of replicas --------------------------------------------------------------------

    async def create(self, fn: FunctionState, indexes: Iterable[int]) -> list[ReplicaState]:
        """Create and start replicas, all ready; on any failure none of them is left behind."""
        indexes = list(indexes)
        if not indexes:
            return []
        results = await asyncio.gather(*(self._create_one(fn, i) for i in indexes), return_exceptions=True)
        made = [r for r in results if isinstance(r, ReplicaState)]
        errors = [r for r in results if isinstance(r, BaseException)]
        if errors:
            await self.remove([r.container for r in made], grace=False)
            raise errors[0]
        return made

    async def create_parked(self, fn: FunctionState) -> ReplicaState:
        """A created but stopped container: how a function scaled to zero keeps existing in Docker."""
        return await self._create_container(fn, 0, pooled=False)

    async def grow(self, fn: FunctionState, replicas: int, current: list[ReplicaState]) -> None:
        """Start stopped replicas and create new ones until ``replicas`` run.

        On a failure the function keeps what did start, and its desired count becomes what is ready.
        """
        # Paused replicas first: thawing one is the fastest way up, faster than a pooled container too.
        stopped = sorted(
            (r for r in current if not (r.container.running or r.ready)), key=lambda r: not r.container.paused
        )
        paused = any(r.container.paused for r in stopped)
        waking = [] if paused or len(stopped) < len(current) or not await self._pooled(fn.spec) else stopped
        if waking:
            # From zero with an idle pooled container for it: claiming that beats starting the parked container,
            # which is removed once the new replicas serve.
            stopped = []
        used = {r.container.replica for r in current}
        current = [r for r in current if r not in waking]
        wanted = replicas - (len(current) - len(stopped))
        restart = stopped[:wanted]
        fresh = [i for i in range(replicas + len(used)) if i not in used][: wanted - len(restart)]
        results = await asyncio.gather(
            *(self.bring_up(fn, r) for r in restart),
            self.create(fn, fresh),
            return_exceptions=True,
        )
        for replica in restart:
            fn.replicas[replica.container.id] = replica
        created = results[-1]
        if isinstance(created, list):
            for replica in created:
                fn.replicas[replica.container.id] = replica
        self.publish()
        errors = [r for r in results if isinstance(r, BaseException)]
        if waking and not errors:
            for replica in waking:
                fn.replicas.pop(replica.container.id, None)
            self._background.spawn(self.remove([r.container for r in waking], grace=False), "remove parked")
        if errors:
            fn.desired = sum(1 for r in fn.replicas.values() if r.ready)
            self._scale_store.set(fn.spec.namespace, fn.spec.service, fn.desired)
            raise errors[0]

    async def shrink(self, fn: FunctionState, replicas: int) -> None:
        """Retire the replicas above ``replicas``; at zero the first one stays, paused for ``PYFAASD_ZERO_PAUSE``
        (then stopped), or stopped at once."""
        drop = fn.by_index()[replicas:]
        park = drop[0] if replicas == 0 and drop else None
        for replica in drop:
            if replica is not park:
                fn.replicas.pop(replica.container.id, None)
        await self.retire(drop, park=park, spec=fn.spec)
        if park is not None and park.container.paused:
            self._stop_paused_later(fn, park)

    async def keep_paused(self, fn: FunctionState, replica: ReplicaState) -> None:
        """A paused replica of a function at zero, found on start: attached to the bridge again (so a wake and the
        bridge guard find its address) and stopped once a new pause window ends; stopped now if there is none."""
        if self._config.zero_pause_s <= 0:
            await self._stop(replica)
            return
        container = replica.container
        try:
            attachment = await self._network.connect(container.pid, container.id)
        except NetconfError as e:
            log.warning("paused_replica_unattached", container=container.name, error=str(e))
            await self._stop(replica)
            return
        replica.ip = attachment.ip
        replica.paused_at = time.monotonic()
        self._stop_paused_later(fn, replica)

    def _stop_paused_later(self, fn: FunctionState, replica: ReplicaState) -> None:
        self._background.spawn(self._stop_paused(fn, replica, replica.paused_at), f"unpause {replica.container.name}")

    async def _stop_paused(self, fn: FunctionState, replica: ReplicaState, paused_at: float) -> None:
        """Once the pause window ends, stop the replica if it is still the function's and still that pause."""
        await asyncio.sleep(self._config.zero_pause_s)
        async with fn.lock:
            if self._state.find(fn.key) is not fn or not fn.holds(replica):
                return
            if not replica.container.paused or replica.paused_at != paused_at:
                return
            # Drained before it was paused and frozen since, it serves nothing: a short stop, as ``remove`` without
            # grace, so a wake waiting for the function's lock meanwhile is not held for the whole stop timeout.
            await self._stop(replica, min(self._config.stop_timeout_s, PAUSED_STOP_TIMEOUT_S))
            log.info(
                "paused_replica_stopped",
                function=fn.spec.service,
                namespace=fn.spec.namespace,
                container=replica.container.name,
                paused_s=round(time.monotonic() - paused_at, 1),
            )

    # -- one replica -------------------------------------------------------------------------------------

    async def _create_one(self, fn: FunctionState, index: int) -> ReplicaState:
        replica = await self._create_container(fn, index)
        try:
            await self.bring_up(fn, replica)
        except BaseException:
            await self.remove([replica.container], grace=False)
            raise
        return replica

    async def _create_container(self, fn: FunctionState, index: int, *, pooled: bool = True) -> ReplicaState:
        """A replica's container: out of the warm pool when the function can take one, else created."""
        spec = ReplicaSpec(spec=fn.spec, replica=index, generation=fn.generation, created=fn.created_at)
        paths = {name: self._secrets.path(fn.spec.namespace, name) for name in fn.spec.secrets}
        code = await self._code.mounts(fn.spec)
        volumes, _made = await self._volumes.for_function(fn.spec)
        mounts = code + [Mount(source, target, read_only) for source, target, read_only in volumes]
        config = container_config(spec, self._config, paths, mounts)
        container_id = None
        if pooled and not volumes and _poolable(fn.spec):
            container_id = await self._pool.claim(spec.container_name, config, code, paths)
        if container_id is None:
            container_id = await self._runtime.create(spec.container_name, config)
        info = await self._runtime.inspect(container_id)
        if info is None:
            raise FunctionStartError(f"container {spec.container_name} disappeared right after it was created")
        return ReplicaState(container=info)

    async def _pooled(self, spec: FunctionDeployment) -> bool:
        """Whether a new replica of ``spec`` would come out of the pool now."""
        if not _poolable(spec) or volume_mounts(spec) or root_read_only(spec, self._config) != self._pool.read_only:
            return False
        return await self._pool.available_for(spec.image)

    async def bring_up(self, fn: FunctionState, replica: ReplicaState) -> None:
        """Start (if needed), attach to the bridge and wait until healthy; marks the replica ready."""
        cid = replica.container.id
        with self._state.managing(cid):
            try:
                # A container just claimed from the pool runs already (inspected right after the claim).
                claimed = replica.container.pool_slot and replica.container.running and not replica.ready
                if replica.container.paused:
                    info = await self._runtime.unpause(cid)
                    log.info("replica_thawing", function=fn.spec.service, container=replica.container.name)
                else:
                    info = replica.container if claimed else await self._runtime.start(cid)
            except VolumeMountError as e:
                raise self._volumes.explain_mount_error(str(e)) from None
            replica.container = info
            if not info.running:
                raise await self._not_ready(fn, cid, info.exit_message())
            ip = await self._attach(fn, replica)

            async def still_running() -> str | None:
                current = await self._runtime.inspect(cid)
                if current is None:
                    return "its container was removed"
                replica.container = current
                return None if current.running else current.exit_message()

            try:
                await wait_ready(self._probe, ip, self._config.ready_timeout_s, still_running)
            except NotReadyError as e:
                raise await self._not_ready(fn, cid, str(e)) from None
            replica.ready = True

    async def adopt(self, fn: FunctionState, replica: ReplicaState) -> None:
        """A running container found on start or started by someone else: attach it and wait for health."""
        ip = await self._attach(fn, replica)
        if await self._probe.healthy(ip):
            replica.ready = True
        else:
            self._background.spawn(self.await_ready(fn, replica), f"ready {replica.container.name}")

    async def _attach(self, fn: FunctionState, replica: ReplicaState) -> IPv4Address:
        """Connect the replica's network namespace to the bridge (its address is kept across restarts).

        A namespace that is gone means the container's process ended between start (or inspect) and now, say
        OOM-killed: that is reported as the container's exit, once Docker has noticed it.
        """
        container = replica.container
        try:
            attachment = await self._network.connect(container.pid, container.id)
        except NetnsNotFoundError as e:
            reason = await self._exit_of(replica)
            if reason is None:
                raise network_error(e, self._config.net.subnet) from e
            raise await self._not_ready(fn, container.id, reason) from None
        except NetconfError as e:
            raise network_error(e, self._config.net.subnet) from e
        replica.ip = attachment.ip
        replica.started_at = time.monotonic()
        return attachment.ip

    async def _exit_of(self, replica: ReplicaState) -> str | None:
        """Why the replica's container stopped, waiting a moment for Docker to see it; None if it still runs."""
        deadline = time.monotonic() + self._timings.exit_report_wait_s
        while True:
            current = await self._runtime.inspect(replica.container.id)
            if current is None:
                return "its container was removed"
            replica.container = current
            if not current.running:
                return current.exit_message()
            if time.monotonic() >= deadline:
                return None
            await asyncio.sleep(EXIT_POLL_S)

    async def _not_ready(self, fn: FunctionState, container_id: str, reason: str) -> FunctionStartError:
        if reason.endswith("(status 137)"):
            # SIGKILL: Docker may record the exit before the OOM event lands, so look once more to name an OOM kill.
            await asyncio.sleep(min(self._timings.exit_report_wait_s, 0.5))
            info = await self._runtime.inspect(container_id)
            if info is not None and info.oom_killed:
                reason = info.exit_message()
        tail = await self._log_tail(container_id)
        name = f"{fn.spec.service}.{fn.spec.namespace}"
        return FunctionStartError(f"function {name} did not become ready: {reason}{tail}")

    async def await_ready(self, fn: FunctionState, replica: ReplicaState) -> None:
        """A replica that is running but not yet healthy: keep checking until it is, then publish it."""
        while fn.holds(replica) and replica.ip is not None and not replica.ready:
            if await self._probe.healthy(replica.ip):
                replica.ready = True
                self.publish()
                return
            await asyncio.sleep(self._timings.slow_ready_poll_s)

    async def _log_tail(self, container_id: str, lines: int = 5) -> str:
        try:
            found = [line.text async for line in self._runtime.logs(container_id, tail=lines, since=None, follow=False)]
        except ProviderError:
            return ""
        return ("; last output: " + " | ".join(found)) if found else ""

    async def retire(
        self, replicas: list[ReplicaState], park: ReplicaState | None, spec: FunctionDeployment | None = None
    ) -> None:
        """Take replicas out of the hosts file, give the gateway a moment to notice, let them finish the requests
        they are serving (:meth:`drain`), then stop them.

        ``park`` is kept as a stopped container (a function scaled to zero); the others are removed.
        """
        if not replicas:
            return
        for replica in replicas:
            replica.ready = False
        self.publish()
        await asyncio.sleep(self._timings.retire_grace_s)
        if spec is not None:
            await self.drain(replicas, spec)
        removed = [r.container for r in replicas if r is not park]
        jobs = [self.remove(removed, grace=True)]
        if park is not None:
            jobs.append(self._park(park))
        await asyncio.gather(*jobs)

    def retire_later(self, replicas: list[ReplicaState], name: str, spec: FunctionDeployment | None = None) -> None:
        """``retire`` (removing them all) in a background task: an update answers once the new ones serve."""
        self._background.spawn(self.retire(replicas, park=None, spec=spec), name)

    async def drain(self, replicas: list[ReplicaState], spec: FunctionDeployment) -> None:
        """Wait until replicas out of the hosts file serve no request any more, at most ``drain_timeout``.

        Each watchdog is asked for its ``http_requests_in_flight`` on its metrics port (``metrics_port`` of the
        function's env, default 8081; ``0`` turns it off). A replica that does not say (another watchdog, no
        metrics, already gone) is not waited for: its own SIGTERM drain is what is left.
        """
        port = metrics_port_of(spec)
        waiting = [r for r in replicas if r.ip is not None and r.container.running]
        if port is None or not waiting:
            return
        loop = asyncio.get_running_loop()
        started = loop.time()
        deadline = started + self._config.drain_timeout_s
        name = f"{spec.service}.{spec.namespace}"
        while True:
            counts = await asyncio.gather(*(self._probe.in_flight(r.ip, port) for r in waiting if r.ip is not None))
            busy = [r for r, n in zip(waiting, counts, strict=True) if n is not None and n > 0]
            if not busy:
                if loop.time() - started >= self._timings.drain_poll_s:
                    log.info("replicas_drained", function=name, waited_s=round(loop.time() - started, 2))
                return
            if loop.time() >= deadline:
                log.warning(
                    "drain_timed_out",
                    function=name,
                    busy=[r.container.name for r in busy],
                    drain_timeout_s=self._config.drain_timeout_s,
                )
                return
            waiting = busy
            await asyncio.sleep(self._timings.drain_poll_s)

    async def _park(self, replica: ReplicaState) -> None:
        """Keep a function's last replica at zero: paused while ``PYFAASD_ZERO_PAUSE`` allows, else stopped."""
        container = replica.container
        if container.paused:
            return
        if self._config.zero_pause_s <= 0 or not container.running:
            await self._stop(replica)
            return
        with self._state.managing(container.id):
            try:
                await self._runtime.pause(container.id)
                info = await self._runtime.inspect(container.id)
            except ProviderError as e:
                log.warning("replica_pause_failed", container=container.name, error=str(e))
                info = None
        if info is None or not info.paused:
            await self._stop(replica)
            return
        replica.container = info
        replica.paused_at = time.monotonic()
        log.info("replica_paused", container=container.name, stop_after_s=self._config.zero_pause_s)

    async def _stop(self, replica: ReplicaState, timeout_s: float | None = None) -> None:
        cid = replica.container.id
        with self._state.managing(cid):
            await self._runtime.stop(cid, self._config.stop_timeout_s if timeout_s is None else timeout_s)
            info = await self._runtime.inspect(cid)
            if info is not None:
                replica.container = info

    async def remove(self, containers: list[Container], *, grace: bool) -> None:
        """Stop (if running) and remove containers and free their addresses; failures are logged."""

        async def remove(container: Container) -> None:
            with self._state.managing(container.id):
                if grace and container.running:
                    await self._runtime.stop(container.id, self._config.stop_timeout_s)
                elif container.running:
                    await self._runtime.stop(container.id, min(self._config.stop_timeout_s, 2.0))
                await self._runtime.remove(container.id)
                if container.pool_slot:
                    self._pool.release(container.pool_slot)
                ip = await self._network.lookup(container.id)
                if ip is not None:
                    await self._network.detach(ip)

        results = await asyncio.gather(*(remove(c) for c in containers), return_exceptions=True)
        for result in results:
            if isinstance(result, BaseException):
                log.error("container_remove_failed", error=str(result))

    async def free_addresses_except(self, container_ids: Iterable[str]) -> None:
        """Free the addresses of containers that no longer exist (all but ``container_ids``)."""
        try:
            await self._network.reconcile([*container_ids, *self._pool.member_ids()])
        except NetconfError as e:
            raise network_error(e, self._config.net.subnet) from e

    # -- the image, the hosts file and the routes file -------------------------------------------------------

    async def ensure_image(self, image: str, policy: PullPolicy | None = None) -> ImageInfo:
        """The image present, pulled (through the mirrors) as the pull policy says: the function's label
        ``com.pyfaasd.pull-policy``, else ``PYFAASD_PULL_POLICY``."""
        policy = policy or self._config.pull_policy
        found = None if policy is PullPolicy.ALWAYS else await self._runtime.image(image)
        if found is not None:
            return found
        if policy is PullPolicy.NEVER:
            raise ImageUnavailableError(f"image {image} is not present locally and the pull policy is never")
        log.info("image_pulling", image=image)
        await self._images.pull(image, lambda line: _log_progress(image, line))
        pulled = await self._runtime.image(image)
        if pulled is None:
            raise ImageUnavailableError(f"image {image} was pulled but is not present")
        return pulled

    def publish(self) -> None:
        """Rewrite the hosts file (the ready replicas) and the routes file (the deployed functions' routes)."""
        write_hosts(self._config.hosts_path, self._config.net.bridge_ip, self._state.ready_replicas())
        write_routes(self._config.routes_path, published_routes(fn.spec for fn in self._state.functions.values()))


def _log_progress(image: str, line: dict[str, object]) -> None:
    """A deploy's pull in the provider's log: each layer's steps at info, the byte counts at debug."""
    if "current" in line:
        log.debug("image_pull_progress", image=image, **line)
    else:
        log.info("image_pull_progress", image=image, **line)
