"""The provider's aiohttp application: routes in one table, middlewares, typed app keys."""

from __future__ import annotations

from aiohttp import web
from aiohttp.typedefs import Handler

from provider.config import ProviderConfig
from provider.core import Core
from provider.docker_operations import DockerFunctions, DockerSecrets
from provider.handlers import code as code_handlers
from provider.handlers import functions, images, logs, namespaces, secrets, system, volumes
from provider.keys import (
    CODE,
    CODE_STORE,
    CONFIG,
    CORE,
    CREDENTIALS,
    FUNCTIONS,
    IMAGES,
    NAMESPACES,
    ORCHESTRATOR,
    SECRET_OPERATIONS,
    SECRETS,
    VOLUMES,
)
from provider.middleware import after_recovery, basic_auth, errors, observe
from provider.namespaces import NamespaceStore
from provider.secrets import SecretStore
from servicekit.auth import Credentials
from servicekit.metrics import CONTENT_TYPE, Registry

MAX_BODY_BYTES = 4 * 1024 * 1024
NAME = "{name:[-a-zA-Z_0-9.]+}"  # a function's or a namespace's name in a route


def create_app(
    config: ProviderConfig,
    credentials: Credentials,
    core: Core,
    secret_store: SecretStore,
    namespace_store: NamespaceStore,
) -> web.Application:
    """The API over the orchestration ``core`` (its operations, event follower and code functions)."""
    registry = Registry()
    app = web.Application(
        client_max_size=MAX_BODY_BYTES,
        middlewares=[observe(registry), basic_auth, after_recovery, errors],
    )
    app[CONFIG] = config
    app[CREDENTIALS] = credentials
    app[ORCHESTRATOR] = core.orchestrator
    app[SECRETS] = secret_store
    app[FUNCTIONS] = DockerFunctions(core)
    app[SECRET_OPERATIONS] = DockerSecrets(secret_store, core.orchestrator)
    app[NAMESPACES] = namespace_store
    app[CORE] = core
    app[CODE] = core.code
    app[CODE_STORE] = core.code.store
    app[VOLUMES] = core.volumes
    app[IMAGES] = core.images

    app.router.add_routes(
        [
            *shared_routes(registry, install_dependencies=code_handlers.install_code_dependencies),
            web.post("/system/namespace/", namespaces.create_namespace),
            web.post("/system/namespace", namespaces.create_namespace),
            web.get(f"/system/namespace/{NAME}", namespaces.get_namespace),
            web.put(f"/system/namespace/{NAME}", namespaces.update_namespace),
            web.delete(f"/system/namespace/{NAME}", namespaces.delete_namespace),
            web.post("/system/images/pull", images.pull_image),
            web.post("/system/images/refresh", images.refresh_images),
        ]
    )
    return app


def shared_routes(registry: Registry, *, install_dependencies: Handler) -> list[web.RouteDef]:
    """The routes both backends serve with the shared handlers (provider/handlers/), and ``/metrics``."""

    async def metrics(request: web.Request) -> web.Response:
        del request
        return web.Response(body=registry.render().encode(), headers={"Content-Type": CONTENT_TYPE})

    return [
        web.get("/system/functions", functions.list_functions),
        web.post("/system/functions", functions.deploy_function),
        web.put("/system/functions", functions.update_function),
        web.delete("/system/functions", functions.delete_function),
        web.get(f"/system/function/{NAME}", functions.function_status),
        web.post(f"/system/scale-function/{NAME}", functions.scale_function),
        web.get("/system/info", system.info),
        web.get("/system/secrets", secrets.list_secrets),
        web.post("/system/secrets", secrets.create_secret),
        web.put("/system/secrets", secrets.update_secret),
        web.delete("/system/secrets", secrets.delete_secret),
        web.get("/system/logs", logs.function_logs),
        web.get("/system/namespaces", namespaces.list_namespaces),
        web.post("/system/code", code_handlers.upload_code),
        web.get("/system/code", code_handlers.list_code),
        web.delete("/system/code/{digest}", code_handlers.delete_code),
        web.post("/system/code/prune", code_handlers.prune_code),
        web.post("/system/code/{digest}/dependencies", install_dependencies),
        web.get("/system/runtimes", code_handlers.list_runtimes),
        web.post("/system/volumes", volumes.create_volume),
        web.get("/system/volumes", volumes.list_volumes),
        web.delete("/system/volumes", volumes.delete_volume),
        web.get("/healthz", system.healthz),
        web.get("/metrics", metrics),
    ]
