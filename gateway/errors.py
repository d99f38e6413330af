"""Failures the gateway answers itself, each one status; the error middleware (app.py) turns them into responses.

Every such response carries ``X-OpenFaaS-Internal: gateway`` and a one-line plain-text body (``str(error)``).
The shared relay's failures (servicekit.relay) become these through :func:`from_relay`.
"""

from __future__ import annotations

from typing import Final

from servicekit import relay
from servicekit.auth import CHALLENGE


class GatewayError(Exception):
    """Base: ``status`` is what the client gets, ``headers`` are added to the answer."""

    status = 500
    headers: tuple[tuple[str, str], ...] = ()


class BadRequestError(GatewayError):
    status = 400


class UnauthorizedError(GatewayError):
    """Missing or wrong basic-auth credentials on ``/system``."""

    status = 401
    headers = (("WWW-Authenticate", CHALLENGE),)


class NotFoundError(GatewayError):
    """No such route."""

    status = 404


class FunctionNotFoundError(GatewayError):
    """The provider does not know the function."""

    status = 404


class MethodNotAllowedError(GatewayError):
    """``/async-function/`` takes POST only, as in OpenFaaS."""

    status = 405
    headers = (("Allow", "POST"),)


class RequestTimeoutError(GatewayError):
    """The client did not send its request body within ``read_timeout``."""

    status = 408


class BodyTooLargeError(GatewayError):
    status = 413


class AsyncCallNotFoundError(GatewayError):
    """``GET /system/async/<call-id>`` for an id the queue does not have (never accepted, or forgotten)."""

    status = 404


class AsyncQueueError(GatewayError):
    """The async queue could not store the request (the caller got no 202: nothing was accepted)."""

    status = 500


class UpstreamConnectError(GatewayError):
    """No replica (or the provider) could be connected to, or the connection broke before an answer."""

    status = 502


class UpstreamBadResponseError(GatewayError):
    """The replica or the provider answered something that is not usable HTTP/1.1."""

    status = 502


class ProviderError(GatewayError):
    """The provider is unreachable or answered a lookup with an unexpected status."""

    status = 502


class NoReplicaError(GatewayError):
    """The function exists but has no ready replica, and scale from zero is off."""

    status = 503


class ReplicaUnreachableError(GatewayError):
    """No replica of the function could be connected to within ``connect_timeout`` (its network is down)."""

    status = 503
    headers = (("Retry-After", "1"),)


class UpstreamTimeoutError(GatewayError):
    """The replica or the provider did not answer within ``upstream_timeout``."""

    status = 504


class ScaleTimeoutError(GatewayError):
    """No replica became ready within ``scale_from_zero_timeout``."""

    status = 504


class LogsNotSupportedError(GatewayError):
    """The provider has no logs endpoint (it answered 404 or 501)."""

    status = 501


# What each failure of the shared relay is to the gateway.
_FROM_RELAY: Final[dict[type[relay.RelayError], type[GatewayError]]] = {
    relay.BodyTooLargeError: BodyTooLargeError,  # 413
    relay.BodyTimeoutError: RequestTimeoutError,  # 408
    relay.UpstreamBrokenError: UpstreamConnectError,  # 502
    relay.UpstreamBadAnswerError: UpstreamBadResponseError,  # 502
    relay.AnswerTimeoutError: UpstreamTimeoutError,  # 504
}


def from_relay(error: relay.RelayError) -> GatewayError:
    """The gateway's error for a failure of the shared relay, with the same message."""
    return _FROM_RELAY.get(type(error), GatewayError)(str(error))
