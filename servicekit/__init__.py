"""servicekit: what every pyfaasd service is built from.

The HTTP/1.1 upstream client and header rules, the websocket relay, worker processes, settings parsing,
logging, metrics, basic auth, sd_notify, the version and the shared defaults. The watchdog, the gateway, the
provider and the CLI import it; it imports none of them, and it ships inside function images beside the
watchdog (stdlib, aiohttp, multidict and structlog only).
"""
