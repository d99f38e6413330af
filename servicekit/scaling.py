"""The ``com.openfaas.scale.*`` labels of a function, read one way by the provider and the gateway.

The provider checks them when a function is deployed or updated (a bad value is a 400 naming the label); the
gateway's autoscaler reads them into a :class:`ScaleLabels` on every decision. The names and the defaults are
OpenFaaS Pro's (docs.openfaas.com/architecture/autoscaling); where a function sets neither ``type`` nor
``target``, pyfaasd scales as OpenFaaS CE users know it: on requests per second, about 5 per replica.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

from servicekit.settings import SettingError, parse_bool, parse_duration

PREFIX: Final = "com.openfaas.scale."
MIN: Final = PREFIX + "min"
MAX: Final = PREFIX + "max"
TYPE: Final = PREFIX + "type"
TARGET: Final = PREFIX + "target"
TARGET_PROPORTION: Final = PREFIX + "target-proportion"
ZERO: Final = PREFIX + "zero"
ZERO_DURATION: Final = PREFIX + "zero-duration"
DOWN_WINDOW: Final = PREFIX + "down.window"

DEFAULT_TARGET: Final = 50.0  # OpenFaaS Pro's, for a function that names a type but no target
CE_TARGET_RPS: Final = 5.0  # requests per second per replica, for a function that names neither
DEFAULT_PROPORTION: Final = 0.90


class ScaleType(enum.StrEnum):
    RPS = "rps"  # requests per second started through the gateway
    CAPACITY = "capacity"  # requests in flight
    CPU = "cpu"  # milli-CPUs used, from the engine's container stats


class ScaleLabelError(ValueError):
    """A ``com.openfaas.scale.*`` label has a value that cannot be used; the message names the label."""


@dataclass(frozen=True, slots=True)
class ScaleLabels:
    """What a function's labels ask of the autoscaler; ``None`` where the label is absent."""

    minimum: int = 1
    maximum: int | None = None  # the platform's PYFAASD_MAX_REPLICAS when None
    type: ScaleType = ScaleType.RPS
    target: float = CE_TARGET_RPS
    proportion: float = DEFAULT_PROPORTION
    zero: bool = False
    zero_duration_s: float | None = None  # PYFAASD_SCALE_ZERO_DURATION when None
    down_window_s: float | None = None  # PYFAASD_SCALE_DOWN_WINDOW when None
    typed: bool = False  # the function named a type or a target (False: the CE-like default)


def parse_labels(labels: Mapping[str, str] | None, max_replicas: int) -> ScaleLabels:
    """The scaling labels of a function; ScaleLabelError names the first label that is wrong."""
    labels = labels or {}
    minimum = _whole(labels, MIN, 0, max_replicas)
    maximum = _whole(labels, MAX, 1, None)
    low = 1 if minimum is None else max(minimum, 1)
    if maximum is not None and maximum < low:
        raise ScaleLabelError(f"labels.{MAX}: {maximum} is below {MIN} ({low})")
    kind_text = labels.get(TYPE)
    kind = ScaleType.RPS
    if kind_text is not None:
        try:
            kind = ScaleType(kind_text.strip().lower())
        except ValueError:
            choices = ", ".join(t.value for t in ScaleType)
            raise ScaleLabelError(f"labels.{TYPE}: {kind_text!r} is not one of {choices}") from None
    target = _number(labels, TARGET)
    typed = kind_text is not None or target is not None
    if target is None:
        target = DEFAULT_TARGET if typed else CE_TARGET_RPS
    proportion = _number(labels, TARGET_PROPORTION)
    zero_text = labels.get(ZERO)
    try:
        zero = parse_bool(ZERO, zero_text) if zero_text is not None else False
    except SettingError as e:
        raise ScaleLabelError(f"labels.{e}") from None
    return ScaleLabels(
        minimum=low,
        maximum=maximum,
        type=kind,
        target=target,
        proportion=DEFAULT_PROPORTION if proportion is None else proportion,
        zero=zero,
        zero_duration_s=_duration(labels, ZERO_DURATION),
        down_window_s=_duration(labels, DOWN_WINDOW),
        typed=typed,
    )


def _whole(labels: Mapping[str, str], name: str, low: int, high: int | None) -> int | None:
    text = labels.get(name)
    if text is None:
        return None
    try:
        value = int(text.strip())
    except ValueError:
        raise ScaleLabelError(f"labels.{name}: {text!r} is not a whole number") from None
    if value < low or (high is not None and value > high):
        bound = f"between {low} and {high}" if high is not None else f"at least {low}"
        raise ScaleLabelError(f"labels.{name}: {value} must be {bound}")
    return value


def _number(labels: Mapping[str, str], name: str) -> float | None:
    text = labels.get(name)
    if text is None:
        return None
    try:
        value = float(text.strip())
    except ValueError:
        raise ScaleLabelError(f"labels.{name}: {text!r} is not a number") from None
    if not (value > 0 and math.isfinite(value)):
        raise ScaleLabelError(f"labels.{name}: {text!r} must be a number above 0")
    return value


def _duration(labels: Mapping[str, str], name: str) -> float | None:
    text = labels.get(name)
    if text is None:
        return None
    try:
        seconds = parse_duration(name, text)
    except SettingError as e:
        raise ScaleLabelError(f"labels.{e}") from None
    if seconds <= 0:
        raise ScaleLabelError(f"labels.{name}: {text!r} must be a duration above zero (like 15m or 90s)")
    return seconds
