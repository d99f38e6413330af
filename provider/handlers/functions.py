"""/system/functions (list, deploy, update, delete), /system/function/{name} and /system/scale-function, for
either backend (the operations behind them: ``provider/operations.py``)."""

from __future__ import annotations

import dataclasses

from aiohttp import web

from provider.errors import InvalidRequestError
from provider.handlers import empty, read_json
from provider.keys import CONFIG, FUNCTIONS
from provider.models import DEFAULT_NAMESPACE, FunctionDeployment, ScaleRequest, check_dns_label, namespace_of
from servicekit import json_text


def query_namespace(request: web.Request) -> str:
    return check_dns_label("namespace", request.query.get("namespace", "").strip() or DEFAULT_NAMESPACE)


async def list_functions(request: web.Request) -> web.Response:
    statuses = await request.app[FUNCTIONS].list_functions(query_namespace(request))
    return web.json_response([s.to_json() for s in statuses], dumps=json_text.dumps)


async def function_status(request: web.Request) -> web.Response:
    """The FunctionStatus; with ``?usage=1`` (faas-cli describe, the gateway's cpu autoscaling) also ``usage``,
    read from the engine's container stats (with the swarm backend: of the tasks on this node)."""
    name = check_dns_label("function name", request.match_info["name"])
    namespace = query_namespace(request)
    functions = request.app[FUNCTIONS]
    status = await functions.status(namespace, name)
    if request.query.get("usage", "").strip().lower() in ("1", "t", "true", "yes", "on"):
        status = dataclasses.replace(status, usage=await functions.usage(namespace, name))
    return web.json_response(status.to_json(), dumps=json_text.dumps)


async def deploy_function(request: web.Request) -> web.Response:
    spec = FunctionDeployment.parse(await read_json(request, "FunctionDeployment"))
    await request.app[FUNCTIONS].deploy(spec)
    return empty(202)


async def update_function(request: web.Request) -> web.Response:
    spec = FunctionDeployment.parse(await read_json(request, "FunctionDeployment"))
    await request.app[FUNCTIONS].update(spec)
    return empty(202)


async def delete_function(request: web.Request) -> web.Response:
    body = await read_json(request, "DeleteFunctionRequest")
    name = body.get("functionName")
    if not isinstance(name, str) or not name.strip():
        raise InvalidRequestError("functionName is required")
    namespace = check_dns_label("namespace", namespace_of(body))
    await request.app[FUNCTIONS].delete(namespace, check_dns_label("functionName", name.strip()))
    return empty(200)


async def scale_function(request: web.Request) -> web.Response:
    body = await read_json(request, "ScaleServiceRequest")
    scale = ScaleRequest.parse(
        body, request.match_info["name"], request.query.get("namespace"), request.app[CONFIG].max_replicas
    )
    await request.app[FUNCTIONS].scale(scale.namespace, scale.service, scale.replicas)
    return empty(200)
