"""Defaults that more than one part of pyfaasd writes down: one place each (README.md, "Configuration").

The settings tables (``provider/config.py``, ``gateway/config.py``, ``netconf/config.py``) and the CLI take
their defaults from here, so ``pyfaasd status`` looks for the daemons where they listen by default.
"""

from __future__ import annotations

from pathlib import Path
from typing import Final

DEFAULT_NAMESPACE: Final = "openfaas-fn"  # faasd's function namespace; always exists, cannot be deleted
STATE_DIR: Final = Path("/var/lib/pyfaasd")  # PYFAASD_STATE_DIR: hosts file, secrets, IP allocations
PROVIDER_HOST: Final = "127.0.0.1"  # the provider's API listens on loopback only
PROVIDER_PORT: Final = 8081
PROVIDER_ADDR: Final = f"{PROVIDER_HOST}:{PROVIDER_PORT}"  # PYFAASD_PROVIDER_ADDR
PROVIDER_URL: Final = f"http://{PROVIDER_ADDR}"  # PYFAASD_PROVIDER_URL: where the gateway finds it
GATEWAY_ADDR: Final = "0.0.0.0:8080"  # PYFAASD_GATEWAY_ADDR: the public API
FUNCTION_PORT: Final = 8080  # PYFAASD_FUNCTION_PORT: the watchdog's port in every function container
HEADER_TIMEOUT_S: Final = 10.0  # PYFAASD_HEADER_TIMEOUT (gateway, provider); fixed in the watchdog
IDLE_TIMEOUT_S: Final = 75.0  # PYFAASD_IDLE_TIMEOUT (gateway, provider); fixed in the watchdog
