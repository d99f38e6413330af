"""``pyfaasd image pull REF`` (a progress bar over ``/system/images/pull``) and ``pyfaasd image refresh
[FUNCTION...]`` (pull again through the mirrors, roll only the functions whose image changed)."""

from __future__ import annotations

import sys
from collections.abc import Sequence

from pyfaasd.gateway_client import Out, StatusError, Target, failed, ndjson, send

PULL_TIMEOUT_S = 900.0
BAR = 30


def image_pull(target: Target, image: str, out: Out, err: Out, *, tty: bool | None = None) -> int:
    """Pull through the provider's mirrors; on a terminal one bar per layer, else one line per layer event."""
    tty = sys.stdout.isatty() if tty is None else tty
    layers: dict[str, tuple[int, int]] = {}
    try:
        for line in ndjson("POST", f"{target.gateway}/system/images/pull", target.credentials,
                           body={"image": image}, timeout_s=PULL_TIMEOUT_S):  # fmt: skip
            if "error" in line:
                err(f"pyfaasd image pull: {line['error']}")
                return 1
            if "digest" in line:
                if tty:
                    print(file=sys.stdout)
                out(f"Pulled {line['image']} {line['digest'] or '(no digest)'} from {line['source']}.")
                return 0
            layer = str(line.get("layer", ""))
            current, total = int(str(line.get("current", 0) or 0)), int(str(line.get("total", 0) or 0))
            if layer and total:
                layers[layer] = (current, total)
            if tty:
                print(_bar(layers, str(line.get("status", ""))), end="", flush=True)
            else:
                out(f"{layer or '-'}: {line.get('status', '')}" + (f" {current}/{total}" if total else ""))
    except StatusError as e:
        err(f"pyfaasd image pull: {e}")
        return 1
    err("pyfaasd image pull: the provider ended the answer without a result")
    return 1


def _bar(layers: dict[str, tuple[int, int]], status: str) -> str:
    """One redrawn line: the bytes of all layers seen so far, and Docker's last word."""
    done = sum(current for current, _ in layers.values())
    size = sum(total for _, total in layers.values()) or 1
    filled = int(BAR * done / size)
    return f"\r[{'#' * filled}{'.' * (BAR - filled)}] {done * 100 // size:3d}% {status[:40]:<40}"


def image_refresh(target: Target, functions: Sequence[str], out: Out, err: Out) -> int:
    reply = send(
        "POST", f"{target.gateway}/system/images/refresh", target.credentials, body={"functions": list(functions)}
    )
    if reply.status != 200:
        return failed("cannot refresh", reply, err)
    result = reply.json()
    for name in result.get("rolled", []):
        out(f"Rolled {name}: its image changed.")
    for name in result.get("unchanged", []):
        out(f"Unchanged {name}.")
    for name, why in result.get("failed", {}).items():
        err(f"Failed {name}: {why}")
    return 1 if result.get("failed") else 0
