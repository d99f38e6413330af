"""``pyfaasd status``'s text (pyfaasd/status.py): the bridge with the docker backend, the overlay and the anchor
with the swarm backend (collect() itself runs in tests/e2e/test_stack_e2e.py on both)."""

from __future__ import annotations

from typing import Any

from pyfaasd.status import render

DAEMONS: dict[str, Any] = {
    "provider": {"url": "http://127.0.0.1:8081", "up": True},
    "gateway": {"url": "http://127.0.0.1:8080", "up": False},
    "functions": [{"name": "echo", "namespace": "openfaas-fn", "image": "echo:1", "replicas": 2, "available": 1}],
}


def test_the_docker_backend_shows_its_bridge() -> None:
    bridge = {"name": "pyfaasd0", "subnet": "10.62.0.0/16", "present": True, "up": True, "allocations": 2}
    text = render({"state_dir": "/var/lib/pyfaasd", "bridge": bridge, **DAEMONS})
    assert "bridge     pyfaasd0 10.62.0.0/16: up, 2 addresses in use" in text
    assert "gateway    http://127.0.0.1:8080: not answering" in text
    assert "echo.openfaas-fn          " in text
    assert " 1/2  echo:1" in text


def test_the_swarm_backend_shows_its_overlay_and_anchor_instead() -> None:
    anchor = {"name": "pyfaasd-anchor-pyfaasd", "running": True}
    text = render({"state_dir": "/var/lib/pyfaasd", "swarm": {"network": "pyfaasd", "anchor": anchor}, **DAEMONS})
    assert "swarm      overlay pyfaasd, anchor pyfaasd-anchor-pyfaasd: running" in text
    assert "bridge" not in text
    gone = {"network": "pyfaasd", "anchor": {**anchor, "running": False}, "error": "cannot reach the Docker Engine"}
    assert "anchor pyfaasd-anchor-pyfaasd: cannot reach the Docker Engine" in render(
        {"state_dir": "/x", "swarm": gone, **DAEMONS}
    )
