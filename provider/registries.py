"""Registry mirrors for any registry, read from ``registries.yaml`` (``PYFAASD_REGISTRIES``).

Docker's own ``registry-mirrors`` setting mirrors Docker Hub only and needs a daemon restart. Here a pull of
``R/path:tag`` tries each mirror listed for ``R`` (or under ``"*"``) in order, as ``<mirror host>/path:tag``,
then ``R`` itself unless ``fallback: false``; the image pulled from a mirror is tagged with the reference the
function names (and the mirror's tag removed), so listings show the user's image name::

    mirrors:
      docker.io: ["http://10.0.0.2:5000", "https://mirror.example.net"]
      ghcr.io:   ["http://127.0.0.1:5001"]
      "*":       ["http://cache.lan:5000"]
    fallback: true

A mirror's scheme is informative: the Docker Engine speaks HTTPS to a registry unless it is listed as insecure
in ``daemon.json`` (loopback addresses always are). Credentials from ``PYFAASD_DOCKER_CONFIG`` apply to mirrors
by their host, like to any registry. The file is read at start and on SIGHUP; a missing file means no mirrors.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final
from urllib.parse import urlsplit

import yaml

from provider.errors import InvalidRequestError

DOCKER_HUB: Final = "docker.io"
_HOST: Final = re.compile(r"[A-Za-z0-9.-]+(:\d{1,5})?|\[[0-9A-Fa-f:]+\](:\d{1,5})?")
_PATH_COMPONENT: Final = re.compile(r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*")
_TAG: Final = re.compile(r"[\w][\w.-]{0,127}")


class RegistriesConfigError(ValueError):
    """``registries.yaml`` cannot be used; the message names the file and the field."""


@dataclass(frozen=True, slots=True)
class Reference:
    """An image reference, normalised as Docker does (``alpine`` is ``docker.io/library/alpine:latest``)."""

    domain: str
    path: str
    tag: str = ""
    digest: str = ""

    @classmethod
    def parse(cls, text: str) -> Reference:
        value = text.strip()
        rest, _, digest = value.partition("@")
        first, sep, remainder = rest.partition("/")
        if sep and ("." in first or ":" in first or first == "localhost"):
            domain, path = first, remainder
        else:
            domain, path = DOCKER_HUB, rest
        name, colon, tag = path.rpartition(":") if ":" in path.rsplit("/", 1)[-1] else (path, "", "")
        if not colon:
            name = path
        if domain == DOCKER_HUB and "/" not in name:
            name = f"library/{name}"
        if not name or not all(_PATH_COMPONENT.fullmatch(part) for part in name.split("/")):
            raise InvalidRequestError(f"image {text!r} is not a valid image reference")
        if tag and not _TAG.fullmatch(tag):
            raise InvalidRequestError(f"image {text!r} has an invalid tag {tag!r}")
        if not tag and not digest:
            tag = "latest"
        return cls(domain, name, tag, digest)

    def at(self, host: str) -> str:
        """The same image at another registry host (a mirror)."""
        return f"{host}/{self.path}{self._suffix()}"

    def _suffix(self) -> str:
        return (f":{self.tag}" if self.tag else "") + (f"@{self.digest}" if self.digest else "")


@dataclass(frozen=True, slots=True)
class Source:
    """One place to pull an image from: what to ask Docker for, whose credentials, and how to report it."""

    label: str  # the mirror's URL, or the registry's host
    pull_ref: str
    host: str  # for credentials
    mirror: bool


@dataclass(frozen=True, slots=True)
class RegistriesConfig:
    mirrors: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    fallback: bool = True

    @classmethod
    def load(cls, path: Path | None) -> RegistriesConfig:
        if path is None or not path.exists():
            return cls()
        try:
            document = yaml.safe_load(path.read_text()) or {}
        except (OSError, yaml.YAMLError) as e:
            raise RegistriesConfigError(f"{path}: cannot read it: {e}") from e
        if not isinstance(document, dict):
            raise RegistriesConfigError(f"{path}: must be a mapping with mirrors and fallback")
        unknown = set(document) - {"mirrors", "fallback"}
        if unknown:
            raise RegistriesConfigError(f"{path}: unknown field {sorted(unknown)[0]!r} (mirrors, fallback)")
        fallback = document.get("fallback", True)
        if not isinstance(fallback, bool):
            raise RegistriesConfigError(f"{path}: fallback must be true or false")
        raw = document.get("mirrors") or {}
        if not isinstance(raw, dict):
            raise RegistriesConfigError(f'{path}: mirrors must map a registry (or "*") to a list of URLs')
        mirrors: dict[str, tuple[str, ...]] = {}
        for registry, urls in raw.items():
            if not isinstance(urls, list) or not all(isinstance(u, str) for u in urls):
                raise RegistriesConfigError(f"{path}: mirrors.{registry} must be a list of URLs")
            for url in urls:
                mirror_host(url, f"{path}: mirrors.{registry}")
            mirrors[str(registry)] = tuple(urls)
        return cls(mirrors, fallback)

    def sources(self, reference: Reference, original: str) -> list[Source]:
        """Where to pull ``reference`` from, in order."""
        urls = self.mirrors.get(reference.domain, self.mirrors.get("*", ()))
        found = [Source(url, reference.at(mirror_host(url, "")), mirror_host(url, ""), True) for url in urls]
        if self.fallback or not found:
            found.append(Source(reference.domain, original, reference.domain, False))
        return found


def mirror_host(url: str, where: str) -> str:
    """``host[:port]`` of a mirror URL (``http://127.0.0.1:5001`` or ``https://mirror.example.net``)."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc or not _HOST.fullmatch(parts.netloc):
        raise RegistriesConfigError(f"{where}: {url!r} is not an http:// or https:// registry URL")
    if parts.path not in ("", "/"):
        raise RegistriesConfigError(f"{where}: {url!r}: a mirror is a registry host, without a path")
    return parts.netloc
