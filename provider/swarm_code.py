"""Code functions on the swarm backend: a stored bundle's files as Swarm configs mounted into the tasks.

On the docker backend a bundle reaches its replicas as a bind mount of ``<state>/code/<hex>/files``; a task on
another node has no such directory. Swarm configs are kept in Swarm's replicated store and handed by the
managers to whichever node runs a task, also while the provider is down or after it moved, so each file of
the bundle becomes one config, mounted read-only at ``/home/app/function/<path>`` (docs/swarm.md, "Code
functions"). A config holds less than 500 KB (Swarm's limit) and at least one byte: an empty file (an empty
``__init__.py``) is a read-only bind of ``/dev/null``, which every node has (Docker masks paths the same way).

Configs cannot change, so they are named by their content: ``<namespace>_<name>_<digest of path and data>``
(cut to Swarm's 64 characters), labelled with the function and the overlay. A deploy or update makes the
configs it lacks; an update keeps the configs of the spec it replaces (Swarm's rollback target) and removes
older ones; a delete removes them all; a failed deploy or update removes the ones it made.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import structlog

from provider.code_functions import ANNOTATION_DEV, check_runtime, code_digest
from provider.code_store import CodeStore
from provider.config import ProviderConfig
from provider.dependencies import REQUIREMENTS_FILE, requirements_of
from provider.docker_runtime import LABEL_FUNCTION, LABEL_NAMESPACE
from provider.errors import CodeMissingError, CodeNotCarriedError, CodeTooLargeForSwarmError
from provider.models import FunctionDeployment
from provider.swarm_runtime import ConfigInfo, Swarm
from provider.swarm_spec import LABEL_NETWORK, CodeConfig, CodeMounts

log = structlog.get_logger("provider.swarm")

MAX_CONFIG_BYTES: Final = 500 * 1024 - 1  # Swarm refuses a config of 500 KiB or more (and an empty one)
MAX_FILES: Final = 64
MAX_TOTAL_BYTES: Final = 4 * 2**20  # every config lives in the managers' Raft log and on each node of a task
LABEL_CODE_PATH: Final = "com.pyfaasd.code.path"  # on a config: the file's path in the bundle
LABEL_CODE: Final = "com.pyfaasd.code"  # on a config: the bundle it came from
MAX_NAME: Final = 64
DIGEST_CHARS: Final = 24


@dataclass(frozen=True, slots=True)
class CodeFile:
    path: str  # relative to the bundle's root, with /
    data: bytes


def config_name(namespace: str, name: str, file: CodeFile) -> str:
    digest = hashlib.sha256(f"{namespace}/{name}/{file.path}\0".encode() + file.data).hexdigest()[:DIGEST_CHARS]
    return f"{namespace}_{name}"[: MAX_NAME - DIGEST_CHARS - 1] + f"_{digest}"


def bundle_files(files_dir: Path, listed: Iterable[str], digest: str) -> list[CodeFile]:
    """The files of a stored bundle, after checking Swarm configs can carry them (400 naming the limit) and that
    they need nothing installed (400). Blocking: call it in a thread."""
    paths = sorted(listed)
    if REQUIREMENTS_FILE in paths and requirements_of(files_dir) is not None:
        raise CodeNotCarriedError(
            f"code bundle {digest} has a {REQUIREMENTS_FILE}: the swarm backend cannot install requirements on "
            "every node yet (docs/swarm.md); put the packages into the image, or use the docker backend"
        )
    if len(paths) > MAX_FILES:
        raise CodeTooLargeForSwarmError(
            f"code bundle {digest} has {len(paths)} files: the swarm backend carries at most {MAX_FILES} "
            "(one Swarm config each)"
        )
    files = [CodeFile(path, (files_dir / path).read_bytes()) for path in paths]
    for file in files:
        if len(file.data) > MAX_CONFIG_BYTES:
            raise CodeTooLargeForSwarmError(
                f"code bundle {digest}: {file.path} is {len(file.data)} bytes, over the {MAX_CONFIG_BYTES} bytes "
                "a Swarm config holds"
            )
    total = sum(len(file.data) for file in files)
    if total > MAX_TOTAL_BYTES:
        raise CodeTooLargeForSwarmError(
            f"code bundle {digest} holds {total} bytes: the swarm backend carries at most {MAX_TOTAL_BYTES} "
            "bytes of code per function (as Swarm configs)"
        )
    return files


class SwarmCode:
    """The configs of code functions, made and removed with their services."""

    def __init__(self, config: ProviderConfig, swarm: Swarm, store: CodeStore) -> None:
        self._config = config
        self._swarm = swarm
        self.store = store

    async def check(self, spec: FunctionDeployment) -> list[CodeFile] | None:
        """The files of ``spec``'s bundle (None for an image function); every refusal (400) before anything is
        made."""
        annotations = spec.annotations or {}
        if ANNOTATION_DEV in annotations:
            raise CodeNotCarriedError(
                f"annotation {ANNOTATION_DEV}: a pyfaasd dev directory is on one host; the swarm backend runs "
                "tasks on any node (deploy the code as a bundle instead)"
            )
        digest = code_digest(spec)
        if digest is None:
            return None
        if not self.store.exists(digest):
            raise CodeMissingError(
                f"annotation {LABEL_CODE}: code bundle {digest} is not stored (upload it with POST /system/code)"
            )
        await check_runtime(self._swarm, spec.image)
        bundle = await asyncio.to_thread(self.store.get, digest)
        return await asyncio.to_thread(bundle_files, bundle.path, bundle.files, digest)

    @contextlib.asynccontextmanager
    async def mounts(self, spec: FunctionDeployment, files: Sequence[CodeFile] | None) -> AsyncIterator[CodeMounts]:
        """The configs of ``files`` for the function (the ones it lacks are made); if the operation then fails,
        the configs made now are removed again."""
        if not files:
            yield CodeMounts()
            return
        existing = {c.name: c for c in await self._of(spec.namespace, spec.service)}
        made: list[str] = []
        configs: list[CodeConfig] = []
        try:
            for file in files:
                if not file.data:
                    continue
                name = config_name(spec.namespace, spec.service, file)
                found = existing.get(name)
                config_id = found.id if found is not None else ""
                if not config_id:
                    config_id = await self._swarm.create_config(name, file.data, self._labels(spec, file))
                    made.append(config_id)
                configs.append(CodeConfig(config_id, name, file.path))
            yield CodeMounts(tuple(configs), tuple(f.path for f in files if not f.data))
        except BaseException:
            for config_id in made:
                await self._swarm.remove_config(config_id)
            raise

    async def remove_unused(self, namespace: str, name: str, keep: Iterable[str]) -> None:
        """Remove the function's configs whose IDs are not in ``keep``."""
        kept = set(keep)
        for config in await self._of(namespace, name):
            if config.id not in kept:
                await self._swarm.remove_config(config.id)

    async def _of(self, namespace: str, name: str) -> list[ConfigInfo]:
        found = await self._swarm.configs(f"{LABEL_NETWORK}={self._config.swarm_network}")
        return [
            c
            for c in found
            if c.labels.get(LABEL_NAMESPACE) == namespace
            and c.labels.get(LABEL_FUNCTION) == name
            and LABEL_CODE_PATH in c.labels
        ]

    def _labels(self, spec: FunctionDeployment, file: CodeFile) -> dict[str, str]:
        return {
            LABEL_NETWORK: self._config.swarm_network,
            LABEL_NAMESPACE: spec.namespace,
            LABEL_FUNCTION: spec.service,
            LABEL_CODE_PATH: file.path,
            LABEL_CODE: code_digest(spec) or "",
        }


def config_ids(spec: Mapping[str, Any]) -> set[str]:
    """The IDs of the configs a service spec (as Swarm holds it) mounts."""
    container = (spec.get("TaskTemplate") or {}).get("ContainerSpec") or {}
    return {str(ref.get("ConfigID")) for ref in container.get("Configs") or []}
