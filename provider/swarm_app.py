"""The provider's aiohttp application for ``PYFAASD_BACKEND=swarm``: the shared handlers (``provider/handlers/``)
over Swarm services and secrets (docs/swarm.md says which routes the swarm backend serves so far)."""

from __future__ import annotations

from aiohttp import web

from provider.code_store import CodeStore
from provider.config import ProviderConfig
from provider.handlers import code, functions, logs, namespaces, secrets, system, volumes
from provider.keys import CODE_STORE, CONFIG, CREDENTIALS, FUNCTIONS, NAMESPACES, SECRET_OPERATIONS, VOLUMES
from provider.middleware import basic_auth, errors, observe
from provider.namespaces import NamespaceStore
from provider.swarm_functions import SwarmFunctions
from provider.swarm_secrets import SwarmSecrets
from provider.volumes import VolumeStore
from servicekit.auth import Credentials
from servicekit.metrics import CONTENT_TYPE, Registry

MAX_BODY_BYTES = 4 * 1024 * 1024


def create_swarm_app(
    config: ProviderConfig,
    credentials: Credentials,
    swarm_functions: SwarmFunctions,
    swarm_secrets: SwarmSecrets,
    namespace_store: NamespaceStore,
    volume_store: VolumeStore,
    code_store: CodeStore,
) -> web.Application:
    registry = Registry()
    app = web.Application(client_max_size=MAX_BODY_BYTES, middlewares=[observe(registry), basic_auth, errors])
    app[CONFIG] = config
    app[CREDENTIALS] = credentials
    app[NAMESPACES] = namespace_store
    app[FUNCTIONS] = swarm_functions
    app[SECRET_OPERATIONS] = swarm_secrets
    app[VOLUMES] = volume_store
    app[CODE_STORE] = code_store

    async def metrics(request: web.Request) -> web.Response:
        del request
        return web.Response(body=registry.render().encode(), headers={"Content-Type": CONTENT_TYPE})

    name = "{name:[-a-zA-Z_0-9.]+}"
    app.router.add_routes(
        [
            web.get("/system/functions", functions.list_functions),
            web.post("/system/functions", functions.deploy_function),
            web.put("/system/functions", functions.update_function),
            web.delete("/system/functions", functions.delete_function),
            web.get(f"/system/function/{name}", functions.function_status),
            web.post(f"/system/scale-function/{name}", functions.scale_function),
            web.get("/system/secrets", secrets.list_secrets),
            web.post("/system/secrets", secrets.create_secret),
            web.put("/system/secrets", secrets.update_secret),
            web.delete("/system/secrets", secrets.delete_secret),
            web.get("/system/logs", logs.function_logs),
            web.post("/system/code", code.upload_code),
            web.get("/system/code", code.list_code),
            web.delete("/system/code/{digest}", code.delete_code),
            web.post("/system/code/prune", code.prune_code),
            web.post("/system/code/{digest}/dependencies", code.no_dependency_install),
            web.get("/system/runtimes", code.list_runtimes),
            web.post("/system/volumes", volumes.create_volume),
            web.get("/system/volumes", volumes.list_volumes),
            web.delete("/system/volumes", volumes.delete_volume),
            web.get("/system/info", system.info),
            web.get("/system/namespaces", namespaces.list_namespaces),
            web.get("/healthz", system.healthz),
            web.get("/metrics", metrics),
        ]
    )
    return app
