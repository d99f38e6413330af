"""The function routes and /system/info of the swarm backend (``provider/swarm_app.py``), over ``SwarmFunctions``.

The same requests and answers as ``provider/handlers/functions.py``; only the operations behind them differ.
"""

from __future__ import annotations

import dataclasses
import json

from aiohttp import web

from provider.errors import InvalidRequestError
from provider.handlers import empty, read_json
from provider.keys import CONFIG
from provider.logs import LogRequest
from provider.models import (
    DEFAULT_NAMESPACE,
    FunctionDeployment,
    ScaleRequest,
    SecretRequest,
    check_dns_label,
    check_secret_name,
    namespace_of,
)
from provider.swarm_functions import SwarmFunctions
from provider.swarm_secrets import SwarmSecrets
from servicekit import json_text
from servicekit.version import __version__, commit_sha

SWARM = web.AppKey("swarm", SwarmFunctions)
SWARM_SECRETS = web.AppKey("swarm_secrets", SwarmSecrets)


def _query_namespace(request: web.Request) -> str:
    return check_dns_label("namespace", request.query.get("namespace", "").strip() or DEFAULT_NAMESPACE)


async def list_functions(request: web.Request) -> web.Response:
    statuses = await request.app[SWARM].list_functions(_query_namespace(request))
    return web.json_response([s.to_json() for s in statuses], dumps=json_text.dumps)


async def function_status(request: web.Request) -> web.Response:
    """The FunctionStatus; with ``?usage=1`` also ``usage`` (of the tasks on this node)."""
    name = check_dns_label("function name", request.match_info["name"])
    namespace = _query_namespace(request)
    functions = request.app[SWARM]
    status = await functions.status(namespace, name)
    if request.query.get("usage", "").strip().lower() in ("1", "t", "true", "yes", "on"):
        status = dataclasses.replace(status, usage=await functions.usage(namespace, name))
    return web.json_response(status.to_json(), dumps=json_text.dumps)


async def deploy_function(request: web.Request) -> web.Response:
    spec = FunctionDeployment.parse(await read_json(request, "FunctionDeployment"))
    await request.app[SWARM].deploy(spec)
    return empty(202)


async def update_function(request: web.Request) -> web.Response:
    spec = FunctionDeployment.parse(await read_json(request, "FunctionDeployment"))
    await request.app[SWARM].update(spec)
    return empty(202)


async def delete_function(request: web.Request) -> web.Response:
    body = await read_json(request, "DeleteFunctionRequest")
    name = body.get("functionName")
    if not isinstance(name, str) or not name.strip():
        raise InvalidRequestError("functionName is required")
    namespace = check_dns_label("namespace", namespace_of(body))
    await request.app[SWARM].delete(namespace, check_dns_label("functionName", name.strip()))
    return empty(200)


async def scale_function(request: web.Request) -> web.Response:
    body = await read_json(request, "ScaleServiceRequest")
    scale = ScaleRequest.parse(
        body, request.match_info["name"], request.query.get("namespace"), request.app[CONFIG].max_replicas
    )
    await request.app[SWARM].scale(scale.namespace, scale.service, scale.replicas)
    return empty(200)


async def function_logs(request: web.Request) -> web.StreamResponse:
    """NDJSON, flushed per line, as the docker backend's /system/logs."""
    log_request = LogRequest.parse(request.query)
    lines = request.app[SWARM].logs(log_request)
    first = await anext(lines, None)  # a missing function is a 404 before anything is streamed
    response = web.StreamResponse(headers={"Content-Type": "application/x-ndjson", "Connection": "Keep-Alive"})
    response.enable_chunked_encoding()
    await response.prepare(request)
    if first is not None:
        await response.write(json.dumps(first.to_json()).encode() + b"\n")
        async for message in lines:
            await response.write(json.dumps(message.to_json()).encode() + b"\n")
    await response.write_eof()
    return response


async def list_secrets(request: web.Request) -> web.Response:
    namespace = _query_namespace(request)
    names = await request.app[SWARM_SECRETS].names(namespace)
    return web.json_response([{"name": n, "namespace": namespace} for n in names], dumps=json_text.dumps)


async def create_secret(request: web.Request) -> web.Response:
    secret = SecretRequest.parse(await read_json(request, "Secret"), need_value=True)
    await request.app[SWARM_SECRETS].create(secret.namespace, secret.name, secret.value)
    return empty(201)


async def update_secret(request: web.Request) -> web.Response:
    secret = SecretRequest.parse(await read_json(request, "Secret"), need_value=True)
    await request.app[SWARM_SECRETS].update(secret.namespace, secret.name, secret.value)
    return empty(200)


async def delete_secret(request: web.Request) -> web.Response:
    # as the docker backend: the namespace in the body (faas-cli), else in the query (faasd)
    body = await read_json(request, "Secret")
    name = check_secret_name(str(body.get("name") or ""))
    namespace = check_dns_label("namespace", namespace_of(body) if body.get("namespace") else _query_namespace(request))
    await request.app[SWARM_SECRETS].delete(namespace, name)
    return empty(200)


async def info(request: web.Request) -> web.Response:
    del request
    return web.json_response(
        {
            "provider": "pyfaasd",
            "version": {"sha": commit_sha(), "release": __version__},
            "orchestration": "swarm",
        },
        dumps=json_text.dumps,
    )


async def healthz(request: web.Request) -> web.Response:
    del request
    return web.Response(status=200)
