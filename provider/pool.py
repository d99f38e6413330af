"""The warm pool: started, idle runtime containers on the bridge, each claimed by one code function for good.

For each runtime of ``PYFAASD_POOL_RUNTIMES`` the provider keeps ``PYFAASD_POOL_SIZE`` containers started and
attached to the bridge, their watchdog waiting with its modules imported (``watchdog/pool.py``). Creating a
replica of a code function (deploy, update, scale up, wake from zero) takes one instead of creating a container:

1. the claim record (``provider/pool_slots.py``) is written first: from then on the container is a replica of
   the function to anyone who reads Docker (recovery, events), with exactly the labels a fresh one would have;
2. the function's limits are applied (``docker update``) and the container is renamed as a fresh replica is
   named;
3. the bundle, the dependency set and the secrets are linked into the slot's directories, which the container
   has bound read-only where a fresh replica has them;
4. the load file gets the environment a fresh replica would have been created with, and the watchdog is poked:
   it lays that environment over its own and starts serving the function.

The container config of a pooled replica is computed by the same ``container_config`` as a fresh one; the pool
only delivers its parts differently, and takes a function only when every part can be delivered: a code function
(not ``pyfaasd dev``) on the pool's runtime image, with no volumes, whose root is read-only exactly when the
pool's is. Any other function gets a fresh container, as before. A claimed container is never given back: it
is removed with its replica, and the pool is refilled in the background.

Recovery: ``recover`` runs before the functions are recovered. Claims a crash interrupted (no load file) are
removed with their containers; unclaimed running containers are adopted (re-attached to the bridge); stopped
ones, containers whose slot is gone and slots whose container is gone are removed. Claimed, loaded containers
are function replicas and are recovered as such.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import structlog

from netconf.errors import NetconfError
from provider.code_functions import FUNCTION_MOUNT, PACKAGES_MOUNT, Mount
from provider.config import ProviderConfig
from provider.container_spec import UPDATABLE_LIMITS, pool_container_config
from provider.docker_runtime import LABEL_BRIDGE, LABEL_POOL, LABEL_POOL_SLOT
from provider.errors import ProviderError
from provider.pool_slots import PoolSlots
from provider.runtime import Network, PoolContainer, Runtime
from provider.tasks import Background

log = structlog.get_logger("provider.pool")

NAME_PREFIX = "pyfaasd-pool-"
LABEL_POOL_READY = "com.pyfaasd.runtime.pool"  # on a runtime image whose watchdog waits for the hand-over


@dataclass(slots=True)
class Member:
    """An idle pool container, started and attached."""

    id: str
    slot: str
    runtime: str
    image_id: str


class WarmPool:
    def __init__(
        self, config: ProviderConfig, runtime: Runtime, network: Network, slots: PoolSlots, background: Background
    ) -> None:
        self._config = config
        self._runtime = runtime
        self._network = network
        self.slots = slots
        self._background = background
        self._idle: dict[str, list[Member]] = {ref: [] for ref in config.pool_runtimes}
        self._making: dict[str, int] = dict.fromkeys(config.pool_runtimes, 0)
        self._claims = 0

    @property
    def enabled(self) -> bool:
        return self._config.pool_size > 0 and bool(self._config.pool_runtimes)

    @property
    def read_only(self) -> bool:
        """Whether the pool's containers have a read-only root (only functions alike may claim them)."""
        return self._config.default_read_only_root

    def member_ids(self) -> list[str]:
        return [m.id for members in self._idle.values() for m in members]

    def idle(self) -> dict[str, int]:
        """Idle containers per runtime (``/system/info``-style reporting and tests)."""
        return {ref: len(members) for ref, members in self._idle.items()}

    # -- recovery and refilling ------------------------------------------------------------------------

    async def recover(self) -> None:
        """Adopt or remove what a previous provider left; see the module's doc."""
        for slot in self.slots.slots():
            if self.slots.labels_of(slot) is not None and not self.slots.loaded(slot):
                log.warning("pool_claim_interrupted", slot=slot)
                await self._remove_slot_container(slot)
        found = await self._runtime.list_pool()
        kept: set[str] = set()
        adopted = removed = 0
        for member in found:
            usable = (
                member.running
                and member.runtime in self._idle
                and self.slots.path(member.slot).is_dir()
                and not self.slots.touched(member.slot)
                and len(self._idle[member.runtime]) < self._config.pool_size
            )
            if usable and await self._attach(member):
                self._idle[member.runtime].append(Member(member.id, member.slot, member.runtime, member.image_id))
                kept.add(member.slot)
                adopted += 1
            else:
                await self._discard(member.id, member.slot)
                removed += 1
        claimed = {slot for slot in self.slots.slots() if self.slots.labels_of(slot) is not None}
        for slot in set(self.slots.slots()) - kept - claimed:
            self.slots.remove(slot)
        await self._remove_orphan_slots(claimed)
        log.info("pool_recovered", adopted=adopted, removed=removed)

    async def _remove_orphan_slots(self, claimed: set[str]) -> None:
        """Claimed slots whose container no longer exists."""
        existing = {c.pool_slot for c in await self._runtime.list_functions() if c.pool_slot}
        for slot in claimed - existing:
            log.info("pool_slot_orphaned", slot=slot)
            self.slots.remove(slot)

    async def _remove_slot_container(self, slot: str) -> None:
        for container in await self._runtime.list_functions():
            if container.pool_slot == slot:
                await self._discard(container.id, slot)
                return
        self.slots.remove(slot)

    def refill_later(self) -> None:
        if self.enabled:
            for ref in self._idle:
                self._background.spawn(self._refill(ref), f"pool refill {ref}")

    async def _refill(self, ref: str) -> None:
        wanted = self._config.pool_size - len(self._idle[ref]) - self._making[ref]
        if wanted <= 0:
            return
        self._making[ref] += wanted
        try:
            image = await self._runtime.image(ref)
            if image is None:
                log.warning("pool_runtime_missing", runtime=ref)
                return
            if image.labels.get(LABEL_POOL_READY) != "1":
                log.warning("pool_runtime_unsupported", runtime=ref, missing_label=f"{LABEL_POOL_READY}=1")
                return

            async def one() -> None:  # each container is claimable as soon as it is up
                self._idle[ref].append(await self._make(ref))

            results = await asyncio.gather(*(one() for _ in range(wanted)), return_exceptions=True)
        finally:
            self._making[ref] -= wanted
        for result in results:
            if isinstance(result, BaseException):
                log.error("pool_member_failed", runtime=ref, error=str(result))
        log.info("pool_filled", runtime=ref, idle=len(self._idle[ref]))

    async def _make(self, ref: str) -> Member:
        slot = f"{NAME_PREFIX}{os.urandom(6).hex()}"
        slot_dir = await asyncio.to_thread(self.slots.make, slot)
        labels = {LABEL_BRIDGE: self._config.net.bridge, LABEL_POOL: ref, LABEL_POOL_SLOT: slot}
        container_id = ""
        try:
            container_id = await self._runtime.create(slot, pool_container_config(ref, slot_dir, labels, self._config))
            started = await self._runtime.start_pool(container_id)
            if not started.running or not await self._attach(started):
                raise ProviderError(f"pool container {slot} did not stay up")
        except BaseException:
            await self._discard(container_id, slot)
            raise
        return Member(started.id, slot, ref, started.image_id)

    async def reattach(self) -> int:
        """Attach every idle container again (the bridge was rebuilt: their veths lost it); one that cannot be is
        discarded and made anew. How many were attached."""
        attached = 0
        for members in self._idle.values():
            for member in list(members):
                found = await self._runtime.inspect_pool(member.id)
                if found is not None and found.running and await self._attach(found):
                    attached += 1
                    continue
                members.remove(member)
                await self._discard(member.id, member.slot)
        self.refill_later()
        return attached

    async def _attach(self, member: PoolContainer) -> bool:
        try:
            await self._network.connect(member.pid, member.id)
        except NetconfError as e:
            log.warning("pool_attach_failed", container=member.name, error=str(e))
            return False
        return True

    async def _discard(self, container_id: str, slot: str) -> None:
        """Remove a pool container (if made), free its address and remove its slot."""
        try:
            if container_id:
                await self._runtime.remove(container_id)
                ip = await self._network.lookup(container_id)
                if ip is not None:
                    await self._network.detach(ip)
        except (ProviderError, NetconfError) as e:
            log.error("pool_remove_failed", slot=slot, error=str(e))
        self.slots.remove(slot)

    def release(self, slot: str) -> None:
        """A claimed container was removed with its replica: its slot goes too."""
        self.slots.remove(slot)

    async def close(self) -> None:
        """The idle containers stay: the next provider adopts them."""

    # -- claiming --------------------------------------------------------------------------------------

    async def available_for(self, image: str) -> bool:
        """Whether an idle container of ``image`` (a reference, compared by image ID) is there now."""
        found = await self._runtime.image(image)
        return found is not None and any(m.image_id == found.id for members in self._idle.values() for m in members)

    async def claim(
        self, name: str, config: Mapping[str, Any], code: Sequence[Mount], secrets: Mapping[str, Path]
    ) -> str | None:
        """Make a replica named ``name`` with container config ``config`` out of an idle container: its ID, or
        None when the pool cannot (none idle for the image, or a shape the pool's containers do not have).

        On a failure after the claim began, the container is removed (never given back) and the error raised.
        """
        host = config["HostConfig"]
        if not self.enabled or bool(host.get("ReadonlyRootfs")) != self.read_only:
            return None
        image = await self._runtime.image(str(config["Image"]))
        if image is None:
            return None
        member = await self._take(image.id)
        if member is None:
            return None
        self.refill_later()
        targets = {m.target: Path(m.source) for m in code}
        try:
            self.slots.claim(member.slot, config["Labels"])
            limits = {key: int(host[key]) for key in UPDATABLE_LIMITS if key in host}
            if limits:
                await self._runtime.update_resources(member.id, limits)
            await self._runtime.rename(member.id, name)
            await asyncio.to_thread(
                self.slots.fill, member.slot, targets.get(FUNCTION_MOUNT), targets.get(PACKAGES_MOUNT), secrets
            )
            self.slots.hand_over(member.slot, config["Env"])
        except BaseException:
            await self._discard(member.id, member.slot)
            raise
        self._claims += 1
        log.info("pool_claimed", container=name, slot=member.slot)
        return member.id

    async def _take(self, image_id: str) -> Member | None:
        """An idle container of the image that still runs (dead ones found on the way are removed)."""
        for members in self._idle.values():
            while True:
                member = next((m for m in members if m.image_id == image_id), None)
                if member is None:
                    break
                members.remove(member)
                current = await self._runtime.inspect_pool(member.id)
                if current is not None and current.running:
                    return member
                log.warning("pool_member_gone", slot=member.slot)
                await self._discard(member.id, member.slot)
                self.refill_later()
        return None
