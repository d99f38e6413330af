"""Failures of a function invocation, each mapped to one status at the HTTP edge (app.py)."""

from __future__ import annotations


class InvocationError(Exception):
    """Base: ``status`` is what the caller gets, ``str(self)`` the one-line body."""

    status = 500


class FunctionError(InvocationError):
    """The function itself failed (non-zero exit, an exception in the handler)."""

    status = 500


class BadRequestError(InvocationError):
    """The request cannot be given to the function (e.g. a body that is not the JSON object `run` takes)."""

    status = 400


class UpstreamError(InvocationError):
    """The function process answered badly or dropped the connection."""

    status = 502


class FunctionNotReadyError(InvocationError):
    """The function process is not accepting connections (starting, or restarting after a crash)."""

    status = 503


class FunctionTimeoutError(InvocationError):
    """The invocation ran past min(X-Timeout, exec_timeout)."""

    status = 504


class StartupError(Exception):
    """The watchdog cannot start: a handler that does not load, a static_path that is not a directory.

    Like a SettingError, the process exits with status 2 and the message.
    """
