"""The orchestration wired together: one view (state), the replica lifecycle, the event reactions with their
follower, and the API operations, over a ``Runtime``, a ``Network`` and a ``Probe``.

``provider/server.py`` builds it over Docker and netconf; the unit tests build it over in-memory fakes.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field

from provider.bridge_guard import BridgeGuard
from provider.code_functions import CodeFunctions
from provider.code_store import CodeStore
from provider.config import ProviderConfig
from provider.dependencies import DependencySets
from provider.docker_runtime import LABEL_BRIDGE
from provider.events import EventFollower, Reactions
from provider.images import ImagePuller
from provider.namespaces import NamespaceStore
from provider.orchestrator import Orchestrator
from provider.pool import WarmPool
from provider.pool_slots import PoolSlots
from provider.replicas import Replicas
from provider.runtime import Network, Probe, Runtime
from provider.scale_store import ScaleStore
from provider.secrets import SecretStore
from provider.state import State, Timings
from provider.tasks import Background
from provider.volumes import VolumeStore


@dataclass(slots=True)
class Core:
    state: State
    replicas: Replicas
    reactions: Reactions
    orchestrator: Orchestrator
    follower: EventFollower
    background: Background
    code: CodeFunctions
    volumes: VolumeStore
    images: ImagePuller
    bridge: BridgeGuard
    pool: WarmPool
    events: asyncio.Task[None] | None = None
    bridge_watch: asyncio.Task[None] | None = None
    recovered: asyncio.Event = field(default_factory=asyncio.Event)  # set once start() has re-read Docker

    @classmethod
    def build(
        cls,
        config: ProviderConfig,
        runtime: Runtime,
        network: Network,
        probe: Probe,
        secrets: SecretStore,
        namespaces: NamespaceStore,
        scale_store: ScaleStore,
        timings: Timings | None = None,
        slots: PoolSlots | None = None,
    ) -> Core:
        """``slots``: the pool's slots, the same the runtime reads claims from (a new one over the state dir if
        not given)."""
        timings = timings or Timings()
        state = State()
        background = Background()
        code = CodeFunctions(
            CodeStore(config.code_dir, config.code_limits),
            DependencySets(config.deps_dir, runtime, config.pip, {LABEL_BRIDGE: config.net.bridge}),
            runtime,
        )
        volumes = VolumeStore(runtime, config.net.bridge, config.volume_host_roots)
        images = ImagePuller(runtime, config.registries, config.docker_config, config.pull_timeout_s)
        pool = WarmPool(config, runtime, network, slots or PoolSlots(config.pool_dir), background)
        replicas = Replicas(
            config,
            state,
            runtime,
            network,
            probe,
            secrets,
            scale_store,
            background,
            timings,
            code,
            volumes,
            images,
            pool,
        )
        reactions = Reactions(state, replicas, runtime, scale_store, background, timings)
        orchestrator = Orchestrator(
            config, state, replicas, runtime, secrets, namespaces, scale_store, code, volumes, images
        )
        follower = EventFollower(runtime, reactions, timings)
        bridge = BridgeGuard(state, network, timings, pool)
        return cls(state, replicas, reactions, orchestrator, follower, background, code, volumes, images, bridge, pool)

    async def start(self) -> None:
        """Follow Docker's events, then recover the pool and the functions found in Docker; refill the pool."""
        self.code.store.remove_leftovers()
        self.code.dependencies.remove_leftovers()
        self.events = asyncio.create_task(self.follower.run(), name="docker events")
        await self.pool.recover()  # first: interrupted claims go, idle containers keep their addresses
        await self.reactions.recover()
        self.recovered.set()
        self.pool.refill_later()
        self.bridge_watch = asyncio.create_task(self.bridge.run(), name="bridge watch")

    def problem(self) -> str | None:
        """Why the provider cannot keep functions running right now (Docker's events lost, the bridge broken)."""
        if not self.recovered.is_set():
            return "recovering the functions found in Docker"
        return self.follower.problem() or self.bridge.problem()

    async def close(self) -> None:
        """Stop following events and cancel background work; containers keep running."""
        for task in (self.events, self.bridge_watch):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        await self.background.close()
