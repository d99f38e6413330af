"""How an async call is retried: OpenFaaS Pro's annotations, exponential backoff with jitter, ``Retry-After``.

Annotations of the function (the names OpenFaaS Pro reads, docs/openfaas-pro/retries.md):

| annotation | default | meaning |
|---|---|---|
| ``com.openfaas.retry.attempts`` | ``1`` | attempts in all (1: no retry) |
| ``com.openfaas.retry.codes`` | ``429,502,500,504,408`` | statuses that are retried (comma-separated) |
| ``com.openfaas.retry.min_wait`` | ``10s`` | wait before the first retry (Go duration) |
| ``com.openfaas.retry.max_wait`` | ``2m`` | longest wait between two attempts |

The wait before attempt ``n + 1`` is drawn uniformly from ``[w/2, w]`` with ``w = min(max_wait, min_wait * 2**(n-1))``
("equal jitter": never less than half the exponential step, so retries of many calls spread out without any
retrying at once). A ``Retry-After`` on a 429 or 503 (seconds or an HTTP date) is honoured: the wait is at least
that long, and at most :data:`RETRY_AFTER_MAX_S`.

Also here: :func:`concurrency` (``com.pyfaasd.async.concurrency``) and the callback's own bounded backoff.
"""

from __future__ import annotations

import email.utils
import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Final, TypeVar

import structlog

from servicekit.settings import SettingError, parse_duration

log = structlog.get_logger("gateway.async")

ATTEMPTS: Final = "com.openfaas.retry.attempts"
CODES: Final = "com.openfaas.retry.codes"
MIN_WAIT: Final = "com.openfaas.retry.min_wait"
MAX_WAIT: Final = "com.openfaas.retry.max_wait"
CONCURRENCY: Final = "com.pyfaasd.async.concurrency"

DEFAULT_CODES: Final = frozenset({429, 502, 500, 504, 408})
DEFAULT_MIN_WAIT_S: Final = 10.0
DEFAULT_MAX_WAIT_S: Final = 120.0
ATTEMPTS_MAX: Final = 100
RETRY_AFTER_MAX_S: Final = 3600.0  # a Retry-After past this is read as this
RETRY_AFTER_STATUSES: Final = frozenset({429, 503})

# Callbacks: a receiver that fails (no connection, 5xx, 408, 429, a timeout) is tried again, 6 times in all,
# 1 s doubling to 60 s apart (about 2 minutes in all); one that refuses the callback with another 4xx is not.
CALLBACK_ATTEMPTS: Final = 6
CALLBACK_MIN_WAIT_S: Final = 1.0
CALLBACK_MAX_WAIT_S: Final = 60.0

Random = Callable[[], float]  # uniform in [0, 1)
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    attempts: int = 1
    codes: frozenset[int] = DEFAULT_CODES
    min_wait_s: float = DEFAULT_MIN_WAIT_S
    max_wait_s: float = DEFAULT_MAX_WAIT_S

    @classmethod
    def from_annotations(cls, annotations: Mapping[str, str], function: str = "") -> RetryPolicy:
        """The policy a function's annotations ask for; a value that does not parse keeps its default (logged)."""
        attempts = _read(annotations, ATTEMPTS, function, lambda t: max(1, min(ATTEMPTS_MAX, int(t))), 1)
        codes = _read(annotations, CODES, function, _codes, DEFAULT_CODES)
        min_wait = _read(annotations, MIN_WAIT, function, _duration, DEFAULT_MIN_WAIT_S)
        max_wait = _read(annotations, MAX_WAIT, function, _duration, DEFAULT_MAX_WAIT_S)
        return cls(attempts, codes, min_wait, max(min_wait, max_wait))

    def retries(self, status: int, attempts: int) -> bool:
        """Whether a call that got ``status`` on its ``attempts``-th attempt is tried again."""
        return attempts < self.attempts and status in self.codes

    def wait(self, attempts: int, retry_after_s: float | None = None, rand: Random = random.random) -> float:
        """Seconds to wait after the ``attempts``-th attempt failed."""
        return backoff(attempts, self.min_wait_s, self.max_wait_s, rand, retry_after_s)


def backoff(
    attempts: int, min_wait_s: float, max_wait_s: float, rand: Random = random.random, floor_s: float | None = None
) -> float:
    """Equal-jitter exponential backoff after ``attempts`` failures, at least ``floor_s`` (a Retry-After)."""
    step = min(max_wait_s, min_wait_s * 2.0 ** max(0, attempts - 1))
    wait = step / 2 + rand() * step / 2
    if floor_s is not None:
        wait = max(wait, min(floor_s, RETRY_AFTER_MAX_S))
    return wait


def retry_after(status: int, value: str | None, now: float) -> float | None:
    """Seconds a 429 or 503 asks to wait (``Retry-After``: seconds or an HTTP date), else None."""
    if status not in RETRY_AFTER_STATUSES or not value:
        return None
    text = value.strip()
    if text.isdigit():
        return float(int(text))
    try:
        when = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        return None
    return max(0.0, when.timestamp() - now)


def concurrency(annotations: Mapping[str, str], default: int, function: str = "") -> int:
    """How many calls of a function run at once: ``com.pyfaasd.async.concurrency``, else ``default``."""
    return _read(annotations, CONCURRENCY, function, lambda t: max(1, min(1024, int(t))), default)


def callback_retries(status: int | None, attempts: int) -> bool:
    """Whether a callback that failed with ``status`` (None: no answer) on its ``attempts``-th try is retried."""
    if attempts >= CALLBACK_ATTEMPTS:
        return False
    return status is None or status >= 500 or status in (408, 429)


def _read(annotations: Mapping[str, str], key: str, function: str, parse: Callable[[str], T], default: T) -> T:
    text = annotations.get(key)
    if text is None or not str(text).strip():
        return default
    try:
        return parse(str(text).strip())
    except (ValueError, SettingError):
        log.warning("async_annotation_ignored", function=function, annotation=key, value=str(text)[:100])
        return default


def _codes(text: str) -> frozenset[int]:
    codes = frozenset(int(part) for part in text.split(",") if part.strip())
    if not codes or any(not 100 <= code <= 599 for code in codes):
        raise ValueError(text)
    return codes


def _duration(text: str) -> float:
    return parse_duration(MIN_WAIT, text)
