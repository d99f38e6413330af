"""The faas-provider API's operations on functions: deploy, rolling update, scale, delete, list and get.

Every operation checks that the function's namespace exists (``NamespaceStore.require``, a 400 otherwise), so
the handlers need not.

The replicas themselves are handled by ``provider/replicas.py``, recovery and Docker's events by
``provider/events.py``; all three share the view of ``provider/state.py``.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import structlog

from provider.code_functions import CodeFunctions
from provider.config import ProviderConfig
from provider.errors import FunctionExistsError, ProviderError, SecretMissingError
from provider.images import ImagePuller, pull_policy_of
from provider.models import FunctionDeployment, FunctionStatus, FunctionUsage, format_time
from provider.namespaces import NamespaceStore
from provider.replicas import Replicas
from provider.routes import check_routes
from provider.runtime import Container, ContainerUsage, Runtime
from provider.scale_store import ScaleStore
from provider.secrets import SecretStore
from provider.state import FunctionState, State
from provider.volumes import VolumeStore

log = structlog.get_logger("provider")


class Orchestrator:
    def __init__(
        self,
        config: ProviderConfig,
        state: State,
        replicas: Replicas,
        runtime: Runtime,
        secrets: SecretStore,
        namespaces: NamespaceStore,
        scale_store: ScaleStore,
        code: CodeFunctions,
        volumes: VolumeStore,
        images: ImagePuller,
    ) -> None:
        self._config = config
        self._images = images
        self._code = code
        self._volumes = volumes
        self._state = state
        self._replicas = replicas
        self._runtime = runtime
        self._secrets = secrets
        self._namespaces = namespaces
        self._scale_store = scale_store

    # -- queries ---------------------------------------------------------------------------------------

    def list_functions(self, namespace: str) -> list[FunctionStatus]:
        self._namespaces.require(namespace)
        found = [fn.status() for (ns, _), fn in self._state.functions.items() if ns == namespace]
        return sorted(found, key=lambda s: s.spec.service)

    def get(self, namespace: str, name: str) -> FunctionState:
        """The function, after checking its namespace exists (400) and it does (404)."""
        self._namespaces.require(namespace)
        return self._state.get(namespace, name)

    async def usage(self, namespace: str, name: str) -> FunctionUsage:
        """CPU and memory all of the function's running replicas use now (read in parallel, about a second)."""
        fn = self.get(namespace, name)
        running = [r.container.id for r in fn.replicas.values() if r.container.running]
        found = await asyncio.gather(*(self._runtime.usage(cid) for cid in running), return_exceptions=True)
        usages = [u for u in found if isinstance(u, ContainerUsage)]
        return FunctionUsage(
            cpu=sum(u.cpu_millis for u in usages), total_memory_bytes=sum(u.memory_bytes for u in usages)
        )

    def has_functions(self, namespace: str) -> bool:
        return self._state.has_functions(namespace)

    async def containers_of(self, namespace: str, name: str) -> list[Container]:
        """Every container of a function, stopped ones too (their logs are still wanted)."""
        self.get(namespace, name)
        return await self._runtime.list_functions((namespace, name))

    @property
    def runtime(self) -> Runtime:
        return self._runtime

    # -- deploy, update, delete, scale -----------------------------------------------------------------

    async def deploy(self, spec: FunctionDeployment) -> FunctionStatus:
        key = (spec.namespace, spec.service)
        if key in self._state.functions or key in self._state.deploying:
            raise FunctionExistsError(
                f"function {spec.service}.{spec.namespace} already exists (update it with PUT /system/functions)"
            )
        self._check_deployable(spec)
        check_routes(spec, self._state.specs_in_use())  # with no await before ``operating`` takes them
        self._state.deploying.add(key)
        try:
            with self._state.operating(spec):
                replicas = spec.scale_min(self._config.max_replicas)
                image = await self._replicas.ensure_image(spec.image, pull_policy_of(spec))
                await self._code.mounts(spec, image)  # refuses a bad code function before any container
                fn = FunctionState(
                    spec=spec,
                    generation=uuid.uuid4().hex,
                    created_at=format_time(datetime.now(UTC)),
                    desired=replicas,
                )
                async with self._volumes_for(spec):
                    started = await self._replicas.create(fn, range(replicas))
                fn.replicas = {r.container.id: r for r in started}
                self._scale_store.set(spec.namespace, spec.service, replicas)
                self._state.functions[key] = fn
            self._replicas.publish()
            log.info("function_deployed", function=spec.service, namespace=spec.namespace, replicas=replicas)
            return fn.status()
        finally:
            self._state.deploying.discard(key)

    async def update(self, spec: FunctionDeployment) -> FunctionStatus:
        fn = self.get(spec.namespace, spec.service)
        self._check_deployable(spec)
        async with fn.lock:
            check_routes(spec, self._state.specs_in_use())
            with self._state.operating(spec):
                return await self._update_locked(fn, spec)

    async def _update_locked(self, fn: FunctionState, spec: FunctionDeployment) -> FunctionStatus:
        image = await self._replicas.ensure_image(spec.image, pull_policy_of(spec))
        if spec == fn.spec and fn.replicas and all(r.container.image_id == image.id for r in fn.replicas.values()):
            # The same deployment on the same image: nothing to roll (faas-cli deploy run twice,
            # scripts/run run twice). A rebuilt or newly pulled tag has another ID and does roll.
            log.info("function_unchanged", function=spec.service, namespace=spec.namespace)
            return fn.status()
        await self._code.mounts(spec, image)  # refuses a bad code function before any container
        new = FunctionState(spec=spec, generation=uuid.uuid4().hex, created_at=fn.created_at, desired=fn.desired)
        async with self._volumes_for(spec):
            if fn.desired == 0:
                started = [await self._replicas.create_parked(new)]
            else:
                started = await self._replicas.create(new, range(fn.desired))
        old = list(fn.replicas.values())
        old_spec = fn.spec
        fn.spec, fn.generation = spec, new.generation
        fn.replicas = {r.container.id: r for r in started}
        self._replicas.publish()
        self._replicas.retire_later(old, f"retire {spec.service}", spec=old_spec)
        log.info("function_updated", function=spec.service, namespace=spec.namespace, replicas=fn.desired)
        return fn.status()

    async def delete(self, namespace: str, name: str) -> None:
        fn = self.get(namespace, name)
        async with fn.lock:
            self._state.functions.pop(fn.key, None)
            for replica in fn.replicas.values():
                replica.ready = False
            self._replicas.publish()
            containers = await self._runtime.list_functions(fn.key)
            known = {c.id: c for c in containers}
            for replica in fn.replicas.values():
                known.setdefault(replica.container.id, replica.container)
            await self._replicas.remove(list(known.values()), grace=False)
            self._scale_store.delete(namespace, name)
            log.info("function_deleted", function=name, namespace=namespace)

    async def scale(self, namespace: str, name: str, replicas: int) -> FunctionStatus:
        fn = self.get(namespace, name)
        async with fn.lock:
            current = fn.by_index()
            running = [r for r in current if r.container.running or r.ready]
            if replicas > len(running):
                await self._replicas.grow(fn, replicas, current)
            elif replicas < len(running):
                await self._replicas.shrink(fn, replicas)
            fn.desired = replicas
            self._scale_store.set(namespace, name, replicas)
            log.info("function_scaled", function=name, namespace=namespace, replicas=replicas)
            return fn.status()

    @contextlib.asynccontextmanager
    async def _volumes_for(self, spec: FunctionDeployment) -> AsyncIterator[None]:
        """Check the volumes ``spec`` mounts (400 for a missing one) and make its auto volume before any
        container; if the operation then fails, an auto volume made for it now is removed again."""
        _mounts, made = await self._volumes.for_function(spec)
        try:
            yield
        except BaseException:
            for name in made:
                await self._volumes.delete(name, [])
            raise

    async def refresh(self, keys: list[tuple[str, str]] | None) -> dict[str, object]:
        """Pull each function's image again (through the mirrors, whatever the pull policy) and roll exactly
        the functions whose replicas run another image than the one pulled now."""
        targets = [self.get(ns, name) for ns, name in keys] if keys else list(self._state.functions.values())
        rolled: list[str] = []
        unchanged: list[str] = []
        failed: dict[str, str] = {}
        for fn in targets:
            label = f"{fn.spec.service}.{fn.spec.namespace}"
            try:
                pulled = await self._images.pull(fn.spec.image)
            except ProviderError as e:
                failed[label] = str(e)
                continue
            if all(r.container.image_id == pulled.id for r in fn.replicas.values()):
                unchanged.append(label)
                continue
            try:
                await self.update(fn.spec)  # the same deployment on a new image ID: a rolling update
            except ProviderError as e:
                failed[label] = str(e)
                continue
            rolled.append(label)
        log.info("images_refreshed", rolled=rolled, unchanged=unchanged, failed=sorted(failed))
        return {"rolled": rolled, "unchanged": unchanged, "failed": failed}

    def secret_users(self, namespace: str, name: str) -> list[str]:
        """The functions mounting a secret (deploys in flight included)."""
        return sorted(
            f"{spec.service}.{spec.namespace}"
            for spec in self._state.specs_in_use()
            if spec.namespace == namespace and name in spec.secrets
        )

    def volume_users(self) -> dict[str, list[str]]:
        """The functions mounting each volume (deploys in flight included)."""
        return self._volumes.users(self._state.specs_in_use())

    def code_usage(self) -> dict[str, list[str]]:
        """The functions using each code bundle (deploys in flight included)."""
        return self._code.usage(self._state.specs_in_use())

    async def prune_dependencies(self) -> list[str]:
        """Remove the dependency sets no function uses; the keys removed."""
        return await self._code.prune(self._state.specs_in_use())

    # -- checks ------------------------------------------------------------------------------------------

    def _check_deployable(self, spec: FunctionDeployment) -> None:
        self._namespaces.require(spec.namespace)
        spec.scale_labels(self._config.max_replicas)
        missing = self._secrets.missing(spec.namespace, spec.secrets)
        if missing:
            raise SecretMissingError(
                f"unable to find secret: {', '.join(missing)} (in namespace {spec.namespace}; "
                "create it with faas-cli secret create)"
            )
