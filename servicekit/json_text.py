"""JSON as the Go providers and gateway write it (``encoding/json.Marshal``): compact, UTF-8, with ``<``, ``>``,
``&``, U+2028 and U+2029 escaped. Every JSON answer of the gateway and the provider goes through :func:`dumps`, so
``/system/functions``, ``/system/info``, ``/system/secrets`` and the rest look alike (and like faasd's)."""

from __future__ import annotations

import json
from typing import Any, Final

_GO_ESCAPES: Final = str.maketrans(
    {"<": "\\u003c", ">": "\\u003e", "&": "\\u0026", "\u2028": "\\u2028", "\u2029": "\\u2029"}
)


def dumps(value: Any) -> str:
    """``value`` as compact JSON text, escaped as Go escapes it (those characters occur only inside strings)."""
    text = json.dumps(value, separators=(",", ":"), ensure_ascii=False)
    return text.translate(_GO_ESCAPES)


def dumps_bytes(value: Any) -> bytes:
    return dumps(value).encode()
