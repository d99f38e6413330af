"""The provider's aiohttp application for ``PYFAASD_BACKEND=swarm``: the shared handlers (``provider/handlers/``)
over Swarm services and secrets (docs/swarm.md says which routes the swarm backend serves so far)."""

from __future__ import annotations

from aiohttp import web

from provider.app import MAX_BODY_BYTES, shared_routes
from provider.code_store import CodeStore
from provider.config import ProviderConfig
from provider.handlers import code
from provider.keys import CODE_STORE, CONFIG, CREDENTIALS, FUNCTIONS, NAMESPACES, SECRET_OPERATIONS, VOLUMES
from provider.middleware import basic_auth, errors, observe
from provider.namespaces import NamespaceStore
from provider.swarm_functions import SwarmFunctions
from provider.swarm_secrets import SwarmSecrets
from provider.volumes import VolumeStore
from servicekit.auth import Credentials
from servicekit.metrics import Registry


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

    app.router.add_routes(shared_routes(registry, install_dependencies=code.no_dependency_install))
    return app
