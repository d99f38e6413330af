"""Code functions: a bundle of code on a runtime image, with no image build.

A function is a code function when its deployment carries the annotation ``com.pyfaasd.code: sha256:<hex>``
and its image is a runtime (an image labelled ``com.pyfaasd.runtime=<name>``). Its replicas get the stored
bundle read-only at ``/home/app/function`` and, when the bundle has a ``requirements.txt``, the dependency set
for it read-only at ``/home/app/packages``; the runtime's watchdog (``python`` mode) does the rest.

The checks run before any container is made, so a bad deploy leaves nothing behind: a digest that is not
stored, or an image that is not a runtime, is a 400 naming it; requirements pip cannot install are a 422.
"""

from __future__ import annotations

import hmac
import stat
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Final, Protocol

from provider.code_store import CodeStore, check_digest
from provider.dependencies import DependencySets, requirements_of, set_key
from provider.errors import (
    CodeBundleInvalidError,
    CodeMissingError,
    DevDirectoryError,
    ImageUnavailableError,
    InvalidRequestError,
)
from provider.models import FunctionDeployment
from provider.runtime import ImageInfo, Runtime

ANNOTATION_CODE: Final = "com.pyfaasd.code"
ANNOTATION_DEV: Final = "com.pyfaasd.dev"  # pyfaasd dev: a live directory of this host instead of a bundle
ANNOTATION_DEV_TOKEN: Final = "com.pyfaasd.dev.token"  # noqa: S105 (a name, not a secret)
DEV_TOKEN_FILE: Final = ".pyfaasd-dev"  # noqa: S105 (a file name)
DEV_TOKEN_MIN: Final = 32
LABEL_RUNTIME: Final = "com.pyfaasd.runtime"
LABEL_RUNTIME_MODE: Final = "com.pyfaasd.runtime.mode"
FUNCTION_MOUNT: Final = "/home/app/function"
PACKAGES_MOUNT: Final = "/home/app/packages"


@dataclass(frozen=True, slots=True)
class Mount:
    """A host path bound into a replica (read-only unless said)."""

    source: str  # a host path, or the name of a Docker volume
    target: str
    read_only: bool = True

    def bind(self) -> str:
        return f"{self.source}:{self.target}:{'ro' if self.read_only else 'rw'}"


@dataclass(frozen=True, slots=True)
class InstallPlan:
    image: str
    image_id: str
    requirements: bytes | None


@dataclass(frozen=True, slots=True)
class RuntimeImage:
    """One entry of ``GET /system/runtimes``."""

    name: str
    image: str
    mode: str

    def to_json(self) -> dict[str, str]:
        return {"name": self.name, "image": self.image, "mode": self.mode}


def dev_directory(spec: FunctionDeployment) -> Path | None:
    """The live directory a ``pyfaasd dev`` function runs from, after proving the caller may have it mounted.

    Mounting a host directory into a container must not let an API client read what it could not read on the
    host. ``pyfaasd dev`` runs on this host: it writes a random token into ``DIR/.pyfaasd-dev`` and sends the
    same token. The file must be a regular file owned by the directory's owner, and the directory not writable
    by everyone, so a caller with the right token could write there as the directory's owner (or root): the
    read-only mount shows it nothing it could not already read.
    """
    annotations = spec.annotations or {}
    value = annotations.get(ANNOTATION_DEV)
    if value is None:
        return None
    if ANNOTATION_CODE in annotations:
        raise InvalidRequestError(f"annotations {ANNOTATION_CODE} and {ANNOTATION_DEV} exclude each other")
    path = Path(value)
    if not path.is_absolute():
        raise InvalidRequestError(f"annotation {ANNOTATION_DEV}: {value!r} is not an absolute path")
    token = annotations.get(ANNOTATION_DEV_TOKEN, "")
    try:
        directory = path.resolve(strict=True)
        found = directory.stat()
        token_file = (directory / DEV_TOKEN_FILE).lstat()
        written = (directory / DEV_TOKEN_FILE).read_text().strip() if stat.S_ISREG(token_file.st_mode) else ""
    except OSError:
        raise DevDirectoryError(
            f"annotation {ANNOTATION_DEV}: {value} is not a directory with a pyfaasd dev token"
        ) from None
    if not stat.S_ISDIR(found.st_mode):
        raise DevDirectoryError(f"annotation {ANNOTATION_DEV}: {value} is not a directory")
    if found.st_mode & stat.S_IWOTH:
        raise DevDirectoryError(f"annotation {ANNOTATION_DEV}: {value} is writable by everyone, so it proves nothing")
    matches = len(token) >= DEV_TOKEN_MIN and hmac.compare_digest(written.encode(), token.encode())
    if not matches or token_file.st_uid != found.st_uid:
        raise DevDirectoryError(
            f"annotation {ANNOTATION_DEV}: the token does not match {directory / DEV_TOKEN_FILE} "
            "(pyfaasd dev writes it on this host)"
        )
    return directory


def code_digest(spec: FunctionDeployment) -> str | None:
    """The bundle a deployment names, None for an image function; a malformed digest is a 400."""
    value = (spec.annotations or {}).get(ANNOTATION_CODE)
    if value is None:
        return None
    try:
        return check_digest(value)
    except CodeBundleInvalidError as e:
        raise InvalidRequestError(f"annotation {ANNOTATION_CODE}: {e}") from None


class CodeFunctions:
    def __init__(self, store: CodeStore, dependencies: DependencySets, runtime: Runtime) -> None:
        self.store = store
        self.dependencies = dependencies
        self._runtime = runtime

    async def mounts(self, spec: FunctionDeployment, image: ImageInfo | None = None) -> list[Mount]:
        """What a replica of ``spec`` mounts for its code; installs its requirements on first use."""
        live = dev_directory(spec)
        digest = code_digest(spec)
        if digest is None and live is None:
            return []
        if digest is not None and not self.store.exists(digest):
            raise CodeMissingError(
                f"annotation {ANNOTATION_CODE}: code bundle {digest} is not stored (upload it with POST /system/code)"
            )
        image = await check_runtime(self._runtime, spec.image, image)
        code = live if live is not None else self.store.get(digest or "").path
        mounts = [Mount(str(code), FUNCTION_MOUNT)]
        requirements = requirements_of(code)
        if requirements is not None:
            found = await self.dependencies.ensure(spec.image, image.id, requirements)
            mounts.append(Mount(str(found.path), PACKAGES_MOUNT))
        return mounts

    async def install_plan(self, digest: str, image_name: str) -> InstallPlan:
        """What installing a bundle's requirements for a runtime takes; checked before anything starts
        (400 not a digest or not a runtime, 404 not stored)."""
        bundle = self.store.get(check_digest(digest))
        image = await self._runtime.image(image_name)
        if image is None:
            raise ImageUnavailableError(f"image {image_name} is not present")
        if not image.labels.get(LABEL_RUNTIME):
            raise InvalidRequestError(f"image {image_name} is not a runtime (it has no {LABEL_RUNTIME} label)")
        return InstallPlan(image_name, image.id, requirements_of(bundle.path))

    async def install(self, plan: InstallPlan, on_line: Callable[[str], None]) -> str:
        """Install ahead of a deploy, pip's output to ``on_line``: ``none`` (no requirements), ``cached`` or
        ``installed``."""
        if plan.requirements is None:
            return "none"
        found = await self.dependencies.ensure(plan.image, plan.image_id, plan.requirements, on_line)
        return "installed" if found.installed else "cached"

    def usage(self, specs: Iterable[FunctionDeployment]) -> dict[str, list[str]]:
        return code_users(specs)

    async def prune(self, specs: Iterable[FunctionDeployment]) -> list[str]:
        """Remove the dependency sets none of ``specs`` uses; the keys removed."""
        used = set()
        for spec in specs:
            digest = code_digest(spec)
            if digest is None or not self.store.exists(digest):
                continue
            requirements = requirements_of(self.store.get(digest).path)
            image = await self._runtime.image(spec.image)
            if requirements is not None and image is not None:
                used.add(set_key(image.id, requirements, self.dependencies.pip))
        return self.dependencies.remove_unused(used)

    async def runtimes(self) -> list[RuntimeImage]:
        return await runtime_library(self._runtime)


def code_users(specs: Iterable[FunctionDeployment]) -> dict[str, list[str]]:
    """The functions of ``specs`` using each bundle, as ``name.namespace``."""
    users: dict[str, set[str]] = {}
    for spec in specs:
        digest = code_digest(spec)
        if digest is not None:
            users.setdefault(digest, set()).add(f"{spec.service}.{spec.namespace}")
    return {digest: sorted(names) for digest, names in users.items()}


class ImageSource(Protocol):
    """The images of the engine the provider talks to."""

    async def image(self, image: str) -> ImageInfo | None: ...

    async def images_labelled(self, label: str) -> list[ImageInfo]: ...


async def runtime_library(images: ImageSource) -> list[RuntimeImage]:
    """The runtime library: every tagged image labelled as a runtime (an empty label value opts out)."""
    found = []
    for image in await images.images_labelled(LABEL_RUNTIME):
        name = image.labels.get(LABEL_RUNTIME, "")
        if not name:
            continue
        mode = image.labels.get(LABEL_RUNTIME_MODE, "")
        found += [RuntimeImage(name, tag, mode) for tag in image.tags if not tag.startswith("<none>")]
    return sorted(found, key=lambda r: (r.name, r.image))


async def check_runtime(images: ImageSource, name: str, image: ImageInfo | None = None) -> ImageInfo:
    """The image ``name`` (looked up unless given), after checking it is present (400) and a runtime (400 naming
    the runtime library)."""
    if image is None:
        image = await images.image(name)
    if image is None:
        raise ImageUnavailableError(f"image {name} is not present")
    if not image.labels.get(LABEL_RUNTIME):
        raise InvalidRequestError(
            f"image {name} is not a runtime (it has no {LABEL_RUNTIME} label), so it cannot run code "
            "bundles: GET /system/runtimes lists the runtimes"
        )
    return image
