"""Pulling images through the mirrors of ``registries.yaml``, with progress, a deadline and clear errors.

Each source (the mirrors for the image's registry, then the registry itself unless ``fallback: false``) is
tried in order; the first that delivers wins. An image pulled from a mirror is tagged with the reference the
function names and the mirror's own tag is removed. When every source fails, the error names the image and
each source tried with what it answered (400: the user's image or registries are wrong, nothing is left).
"""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import structlog

from provider.config import PullPolicy
from provider.errors import ImageUnavailableError, InvalidRequestError
from provider.models import FunctionDeployment
from provider.registries import Reference, RegistriesConfig, RegistriesConfigError, Source
from provider.runtime import ImageInfo, Runtime

log = structlog.get_logger("provider.images")

Progress = Callable[[dict[str, object]], None]
LABEL_PULL_POLICY = "com.pyfaasd.pull-policy"


def pull_policy_of(spec: FunctionDeployment) -> PullPolicy | None:
    """The function's own pull policy (label ``com.pyfaasd.pull-policy``), None for the provider's."""
    value = (spec.labels or {}).get(LABEL_PULL_POLICY)
    if value is None:
        return None
    try:
        return PullPolicy(value.strip().lower())
    except ValueError:
        allowed = ", ".join(p.value for p in PullPolicy)
        raise InvalidRequestError(f"label {LABEL_PULL_POLICY}: {value!r} is not one of {allowed}") from None


@dataclass(frozen=True, slots=True)
class PullResult:
    image: str
    id: str
    digest: str
    source: str

    def to_json(self) -> dict[str, str]:
        return {"image": self.image, "id": self.id, "digest": self.digest, "source": self.source}


class ImagePuller:
    def __init__(
        self, runtime: Runtime, registries: Path | None, docker_config: Path | None, timeout_s: float = 600.0
    ) -> None:
        self._runtime = runtime
        self._path = registries
        self._docker_config = docker_config
        self._timeout_s = timeout_s
        self.config = RegistriesConfig.load(registries)

    def reload(self) -> bool:
        """Read ``registries.yaml`` again (SIGHUP); a broken file is logged and the last good one kept."""
        try:
            self.config = RegistriesConfig.load(self._path)
        except RegistriesConfigError as e:
            log.error("registries_reload_failed", error=str(e))
            return False
        log.info("registries_reloaded", path=str(self._path), registries=sorted(self.config.mirrors))
        return True

    async def pull(self, image: str, on_progress: Progress | None = None) -> PullResult:
        reference = Reference.parse(image)
        tried: list[str] = []
        for source in self.config.sources(reference, image):
            try:
                async with asyncio.timeout(self._timeout_s):
                    await self._runtime.pull(source.pull_ref, self._auth(source.host), _progress(on_progress))
            except TimeoutError:
                tried.append(f"{source.label}: no answer within {self._timeout_s:g}s (PYFAASD_PULL_TIMEOUT)")
                continue
            except ImageUnavailableError as e:
                tried.append(f"{source.label}: {e}")
                log.info("image_source_failed", image=image, source=source.label, error=str(e))
                continue
            info, digest = await self._settle(image, source)
            log.info("image_pulled", image=image, source=source.label, digest=digest)
            return PullResult(image, info.id, digest, source.label)
        raise ImageUnavailableError(f"image {image} could not be pulled; tried {'; '.join(tried)}")

    async def _settle(self, image: str, source: Source) -> tuple[ImageInfo, str]:
        """Name the pulled image as the function does, and drop the mirror's name for it; the image and the
        digest the source served (read before the mirror's name, which carries it, goes)."""
        pulled = await self._runtime.image(source.pull_ref)
        if pulled is None:
            raise ImageUnavailableError(f"image {image} was pulled from {source.label} but is not present")
        digest = _digest(pulled, source)
        if source.pull_ref != image:
            await self._runtime.tag(source.pull_ref, image)
            await self._runtime.untag(source.pull_ref)
        return pulled, digest

    def _auth(self, host: str) -> dict[str, str] | None:
        return registry_auth(host, self._docker_config)


def _digest(info: ImageInfo, source: Source) -> str:
    """The manifest digest the source served (Docker records it per repository), else the first known."""
    repository = source.pull_ref.rsplit("@", 1)[0].rsplit(":", 1)[0] if "/" in source.pull_ref else source.pull_ref
    for entry in info.digests:
        name, _, digest = entry.partition("@")
        if name == repository or repository.endswith(name):
            return digest
    return info.digests[0].partition("@")[2] if info.digests else ""


def _progress(on_progress: Progress | None) -> Callable[[dict[str, object]], None] | None:
    """Docker's progress messages as ``{"status", "layer", "current", "total"}``."""
    if on_progress is None:
        return None

    def forward(message: dict[str, object]) -> None:
        detail = message.get("progressDetail")
        detail = detail if isinstance(detail, dict) else {}
        line: dict[str, object] = {"status": message.get("status", "")}
        if message.get("id"):
            line["layer"] = message["id"]
        if "current" in detail:
            line["current"] = detail["current"]
        if "total" in detail:
            line["total"] = detail["total"]
        on_progress(line)

    return forward


def registry_auth(registry: str, docker_config: Path | None) -> dict[str, str] | None:
    """Credentials for a registry host from a Docker ``config.json`` (``auths.<registry>.auth``)."""
    if docker_config is None:
        return None
    try:
        auths = json.loads(docker_config.read_text()).get("auths", {})
    except (OSError, ValueError) as e:
        raise ImageUnavailableError(f"cannot read registry credentials from {docker_config}: {e}") from e
    candidates = [registry, f"https://{registry}", f"http://{registry}"]
    if registry == "docker.io":
        candidates += ["https://index.docker.io/v1/", "index.docker.io"]
    for key in candidates:
        entry = auths.get(key)
        if entry and entry.get("auth"):
            user, _, password = base64.b64decode(entry["auth"]).decode().partition(":")
            return {"username": user, "password": password, "serveraddress": registry}
    return None
