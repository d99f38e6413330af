"""Kubernetes resource quantities (``128Mi``, ``1G``, ``500m``, ``0.5``) as Docker limits.

faas-cli sends ``limits.memory``/``limits.cpu`` as Kubernetes quantities; Docker wants bytes and nano-CPUs.
The original strings are kept in the spec and returned unchanged; these functions only convert them.
"""

from __future__ import annotations

import os
import re
from decimal import Decimal, InvalidOperation

from provider.errors import InvalidRequestError

_QUANTITY = re.compile(r"^([+]?(?:\d+\.?\d*|\.\d+))(Ki|Mi|Gi|Ti|Pi|Ei|m|k|M|G|T|P|E|[eE][+-]?\d+)?$")
_SUFFIX = {
    "Ki": Decimal(2) ** 10,
    "Mi": Decimal(2) ** 20,
    "Gi": Decimal(2) ** 30,
    "Ti": Decimal(2) ** 40,
    "Pi": Decimal(2) ** 50,
    "Ei": Decimal(2) ** 60,
    "m": Decimal("0.001"),
    "k": Decimal(10) ** 3,
    "M": Decimal(10) ** 6,
    "G": Decimal(10) ** 9,
    "T": Decimal(10) ** 12,
    "P": Decimal(10) ** 15,
    "E": Decimal(10) ** 18,
}
MIN_MEMORY_BYTES = 6 * 1024 * 1024  # Docker refuses smaller memory limits and reservations


def parse_quantity(field: str, value: str) -> Decimal:
    match = _QUANTITY.match(value.strip())
    if not match:
        raise InvalidRequestError(f"{field}: {value!r} is not a quantity like 128Mi, 1G, 500m or 0.5")
    try:
        number = Decimal(match.group(1))
    except InvalidOperation:
        raise InvalidRequestError(f"{field}: {value!r} is not a quantity") from None
    suffix = match.group(2) or ""
    if suffix[:1] in ("e", "E") and suffix not in _SUFFIX:
        return number * (Decimal(10) ** int(suffix[1:]))
    return number * _SUFFIX.get(suffix, Decimal(1))


def memory_bytes(field: str, value: str) -> int:
    """Bytes for a memory quantity above 0, raised to 6 MiB (Docker's minimum) when it is below.

    faasd accepts limits under the engine's minimum (the OpenFaaS certifier deploys with ``5Mi``), so pyfaasd
    does too: the container gets the minimum, and the API still shows the quantity as it was sent.
    """
    amount = parse_quantity(field, value)
    if amount != amount.to_integral_value():
        raise InvalidRequestError(f"{field}: {value!r} is not a whole number of bytes")
    if amount <= 0:
        raise InvalidRequestError(f"{field}: {value!r} must be more than 0")
    return max(int(amount), MIN_MEMORY_BYTES)


def nano_cpus(field: str, value: str) -> int:
    """Nano-CPUs for a CPU quantity (``500m`` → 500_000_000); more than 0 and at most this host's CPUs."""
    cpus = parse_quantity(field, value)
    if cpus <= 0:
        raise InvalidRequestError(f"{field}: {value!r} must be more than 0")
    available = os.cpu_count() or 1
    if cpus > available:
        raise InvalidRequestError(f"{field}: {value!r} is more than the {available} CPUs of this host")
    nanos = int(cpus * Decimal(10) ** 9)
    if nanos < 10_000_000:
        raise InvalidRequestError(f"{field}: {value!r} is below the minimum of 10m")
    return nanos
