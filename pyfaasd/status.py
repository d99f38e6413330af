"""``pyfaasd status``: the bridge, the two daemons, and every function with its replicas.

Reads the same ``PYFAASD_*`` settings as the daemons; asks the provider directly (with the state dir's
credentials), so it works while the gateway is down. Exit status 0 when both daemons answer, 1 otherwise.

With ``PYFAASD_BACKEND=swarm`` there is no bridge: it reports the overlay and the anchor instead, and asks both
daemons where they listen, in the anchor's network namespace, which it enters (docs/swarm.md).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import urllib.error
import urllib.request
from typing import Any

from gateway.config import ADDR as GATEWAY_ADDR
from provider.config import LISTEN as PROVIDER_ADDR
from provider.config import SWARM_NETWORK
from servicekit.auth import CredentialsError, load_credentials, secrets_dir
from servicekit.settings import BACKEND, STATE_DIR, SettingError, add_flags, with_flags
from servicekit.swarm import Backend


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_flags(parser, (STATE_DIR,))
    parser.add_argument("--json", action="store_true", help="print the status as JSON")


def _get(url: str, authorization: str | None = None) -> tuple[int, Any]:
    headers = {"Authorization": authorization} if authorization else {}
    request = urllib.request.Request(url, headers=headers)  # noqa: S310 (local http URLs we built)
    try:
        with urllib.request.urlopen(request, timeout=3) as response:  # noqa: S310
            body = response.read()
            return response.status, json.loads(body) if body.strip().startswith((b"[", b"{")) else None
    except urllib.error.HTTPError as e:
        return e.code, None
    except (OSError, ValueError):
        return 0, None


def collect(env: dict[str, str]) -> dict[str, Any]:
    from netconf import NetConfig, Network

    config = NetConfig.from_env(env)
    status: dict[str, Any] = {"state_dir": str(config.state_dir)}
    provider_url = PROVIDER_ADDR.local_url(env)
    gateway_url = GATEWAY_ADDR.local_url(env)
    reachable = True
    if BACKEND.read(env) is Backend.SWARM:
        status["swarm"] = _enter_anchor(SWARM_NETWORK.read(env))
        reachable = status["swarm"]["anchor"]["running"]
        gateway_url = f"http://127.0.0.1:{GATEWAY_ADDR.read(env)[1]}"  # it listens on 0.0.0.0 in the anchor
    else:
        net = asyncio.run(Network(config).status())
        status["bridge"] = {
            "name": config.bridge,
            "present": net.bridge is not None,
            "up": bool(net.bridge and net.bridge.up),
            "subnet": str(config.subnet),
            "ip_forward": net.ip_forward,
            "rules": len(net.rules),
            "allocations": len(net.allocations),
        }
    status["provider"] = {"url": provider_url, "up": reachable and _get(f"{provider_url}/healthz")[0] == 200}
    status["gateway"] = {"url": gateway_url, "up": reachable and _get(f"{gateway_url}/healthz")[0] == 200}
    functions: list[dict[str, Any]] = []
    if status["provider"]["up"]:
        try:
            authorization = load_credentials(secrets_dir(config.state_dir)).authorization
        except CredentialsError as e:
            status["error"] = str(e)
            return status
        code, namespaces = _get(f"{provider_url}/system/namespaces", authorization)
        for namespace in namespaces if code == 200 and isinstance(namespaces, list) else []:
            _, listed = _get(f"{provider_url}/system/functions?namespace={namespace}", authorization)
            for fn in listed or []:
                functions.append(
                    {
                        "name": fn["name"],
                        "namespace": fn.get("namespace", namespace),
                        "image": fn["image"],
                        "replicas": fn.get("replicas", 0),
                        "available": fn.get("availableReplicas", 0),
                    }
                )
    status["functions"] = functions
    return status


def _enter_anchor(network: str) -> dict[str, Any]:
    """The swarm section; this process in the anchor's network namespace when it runs (where provider and gateway
    listen; the gateway also on the host, published by the anchor)."""
    from pyfaasd import swarm_stack

    found: dict[str, Any] = {"network": network, "anchor": {"name": swarm_stack.anchor_name(network), "running": False}}
    try:
        anchor = asyncio.run(swarm_stack.running_anchor(network))
        if anchor is not None:
            swarm_stack.enter_network_namespace(anchor.pid)
            found["anchor"]["running"] = True
    except (swarm_stack.SwarmStackError, OSError) as e:
        found["error"] = str(e)
    return found


def render(status: dict[str, Any]) -> str:
    lines = [f"state dir  {status['state_dir']}"]
    if "swarm" in status:
        swarm = status["swarm"]
        anchor = swarm["anchor"]
        lines.append(
            f"swarm      overlay {swarm['network']}, anchor {anchor['name']}: "
            + ("running" if anchor["running"] else swarm.get("error", "not running"))
        )
    else:
        bridge = status["bridge"]
        lines.append(
            f"bridge     {bridge['name']} {bridge['subnet']}: "
            + ("up" if bridge["up"] else "present, down" if bridge["present"] else "absent")
            + f", {bridge['allocations']} addresses in use"
        )
    lines += [
        f"provider   {status['provider']['url']}: {'up' if status['provider']['up'] else 'not answering'}",
        f"gateway    {status['gateway']['url']}: {'up' if status['gateway']['up'] else 'not answering'}",
    ]
    if "error" in status:
        lines.append(f"error      {status['error']}")
    if status.get("functions"):
        lines.append("")
        lines.append(f"{'FUNCTION':<40} {'READY':>7}  IMAGE")
        for fn in status["functions"]:
            ready = f"{fn['available']}/{fn['replicas']}"
            lines.append(f"{fn['name'] + '.' + fn['namespace']:<40} {ready:>7}  {fn['image']}")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    env = with_flags(os.environ, args, (STATE_DIR,))
    try:
        status = collect(env)
    except (SettingError, ValueError) as e:
        print(f"pyfaasd status: {e}")
        return 2
    print(json.dumps(status, indent=2) if args.json else render(status))
    return 0 if status["provider"]["up"] and status["gateway"]["up"] else 1
