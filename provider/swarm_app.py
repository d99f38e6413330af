"""The provider's aiohttp application for ``PYFAASD_BACKEND=swarm``: the function routes, /system/info and the
namespaces list over Swarm services (docs/swarm.md says which routes the swarm backend serves so far)."""

from __future__ import annotations

from aiohttp import web

from provider.config import ProviderConfig
from provider.handlers import namespaces, swarm
from provider.keys import CONFIG, CREDENTIALS, NAMESPACES
from provider.middleware import basic_auth, errors, observe
from provider.namespaces import NamespaceStore
from provider.swarm_functions import SwarmFunctions
from provider.swarm_secrets import SwarmSecrets
from servicekit.auth import Credentials
from servicekit.metrics import CONTENT_TYPE, Registry

MAX_BODY_BYTES = 4 * 1024 * 1024


def create_swarm_app(
    config: ProviderConfig,
    credentials: Credentials,
    functions: SwarmFunctions,
    secrets: SwarmSecrets,
    namespace_store: NamespaceStore,
) -> web.Application:
    registry = Registry()
    app = web.Application(client_max_size=MAX_BODY_BYTES, middlewares=[observe(registry), basic_auth, errors])
    app[CONFIG] = config
    app[CREDENTIALS] = credentials
    app[NAMESPACES] = namespace_store
    app[swarm.SWARM] = functions
    app[swarm.SWARM_SECRETS] = secrets

    async def metrics(request: web.Request) -> web.Response:
        del request
        return web.Response(body=registry.render().encode(), headers={"Content-Type": CONTENT_TYPE})

    name = "{name:[-a-zA-Z_0-9.]+}"
    app.router.add_routes(
        [
            web.get("/system/functions", swarm.list_functions),
            web.post("/system/functions", swarm.deploy_function),
            web.put("/system/functions", swarm.update_function),
            web.delete("/system/functions", swarm.delete_function),
            web.get(f"/system/function/{name}", swarm.function_status),
            web.post(f"/system/scale-function/{name}", swarm.scale_function),
            web.get("/system/secrets", swarm.list_secrets),
            web.post("/system/secrets", swarm.create_secret),
            web.put("/system/secrets", swarm.update_secret),
            web.delete("/system/secrets", swarm.delete_secret),
            web.get("/system/logs", swarm.function_logs),
            web.get("/system/info", swarm.info),
            web.get("/system/namespaces", namespaces.list_namespaces),
            web.get("/healthz", swarm.healthz),
            web.get("/metrics", metrics),
        ]
    )
    return app
