"""Function secrets as Swarm secrets (``PYFAASD_BACKEND=swarm``): /system/secrets and the mounts of a deployment.

A Swarm secret cannot change, so each value is its own secret, named ``<namespace>_<name>_<digest>`` (cut to
Swarm's 64 characters; the labels are what identify it): an update creates the new one, moves every service
that mounts the old one over to it (a rolling update) and removes the old one. Functions see the value at
``/var/openfaas/secrets/<name>``, mode 0440, group ``PYFAASD_SECRETS_GID``, as with the docker backend.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Final

import structlog

from provider.config import ProviderConfig
from provider.docker_runtime import LABEL_NAMESPACE, LABEL_SPEC
from provider.errors import SecretExistsError, SecretInUseError, SecretMissingError, SecretNotFoundError
from provider.models import FunctionDeployment
from provider.namespaces import NamespaceStore
from provider.swarm_runtime import SecretInfo, Swarm
from provider.swarm_spec import LABEL_NETWORK, SecretMount, with_secret

log = structlog.get_logger("provider.swarm")

LABEL_SECRET: Final = "com.pyfaasd.secret"  # noqa: S105 (a label key, not a password)
MAX_NAME: Final = 64  # Swarm's limit on a secret's name
DIGEST_CHARS: Final = 16


def swarm_secret_name(namespace: str, name: str, value: bytes) -> str:
    digest = hashlib.sha256(f"{namespace}/{name}/".encode() + value).hexdigest()[:DIGEST_CHARS]
    return f"{namespace}_{name}"[: MAX_NAME - DIGEST_CHARS - 1] + f"_{digest}"


class SwarmSecrets:
    def __init__(self, config: ProviderConfig, swarm: Swarm, namespaces: NamespaceStore) -> None:
        self._config = config
        self._swarm = swarm
        self._namespaces = namespaces

    @property
    def _instance(self) -> str:
        return f"{LABEL_NETWORK}={self._config.swarm_network}"

    async def _current(self, namespace: str) -> dict[str, list[SecretInfo]]:
        """Each secret name of the namespace with its Swarm secrets, newest first (more than one only while an
        update is under way or after one was interrupted)."""
        found: dict[str, list[SecretInfo]] = {}
        for secret in await self._swarm.secrets(self._instance):
            if secret.labels.get(LABEL_NAMESPACE) == namespace and LABEL_SECRET in secret.labels:
                found.setdefault(secret.labels[LABEL_SECRET], []).append(secret)
        return {name: sorted(versions, key=lambda s: s.created, reverse=True) for name, versions in found.items()}

    async def names(self, namespace: str) -> list[str]:
        self._namespaces.require(namespace)
        return sorted(await self._current(namespace))

    async def mounts(self, namespace: str, names: Sequence[str]) -> list[SecretMount]:
        """The secrets a deployment asks for; 400 naming the missing ones."""
        current = await self._current(namespace)
        missing = [name for name in names if name not in current]
        if missing:
            raise SecretMissingError(
                f"unable to find secret: {', '.join(missing)} (in namespace {namespace}; "
                "create it with faas-cli secret create)"
            )
        return [SecretMount(current[name][0].id, current[name][0].name, name) for name in names]

    async def create(self, namespace: str, name: str, value: bytes) -> None:
        self._namespaces.require(namespace)
        if name in await self._current(namespace):
            raise SecretExistsError(f"secret {name} already exists in namespace {namespace}")
        await self._make(namespace, name, value)
        log.info("secret_created", secret=name, namespace=namespace)

    async def update(self, namespace: str, name: str, value: bytes) -> None:
        self._namespaces.require(namespace)
        versions = (await self._current(namespace)).get(name)
        if not versions:
            raise SecretNotFoundError(f"secret {name} not found in namespace {namespace}")
        new_name = swarm_secret_name(namespace, name, value)
        if versions[0].name == new_name:
            return  # the same value: nothing to roll
        new = SecretMount(await self._make(namespace, name, value), new_name, name)
        for old in versions:
            for service in await self._swarm.services(self._instance):
                refs = service.spec.get("TaskTemplate", {}).get("ContainerSpec", {}).get("Secrets") or []
                if any(ref.get("SecretID") == old.id for ref in refs):
                    await self._swarm.update_service(
                        service, with_secret(service.spec, old.id, new, self._config.secrets_gid)
                    )
            await self._swarm.remove_secret(old.id)
        log.info("secret_updated", secret=name, namespace=namespace)

    async def delete(self, namespace: str, name: str) -> None:
        self._namespaces.require(namespace)
        versions = (await self._current(namespace)).get(name)
        if not versions:
            raise SecretNotFoundError(f"secret {name} not found in namespace {namespace}")
        users = sorted(
            f"{spec.service}.{spec.namespace}"
            for spec in (
                FunctionDeployment.from_label(s.labels[LABEL_SPEC])
                for s in await self._swarm.services(self._instance)
                if LABEL_SPEC in s.labels
            )
            if spec.namespace == namespace and name in spec.secrets
        )
        if users:
            raise SecretInUseError(f"secret {name} is used by {', '.join(users)}; remove or update them first")
        for old in versions:
            await self._swarm.remove_secret(old.id)
        log.info("secret_deleted", secret=name, namespace=namespace)

    async def _make(self, namespace: str, name: str, value: bytes) -> str:
        labels = {LABEL_NETWORK: self._config.swarm_network, LABEL_NAMESPACE: namespace, LABEL_SECRET: name}
        return await self._swarm.create_secret(swarm_secret_name(namespace, name, value), value, labels)
