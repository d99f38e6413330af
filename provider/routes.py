"""A function's own domain and short path (INTERFACES.md §8): checked at deploy and update, published to the
routes file the gateway follows (netconf/routes.py).

A route is held by the function that has it in its deployment, deploys and updates in flight included, so two
concurrent deploys cannot both take one domain. Deleting a function frees its routes (the next publish).
"""

from __future__ import annotations

from collections.abc import Iterable

from netconf.routes import Route, RouteInvalidError, overlaps, routes_of
from provider.errors import InvalidRequestError, RouteConflictError
from provider.models import FunctionDeployment


def routes_for(spec: FunctionDeployment) -> list[Route]:
    """The routes a deployment asks for; a malformed domain or path is a 400 naming it."""
    try:
        return routes_of(spec.service, spec.namespace, spec.annotations)
    except RouteInvalidError as e:
        raise InvalidRequestError(f"annotations: {e}") from None


def check_routes(spec: FunctionDeployment, in_use: Iterable[FunctionDeployment]) -> list[Route]:
    """The deployment's routes, after checking no other function holds them (409 naming the holder)."""
    wanted = routes_for(spec)
    if not wanted:
        return wanted
    for other in in_use:
        if (other.namespace, other.service) == (spec.namespace, spec.service):
            continue
        for held in routes_of_quietly(other):
            for route in wanted:
                if overlaps(route, held):
                    what = str(route.kind)
                    within = "" if route.value == held.value else f" (it holds {held.value})"
                    raise RouteConflictError(
                        f"{what} {route.value} is already routed to function {held.function}{within}"
                    )
    return wanted


def routes_of_quietly(spec: FunctionDeployment) -> list[Route]:
    """A deployed function's routes; one whose annotations no longer parse (say recovered from an older
    version) has none."""
    try:
        return routes_of(spec.service, spec.namespace, spec.annotations)
    except RouteInvalidError:
        return []


def published_routes(specs: Iterable[FunctionDeployment]) -> list[Route]:
    return [route for spec in specs for route in routes_of_quietly(spec)]
