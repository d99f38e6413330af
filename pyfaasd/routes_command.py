"""``pyfaasd routes``: the functions served at their own domain or short path, and the URL of each.

Reads the routes file the provider writes (``<state dir>/routes``, netconf/routes.py), the same one the gateway
follows, so it shows what the gateway serves now. URLs are built from the gateway's settings in the environment:
``https://`` (and ``PYFAASD_TLS_ADDR``'s port unless 443) when a certificate is set, else ``http://`` and
``PYFAASD_GATEWAY_ADDR``'s port (unless 80). A path route is shown on this host's address.
"""

from __future__ import annotations

import argparse
import json
import os

from gateway.config import GatewayConfig
from netconf.routes import Route, RouteKind, RoutesFileError, read_routes
from servicekit.settings import STATE_DIR, SettingError, add_flags, with_flags


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_flags(parser, (STATE_DIR,))
    parser.add_argument("--json", action="store_true", help="print the routes as JSON")


def url_of(route: Route, config: GatewayConfig) -> str:
    scheme, port = ("https", config.tls_port) if config.tls else ("http", config.port)
    default_port = 443 if scheme == "https" else 80
    suffix = "" if port == default_port else f":{port}"
    if route.kind is RouteKind.DOMAIN:
        return f"{scheme}://{route.value}{suffix}/"
    host = "127.0.0.1" if (config.tls_host if config.tls else config.host) == "0.0.0.0" else config.host
    return f"{scheme}://{host}{suffix}{route.value}/"


def rows(config: GatewayConfig) -> list[dict[str, str]]:
    table = read_routes(config.routes_file)
    return [
        {"function": r.function, "kind": str(r.kind), "route": r.value, "url": url_of(r, config)}
        for r in sorted(table.routes, key=lambda r: (r.function, r.kind, r.value))
    ]


def render(found: list[dict[str, str]]) -> str:
    if not found:
        return "no routes (annotate a function with com.pyfaasd.domain or com.pyfaasd.path)"
    width = max(len(row["function"]) for row in found) + 2
    lines = [f"{'FUNCTION':<{width}}{'ROUTE':<8}URL"]
    lines += [f"{row['function']:<{width}}{row['kind']:<8}{row['url']}" for row in found]
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    try:
        config = GatewayConfig.from_env(with_flags(os.environ, args, (STATE_DIR,)))
        found = rows(config)
    except (SettingError, RoutesFileError) as e:
        print(f"pyfaasd routes: {e}")
        return 2
    print(json.dumps(found, indent=2) if args.json else render(found))
    return 0
