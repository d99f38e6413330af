"""``python -m netconf up|down|status``: set up, remove or show the function network (for operators and systemd).

Settings come from flags, else ``PYFAASD_BRIDGE``, ``PYFAASD_SUBNET``, ``PYFAASD_STATE_DIR``, else the defaults
(pyfaasd0, 10.62.0.0/16, /var/lib/pyfaasd). Exit status: 0 ok, 1 a netconf error, 2 a bad setting.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from netconf.config import SETTINGS, NetConfig
from netconf.errors import NetconfError
from servicekit.log import configure_logging
from servicekit.settings import SettingError, add_flags, with_flags

if TYPE_CHECKING:
    from netconf.network import NetStatus


def main(argv: Sequence[str] | None = None, env: Mapping[str, str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        config = NetConfig.from_env(with_flags(os.environ if env is None else env, args, SETTINGS))
    except SettingError as e:
        print(f"netconf: {e}", file=sys.stderr)
        return 2
    # Logs go to stderr: stdout carries the status (JSON with --json).
    configure_logging("info" if args.verbose else "warning", stream=sys.stderr)
    try:
        return asyncio.run(_run(args.command, config, as_json=args.json))
    except NetconfError as e:
        print(f"netconf: {e}", file=sys.stderr)
        return 1


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m netconf", description="pyfaasd's function network")
    parser.add_argument("command", choices=("up", "down", "status"), help="create/adopt, remove, or show it")
    add_flags(parser, SETTINGS)
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    parser.add_argument("-v", "--verbose", action="store_true", help="log what is done")
    return parser


async def _run(command: str, config: NetConfig, *, as_json: bool) -> int:
    from netconf.network import Network  # imports pyroute2: only when a command runs

    network = Network(config)
    if command == "up":
        await network.ensure_bridge()
    elif command == "down":
        await network.down()
    status = await network.status()
    doc = _status_doc(status)
    print(json.dumps(doc, indent=2) if as_json else _status_text(doc))
    return 0


def _status_doc(status: NetStatus) -> dict[str, Any]:
    bridge = status.bridge
    return {
        "bridge": status.config.bridge,
        "subnet": str(status.config.subnet),
        "bridge_ip": str(status.config.bridge_ip),
        "state_dir": str(status.config.state_dir),
        "present": bridge is not None,
        "up": bool(bridge and bridge.up),
        "mac": bridge.mac if bridge else None,
        "addresses": [str(a) for a in bridge.addresses] if bridge else [],
        "ports": list(bridge.ports) if bridge else [],
        "ip_forward": status.ip_forward,
        "rules": list(status.rules),
        "allocations": [{"ip": str(a.ip), "owner": a.owner} for a in status.allocations],
    }


def _status_text(doc: dict[str, Any]) -> str:
    if doc["present"]:
        state = "up" if doc["up"] else "DOWN"
        head = f"bridge {doc['bridge']}: {state}, mac {doc['mac']}, addresses {', '.join(doc['addresses']) or '-'}"
    else:
        head = f"bridge {doc['bridge']}: absent"
    lines = [
        head,
        f"subnet {doc['subnet']} (bridge IP {doc['bridge_ip']}), state dir {doc['state_dir']}",
        f"ip_forward: {'on' if doc['ip_forward'] else 'OFF'}",
        f"ports ({len(doc['ports'])}): {' '.join(doc['ports']) or '-'}",
        f"rules ({len(doc['rules'])}):",
        *(f"  {rule}" for rule in doc["rules"]),
        f"allocations ({len(doc['allocations'])}):",
        *(f"  {a['ip']}\t{a['owner']}" for a in doc["allocations"]),
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
