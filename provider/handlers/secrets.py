"""/system/secrets: list (names only), create (409 if it exists), update (404 if missing), delete; for either
backend."""

from __future__ import annotations

from aiohttp import web

from provider.handlers import empty, read_json
from provider.handlers.functions import query_namespace
from provider.keys import SECRET_OPERATIONS
from provider.models import SecretRequest, check_dns_label, check_secret_name, namespace_of
from servicekit import json_text


async def list_secrets(request: web.Request) -> web.Response:
    namespace = query_namespace(request)
    names = await request.app[SECRET_OPERATIONS].names(namespace)
    return web.json_response([{"name": n, "namespace": namespace} for n in names], dumps=json_text.dumps)


async def create_secret(request: web.Request) -> web.Response:
    secret = SecretRequest.parse(await read_json(request, "Secret"), need_value=True)
    await request.app[SECRET_OPERATIONS].create(secret.namespace, secret.name, secret.value)
    return empty(201)


async def update_secret(request: web.Request) -> web.Response:
    secret = SecretRequest.parse(await read_json(request, "Secret"), need_value=True)
    await request.app[SECRET_OPERATIONS].update(secret.namespace, secret.name, secret.value)
    return empty(200)


async def delete_secret(request: web.Request) -> web.Response:
    # faas-cli sends the namespace in the body; faasd read it from the query: accept both, body first.
    body = await read_json(request, "Secret")
    name = check_secret_name(str(body.get("name") or ""))
    namespace = check_dns_label("namespace", namespace_of(body) if body.get("namespace") else query_namespace(request))
    await request.app[SECRET_OPERATIONS].delete(namespace, name)
    return empty(200)
