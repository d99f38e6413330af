"""Typed application keys of the provider's aiohttp app."""

from __future__ import annotations

from aiohttp import web

from provider.code_functions import CodeFunctions
from provider.code_store import CodeStore
from provider.config import ProviderConfig
from provider.core import Core
from provider.images import ImagePuller
from provider.namespaces import NamespaceStore
from provider.operations import FunctionOperations, SecretOperations
from provider.orchestrator import Orchestrator
from provider.secrets import SecretStore
from provider.volumes import VolumeStore
from servicekit.auth import Credentials

CONFIG = web.AppKey("config", ProviderConfig)
CREDENTIALS = web.AppKey("credentials", Credentials)
ORCHESTRATOR = web.AppKey("orchestrator", Orchestrator)
SECRETS = web.AppKey("secrets", SecretStore)
NAMESPACES = web.AppKey("namespaces", NamespaceStore)
CORE = web.AppKey("core", Core)  # for /healthz: core.problem()
CODE = web.AppKey("code", CodeFunctions)
VOLUMES = web.AppKey("volumes", VolumeStore)
IMAGES = web.AppKey("images", ImagePuller)
# The operations the shared handlers call, whichever the backend (provider/operations.py).
FUNCTIONS = web.AppKey("functions", FunctionOperations)
SECRET_OPERATIONS = web.AppKey("secret_operations", SecretOperations)
CODE_STORE = web.AppKey("code_store", CodeStore)
