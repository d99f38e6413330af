"""Typed application keys of the gateway's aiohttp app."""

from __future__ import annotations

from aiohttp import web

from gateway.async_calls import CallQueue
from gateway.config import GatewayConfig
from gateway.dispatcher import DispatchRole
from gateway.metrics import GatewayMetrics
from gateway.pools import Pools
from gateway.provider import ProviderClient
from gateway.proxy import FunctionProxy
from gateway.resolver import Resolver
from gateway.routes import Routes
from gateway.scaler import Scaler
from gateway.system import SystemProxy

CONFIG = web.AppKey("config", GatewayConfig)
RESOLVER = web.AppKey("resolver", Resolver)
ROUTES = web.AppKey("routes", Routes)
POOLS = web.AppKey("pools", Pools)
PROVIDER = web.AppKey("provider", ProviderClient)
SCALER = web.AppKey("scaler", Scaler)
METRICS = web.AppKey("metrics", GatewayMetrics)
PROXY = web.AppKey("proxy", FunctionProxy)
SYSTEM = web.AppKey("system", SystemProxy)
ASYNC_QUEUE = web.AppKey("async_queue", CallQueue)
ASYNC_ROLE = web.AppKey("async_role", DispatchRole)
