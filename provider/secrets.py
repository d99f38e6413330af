"""Secrets on disk: ``<state>/secrets/<namespace>/<name>``, mounted read-only into function containers.

A secret file is owned by root and the secrets group (``PYFAASD_SECRETS_GID``) with mode 0640, in directories
only root may enter (0700), so no host user but root can read it; function containers get the secrets group
as a supplementary group, which lets a non-root function user read its mounted secrets and nothing else.

Updates rewrite the file in place (same inode): it is bind-mounted into running containers, and a rename
would leave them reading the old content.
"""

from __future__ import annotations

import asyncio
import os
import shutil
from collections.abc import Sequence
from pathlib import Path

import structlog

from provider.errors import SecretExistsError, SecretInUseError, SecretNotFoundError
from provider.models import check_dns_label, check_secret_name
from provider.namespaces import NamespaceStore

log = structlog.get_logger("provider.secrets")

FILE_MODE = 0o640
DIR_MODE = 0o700


class SecretStore:
    """The secrets of each namespace. The operations of the API (list, create, update, delete) check that the
    namespace exists (a 400 otherwise); ``path``, ``exists`` and ``missing`` do not."""

    def __init__(self, root: Path, gid: int, namespaces: NamespaceStore) -> None:
        self._root = root
        self._gid = gid
        self._namespaces = namespaces

    def path(self, namespace: str, name: str) -> Path:
        return self._root / check_dns_label("namespace", namespace) / check_secret_name(name)

    def exists(self, namespace: str, name: str) -> bool:
        return self.path(namespace, name).is_file()

    def missing(self, namespace: str, names: tuple[str, ...]) -> list[str]:
        return [name for name in names if not self.exists(namespace, name)]

    def list(self, namespace: str) -> list[str]:
        directory = self._root / self._namespaces.require(check_dns_label("namespace", namespace))
        try:
            return sorted(p.name for p in directory.iterdir() if p.is_file())
        except FileNotFoundError:
            return []

    async def create(self, namespace: str, name: str, value: bytes) -> None:
        path = self.path(self._namespaces.require(namespace), name)
        await asyncio.to_thread(self._write, path, value, create=True)

    async def update(self, namespace: str, name: str, value: bytes) -> None:
        path = self.path(self._namespaces.require(namespace), name)
        await asyncio.to_thread(self._write, path, value, create=False)

    async def delete(self, namespace: str, name: str, users: Sequence[str]) -> None:
        """Remove a secret no function mounts (409 naming those that do: their next restart would fail)."""
        path = self.path(self._namespaces.require(namespace), name)
        if not path.is_file():
            raise SecretNotFoundError(f"secret {name} not found in namespace {namespace}")
        if users:
            raise SecretInUseError(
                f"secret {name} is used by {', '.join(users)}: remove it from them (or remove them) first"
            )
        path.unlink(missing_ok=True)

    def _write(self, path: Path, value: bytes, *, create: bool) -> None:
        self._root.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
        path.parent.mkdir(mode=DIR_MODE, exist_ok=True)
        if path.is_dir() and not path.is_symlink():
            # Damage, not a secret: Docker makes a directory where a bind-mounted file is missing (a secret
            # deleted under a running function, before deletes of used secrets were refused). Repair it.
            log.warning("secret_path_repaired", path=str(path))
            shutil.rmtree(path)
            create = True
        flags = os.O_WRONLY | os.O_CLOEXEC | os.O_NOFOLLOW
        try:
            fd = os.open(path, flags | (os.O_CREAT | os.O_EXCL if create else 0), FILE_MODE)
        except FileExistsError:
            raise SecretExistsError(
                f"secret {path.name} already exists in namespace {path.parent.name} (update it with PUT)"
            ) from None
        except FileNotFoundError:
            raise SecretNotFoundError(f"secret {path.name} not found in namespace {path.parent.name}") from None
        try:
            os.fchown(fd, 0 if os.geteuid() == 0 else -1, self._gid if os.geteuid() == 0 else -1)
            os.fchmod(fd, FILE_MODE)
            offset = 0
            while offset < len(value):
                offset += os.pwrite(fd, value[offset:], offset)
            os.ftruncate(fd, len(value))
        finally:
            os.close(fd)
