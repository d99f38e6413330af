"""What ``pyfaasd install`` may add to Docker's ``daemon.json``: the mirrors that need ``insecure-registries``.

The Docker Engine speaks plain HTTP only to registries on loopback and to those listed under
``insecure-registries``. A mirror in ``registries.yaml`` given as ``http://`` on another host would fail, so the
install offers to add it, merged into the file as it is: every other setting and every entry already listed is
kept, the file is written only when something is missing, and an unreadable file is left alone with an error.
Docker reads ``insecure-registries`` again on reload (SIGHUP), so no containers stop.
"""

from __future__ import annotations

import difflib
import ipaddress
import json
from pathlib import Path
from typing import Final
from urllib.parse import urlsplit

from provider.registries import RegistriesConfig

DAEMON_JSON: Final = Path("/etc/docker/daemon.json")
KEY: Final = "insecure-registries"


class DaemonJsonError(ValueError):
    """daemon.json is there but is not a JSON object this install can merge into."""


def insecure_mirrors(config: RegistriesConfig) -> list[str]:
    """``host:port`` of every plain-HTTP mirror that is not on loopback, sorted."""
    found = set()
    for urls in config.mirrors.values():
        for url in urls:
            parts = urlsplit(url)
            if parts.scheme == "http" and parts.hostname and not _loopback(parts.hostname):
                found.add(parts.netloc)
    return sorted(found)


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def merged(current: str | None, needed: list[str]) -> tuple[str, list[str]] | None:
    """The new text of daemon.json with ``needed`` added and what was missing, or None when nothing is."""
    settings: dict[str, object] = {}
    if current is not None and current.strip():
        try:
            loaded = json.loads(current)
        except ValueError as e:
            raise DaemonJsonError(f"{DAEMON_JSON} is not valid JSON ({e}); fix it by hand first") from None
        if not isinstance(loaded, dict):
            raise DaemonJsonError(f"{DAEMON_JSON} is not a JSON object; fix it by hand first")
        settings = loaded
    listed = settings.get(KEY, [])
    if not isinstance(listed, list) or not all(isinstance(entry, str) for entry in listed):
        raise DaemonJsonError(f"{DAEMON_JSON}: {KEY} is not a list of registries; fix it by hand first")
    missing = [entry for entry in needed if entry not in listed]
    if not missing:
        return None
    settings[KEY] = [*listed, *missing]
    return json.dumps(settings, indent=2) + "\n", missing


def diff(current: str | None, new: str) -> list[str]:
    """A unified diff of the change, for ``--dry-run`` and the question before it is made."""
    return list(
        difflib.unified_diff(
            (current or "").splitlines(), new.splitlines(), str(DAEMON_JSON), str(DAEMON_JSON), lineterm=""
        )
    )
