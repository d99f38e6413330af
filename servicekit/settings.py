"""Typed readers for the ``PYFAASD_*`` settings of the provider, the gateway and ``pyfaasd up``.

Every reader raises :class:`SettingError` naming the setting, never falls back silently (of-watchdog's
``getInt`` turning junk into 0 is the anti-pattern). Durations follow faas-provider: a bare number is seconds,
otherwise a Go-style duration such as ``60s``, ``1m30s`` or ``250ms``.
"""

from __future__ import annotations

import re
from ipaddress import AddressValueError, IPv4Address

_DURATION_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h)")
_UNIT_SECONDS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off"})


class SettingError(ValueError):
    """A setting has a value that cannot be used; the message names the setting."""


def parse_duration(name: str, value: str) -> float:
    """Seconds from ``30``, ``1.5``, ``60s``, ``1m30s``, ``250ms``; negative values are refused."""
    text = value.strip()
    try:
        seconds = float(text)
    except ValueError:
        pos = 0
        seconds = 0.0
        for match in _DURATION_PART.finditer(text):
            if match.start() != pos:
                break
            seconds += float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
            pos = match.end()
        if pos != len(text) or not text:
            raise SettingError(f"{name}: {value!r} is not a duration (like 30, 60s, 1m30s or 250ms)") from None
    if seconds < 0 or seconds != seconds:
        raise SettingError(f"{name}: {value!r} must not be negative")
    return seconds


def parse_bool(name: str, value: str) -> bool:
    text = value.strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise SettingError(f"{name}: {value!r} is not a boolean (true or false)")


def parse_int(name: str, value: str, *, minimum: int | None = None, maximum: int | None = None) -> int:
    try:
        number = int(value.strip())
    except ValueError:
        raise SettingError(f"{name}: {value!r} is not a whole number") from None
    if minimum is not None and number < minimum:
        raise SettingError(f"{name}: {number} is below the minimum of {minimum}")
    if maximum is not None and number > maximum:
        raise SettingError(f"{name}: {number} is above the maximum of {maximum}")
    return number


def parse_listen_address(name: str, value: str) -> tuple[str, int]:
    """``HOST:PORT`` (``:PORT`` means 0.0.0.0) as an IPv4 host and a port; IPv6 is refused (IPv4 only)."""
    host, sep, port_text = value.strip().rpartition(":")
    if not sep:
        raise SettingError(f"{name}: {value!r} is not an address like 127.0.0.1:8081")
    host = host or "0.0.0.0"
    if host == "localhost":
        host = "127.0.0.1"
    try:
        IPv4Address(host)
    except AddressValueError:
        raise SettingError(f"{name}: {host!r} is not an IPv4 address (pyfaasd listens on IPv4 only)") from None
    port = parse_int(name, port_text, minimum=0, maximum=65535)
    return host, port


def local_url(name: str, value: str) -> str:
    """The ``http://`` URL a client on this host uses for a server listening at ``HOST:PORT``.

    A wildcard listen address (``0.0.0.0``, or ``:PORT``) is reached at 127.0.0.1.
    """
    host, port = parse_listen_address(name, value)
    if host == "0.0.0.0":
        host = "127.0.0.1"
    return f"http://{host}:{port}"
