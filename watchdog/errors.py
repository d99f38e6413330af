"""Failures of a function invocation, each mapped to one status at the HTTP edge (app.py).

The shared relay's failures (servicekit.relay, http mode) become these through :func:`from_relay`.
"""

from __future__ import annotations

from typing import Final

from servicekit import relay


class InvocationError(Exception):
    """Base: ``status`` is what the caller gets, ``str(self)`` the one-line body."""

    status = 500


class FunctionError(InvocationError):
    """The function itself failed (non-zero exit, an exception in the handler)."""

    status = 500


class BadRequestError(InvocationError):
    """The request cannot be given to the function (e.g. a body that is not the JSON object `run` takes)."""

    status = 400


class RequestTimeoutError(InvocationError):
    """The caller did not send its request body within ``read_timeout``."""

    status = 408


class BodyTooLargeError(InvocationError):
    """The request body is over ``max_body_bytes``."""

    status = 413


class UpstreamError(InvocationError):
    """The function process answered badly or dropped the connection."""

    status = 502


class FunctionNotReadyError(InvocationError):
    """The function process is not accepting connections (starting, or restarting after a crash)."""

    status = 503


class FunctionTimeoutError(InvocationError):
    """The invocation ran past min(X-Timeout, exec_timeout)."""

    status = 504


# What each failure of the shared relay is to the watchdog.
_FROM_RELAY: Final[dict[type[relay.RelayError], type[InvocationError]]] = {
    relay.BodyTooLargeError: BodyTooLargeError,  # 413
    relay.BodyTimeoutError: RequestTimeoutError,  # 408
    relay.UpstreamBrokenError: UpstreamError,  # 502
    relay.UpstreamBadAnswerError: UpstreamError,  # 502
    relay.AnswerTimeoutError: FunctionTimeoutError,  # 504
}


def from_relay(error: relay.RelayError) -> InvocationError:
    """The watchdog's error for a failure of the shared relay, with the same message."""
    return _FROM_RELAY.get(type(error), InvocationError)(str(error))


class StartupError(Exception):
    """The watchdog cannot start: a handler that does not load, a static_path that is not a directory.

    Like a SettingError, the process exits with status 2 and the message.
    """
