"""The routes file: which function serves at its own domain or short path (docs/architecture.md, "Routes").

The provider (writer) derives the routes from the deployed functions' annotations and rewrites the file on every
change; the gateway (reader) follows it as it follows the hosts file. Annotations (INTERFACES.md §8):

* ``com.pyfaasd.domain: files.example.com[,other.example.org]``: the function at the root of that ``Host``;
* ``com.pyfaasd.path: /files``: the function under that prefix, which is stripped.

Format, one route a line, tab-separated, sorted::

    # pyfaasd routes: written by the provider, do not edit
    domain\tfiles.example.com\tfiles.openfaas-fn
    path\t/files\tfiles.openfaas-fn
    # end crc32=<CRC-32 of the lines above, 8 hex digits>

The file is not mounted anywhere, so it is replaced atomically (a temporary file renamed over it): a reader sees
the old or the new file, never a mix. Unchanged content is not written at all.
"""

from __future__ import annotations

import enum
import os
import re
import tempfile
import zlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from netconf.errors import NetconfError

DOMAIN_ANNOTATION: Final = "com.pyfaasd.domain"
PATH_ANNOTATION: Final = "com.pyfaasd.path"

HEADER: Final = "# pyfaasd routes: written by the provider, do not edit"
END_MARKER: Final = "# end crc32="
FILE_MODE: Final = 0o644

# The gateway's own path prefixes: a path route may not take them (the first segment of a path route).
RESERVED_SEGMENTS: Final = frozenset({"function", "async-function", "system", "healthz", "metrics", "ui", "_"})

_LABEL = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$")
_SEGMENT = re.compile(r"^[A-Za-z0-9._~-]+$")
_END = re.compile(r"^# end crc32=([0-9a-f]{8})$")
MAX_PATH_LENGTH: Final = 128


class RouteInvalidError(NetconfError, ValueError):
    """A domain or path annotation that cannot be a route; the message names the annotation and the value."""


class RoutesFileError(NetconfError):
    """The routes file cannot be read or written."""


class RouteKind(enum.StrEnum):
    DOMAIN = "domain"
    PATH = "path"


@dataclass(frozen=True, slots=True, order=True)
class Route:
    """One route: ``files.example.com`` (a domain) or ``/files`` (a path) to the function ``name.namespace``."""

    kind: RouteKind
    value: str
    function: str  # name.namespace

    def url(self, base: str) -> str:
        """How a client reaches it: ``//files.example.com/`` (scheme left to the caller) or ``<base>/files/``."""
        return f"//{self.value}/" if self.kind is RouteKind.DOMAIN else f"{base.rstrip('/')}{self.value}/"


def parse_domain(text: str) -> str:
    """A host name as a route holds it (lowercase, no trailing dot); RouteInvalidError when it cannot be one."""
    domain = text.strip().lower().removesuffix(".")
    labels = domain.split(".")
    if not domain or len(domain) > 253 or not all(_LABEL.match(label) for label in labels):
        raise RouteInvalidError(
            f"{DOMAIN_ANNOTATION}: {text.strip()!r} is not a host name (labels of letters, digits and '-', "
            "separated by '.'; no port, scheme, path or wildcard)"
        )
    if labels[-1].isdigit():
        raise RouteInvalidError(f"{DOMAIN_ANNOTATION}: {text.strip()!r} is an address, not a host name")
    return domain


def parse_path(text: str) -> str:
    """A path prefix as a route holds it (``/files``, no trailing slash); RouteInvalidError when it cannot be one."""
    path = text.strip()
    trimmed = path.rstrip("/")
    segments = trimmed.split("/")[1:]
    if (
        not path.startswith("/")
        or not segments
        or len(trimmed) > MAX_PATH_LENGTH
        or not all(_SEGMENT.match(s) and s not in (".", "..") for s in segments)
    ):
        raise RouteInvalidError(
            f"{PATH_ANNOTATION}: {path!r} is not a path prefix (like /files: '/' and segments of letters, "
            f"digits, '.', '_', '~', '-'; at most {MAX_PATH_LENGTH} characters)"
        )
    if segments[0] in RESERVED_SEGMENTS:
        raise RouteInvalidError(f"{PATH_ANNOTATION}: {path!r} is the gateway's own /{segments[0]}")
    return trimmed


def routes_of(name: str, namespace: str, annotations: Mapping[str, str] | None) -> list[Route]:
    """The routes a function's annotations ask for (checked: RouteInvalidError naming the bad one)."""
    annotations = annotations or {}
    function = f"{name}.{namespace}"
    found: list[Route] = []
    domains = annotations.get(DOMAIN_ANNOTATION, "")
    for part in domains.split(","):
        if part.strip():
            route = Route(RouteKind.DOMAIN, parse_domain(part), function)
            if route not in found:
                found.append(route)
    if DOMAIN_ANNOTATION in annotations and not found:
        raise RouteInvalidError(f"{DOMAIN_ANNOTATION}: names no host name")
    if PATH_ANNOTATION in annotations:
        found.append(Route(RouteKind.PATH, parse_path(annotations[PATH_ANNOTATION]), function))
    return found


def overlaps(a: Route, b: Route) -> bool:
    """Whether two routes would take the same requests: one domain, or one path prefix inside the other."""
    if a.kind is not b.kind:
        return False
    if a.kind is RouteKind.DOMAIN:
        return a.value == b.value
    return a.value == b.value or a.value.startswith(b.value + "/") or b.value.startswith(a.value + "/")


# -- the file ------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RoutesTable:
    """What a routes file says: domain → function, and the path prefixes (longest first) with their function."""

    domains: Mapping[str, str]
    paths: tuple[tuple[str, str], ...]
    complete: bool

    @property
    def routes(self) -> list[Route]:
        found = [Route(RouteKind.DOMAIN, d, f) for d, f in self.domains.items()]
        found += [Route(RouteKind.PATH, p, f) for p, f in self.paths]
        return sorted(found)


EMPTY: Final = RoutesTable(domains={}, paths=(), complete=True)


def render_routes(routes: Iterable[Route]) -> str:
    """The whole file, in a stable order; of two routes that overlap, the first in order is kept."""
    kept: list[Route] = []
    for route in sorted(set(routes)):
        if not any(overlaps(route, other) for other in kept):
            kept.append(route)
    body = "".join(f"{line}\n" for line in [HEADER, *(f"{r.kind}\t{r.value}\t{r.function}" for r in kept)])
    return f"{body}{END_MARKER}{zlib.crc32(body.encode()):08x}\n"


def write_routes(path: Path, routes: Iterable[Route]) -> bool:
    """Replace the routes file (atomically) with these routes; False when it already says so."""
    content = render_routes(routes)
    try:
        if path.read_text() == content:
            return False
    except FileNotFoundError:
        pass
    except (OSError, UnicodeDecodeError):
        pass  # rewrite it
    try:
        fd, tmp = tempfile.mkstemp(prefix=".routes-", dir=path.parent)
        try:
            with os.fdopen(fd, "w") as out:
                out.write(content)
                os.fchmod(out.fileno(), FILE_MODE)
            os.replace(tmp, path)
        except BaseException:
            os.unlink(tmp)
            raise
    except OSError as e:
        raise RoutesFileError(f"cannot write routes file {path}: {e.strerror}") from e
    return True


def read_routes(path: Path) -> RoutesTable:
    """Read and parse the routes file; empty (and complete) when there is none."""
    try:
        text = path.read_text(errors="replace")
    except FileNotFoundError:
        return EMPTY
    except OSError as e:
        raise RoutesFileError(f"cannot read routes file {path}: {e.strerror}") from e
    return parse_routes(text)


def parse_routes(text: str) -> RoutesTable:
    """Parse routes file text; lines that are not a well-formed route are skipped."""
    domains: dict[str, str] = {}
    paths: dict[str, str] = {}
    complete = False
    offset = 0
    for line in text.split("\n")[:-1]:
        marker = _END.match(line.strip())
        if marker:
            complete = f"{zlib.crc32(text[:offset].encode()):08x}" == marker.group(1)
            break
        offset += len(line) + 1
        fields = line.split("\t")
        if len(fields) != 3 or line.startswith("#"):
            continue
        kind, value, function = fields
        if kind == RouteKind.DOMAIN:
            domains.setdefault(value, function)
        elif kind == RouteKind.PATH:
            paths.setdefault(value, function)
    ordered = tuple(sorted(paths.items(), key=lambda item: (-len(item[0]), item[0])))
    return RoutesTable(domains=domains, paths=ordered, complete=complete)
