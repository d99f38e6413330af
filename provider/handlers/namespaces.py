"""/system/namespaces and /system/namespace/{name}: list, create, get, update, delete."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from provider.errors import InvalidRequestError, NamespaceInUseError
from provider.handlers import empty, read_json
from provider.keys import NAMESPACES, ORCHESTRATOR
from provider.models import check_dns_label
from provider.namespaces import Namespace
from servicekit import json_text


def _namespace(body: dict[str, Any], path_name: str | None) -> Namespace:
    name = body.get("name") or path_name or ""
    if not isinstance(name, str):
        raise InvalidRequestError("name must be a string")
    if path_name and name != path_name:
        raise InvalidRequestError(f"name {name!r} in the body does not match {path_name!r} in the path")
    maps: dict[str, dict[str, str]] = {}
    for key in ("labels", "annotations"):
        value = body.get(key) or {}
        if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
            raise InvalidRequestError(f"{key} must be an object of strings")
        maps[key] = value
    return Namespace(name=check_dns_label("name", name), labels=maps["labels"], annotations=maps["annotations"])


async def list_namespaces(request: web.Request) -> web.Response:
    return web.json_response(request.app[NAMESPACES].names(), dumps=json_text.dumps)


async def create_namespace(request: web.Request) -> web.Response:
    request.app[NAMESPACES].create(_namespace(await read_json(request, "namespace"), None))
    return empty(201)


async def get_namespace(request: web.Request) -> web.Response:
    name = check_dns_label("name", request.match_info["name"])
    return web.json_response(request.app[NAMESPACES].get(name).to_json(), dumps=json_text.dumps)


async def update_namespace(request: web.Request) -> web.Response:
    name = check_dns_label("name", request.match_info["name"])
    request.app[NAMESPACES].update(_namespace(await read_json(request, "namespace"), name))
    return empty(202)


async def delete_namespace(request: web.Request) -> web.Response:
    name = check_dns_label("name", request.match_info["name"])
    if request.app[ORCHESTRATOR].has_functions(name):
        raise NamespaceInUseError(f"namespace {name} still has functions; remove them first")
    request.app[NAMESPACES].delete(name)
    return empty(202)
