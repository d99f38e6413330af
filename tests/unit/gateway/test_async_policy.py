"""Retry annotations, backoff maths, Retry-After, and the callback URL check."""

from __future__ import annotations

import email.utils

import pytest

from gateway.callbacks import CallbackUrlError, check_callback_url
from gateway.retry_policy import (
    CALLBACK_ATTEMPTS,
    DEFAULT_CODES,
    RETRY_AFTER_MAX_S,
    RetryPolicy,
    backoff,
    callback_retries,
    concurrency,
    retry_after,
)


def test_defaults_are_one_attempt_and_the_openfaas_codes() -> None:
    policy = RetryPolicy.from_annotations({})
    assert policy == RetryPolicy(1, frozenset({429, 502, 500, 504, 408}), 10.0, 120.0)
    assert not policy.retries(500, 1)


def test_annotations_are_read_with_go_durations() -> None:
    policy = RetryPolicy.from_annotations(
        {
            "com.openfaas.retry.attempts": "5",
            "com.openfaas.retry.codes": "500, 503",
            "com.openfaas.retry.min_wait": "250ms",
            "com.openfaas.retry.max_wait": "1m30s",
        }
    )
    assert policy == RetryPolicy(5, frozenset({500, 503}), 0.25, 90.0)
    assert policy.retries(503, 4)
    assert not policy.retries(503, 5)  # the fifth attempt was the last
    assert not policy.retries(429, 1)  # not in this function's codes


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("com.openfaas.retry.attempts", "many"),
        ("com.openfaas.retry.codes", "500,abc"),
        ("com.openfaas.retry.codes", "700"),
        ("com.openfaas.retry.min_wait", "-1s"),
        ("com.openfaas.retry.max_wait", "soon"),
    ],
)
def test_a_value_that_does_not_parse_keeps_the_default(key: str, value: str) -> None:
    assert RetryPolicy.from_annotations({key: value}) == RetryPolicy()


def test_max_wait_below_min_wait_is_raised_to_it() -> None:
    policy = RetryPolicy.from_annotations({"com.openfaas.retry.min_wait": "5s", "com.openfaas.retry.max_wait": "1s"})
    assert (policy.min_wait_s, policy.max_wait_s) == (5.0, 5.0)


def test_backoff_doubles_within_equal_jitter_and_stops_at_max_wait() -> None:
    low = [backoff(n, 1.0, 10.0, rand=lambda: 0.0) for n in range(1, 7)]
    high = [backoff(n, 1.0, 10.0, rand=lambda: 0.999999) for n in range(1, 7)]
    assert low == [0.5, 1.0, 2.0, 4.0, 5.0, 5.0]  # half the step
    assert [round(h, 3) for h in high] == [1.0, 2.0, 4.0, 8.0, 10.0, 10.0]  # the whole step, capped
    assert backoff(50, 1.0, 10.0, rand=lambda: 0.5) == 7.5  # no overflow however many attempts


def test_retry_after_is_a_floor_and_is_bounded() -> None:
    assert backoff(1, 0.1, 1.0, rand=lambda: 0.0, floor_s=3.0) == 3.0
    assert backoff(1, 0.1, 1.0, rand=lambda: 0.0, floor_s=1e9) == RETRY_AFTER_MAX_S
    policy = RetryPolicy(attempts=3, min_wait_s=0.1, max_wait_s=1.0)
    assert policy.wait(1, 2.0) >= 2.0


def test_retry_after_is_read_on_429_and_503_only() -> None:
    now = 1_000_000.0
    assert retry_after(429, "7", now) == 7.0
    assert retry_after(503, email.utils.formatdate(now + 30, usegmt=True), now) == 30.0
    assert retry_after(503, email.utils.formatdate(now - 30, usegmt=True), now) == 0.0
    assert retry_after(500, "7", now) is None
    assert retry_after(429, "soon", now) is None
    assert retry_after(429, None, now) is None


def test_concurrency_annotation() -> None:
    assert concurrency({}, 4) == 4
    assert concurrency({"com.pyfaasd.async.concurrency": "1"}, 4) == 1
    assert concurrency({"com.pyfaasd.async.concurrency": "0"}, 4) == 1
    assert concurrency({"com.pyfaasd.async.concurrency": "x"}, 4) == 4


def test_callbacks_retry_on_no_answer_5xx_408_429_and_are_bounded() -> None:
    assert callback_retries(None, 1)
    assert callback_retries(503, 1)
    assert callback_retries(429, 1)
    assert not callback_retries(404, 1)  # the receiver refuses it: trying again changes nothing
    assert not callback_retries(None, CALLBACK_ATTEMPTS)


@pytest.mark.parametrize("url", ["http://127.0.0.1:8000/cb", "https://example.com/a?b=c", "HTTP://host"])
def test_good_callback_urls(url: str) -> None:
    assert check_callback_url(f"  {url} ") == url


@pytest.mark.parametrize("url", ["", "ftp://h/", "h/x", "http:///x", "http://h:0/", "http://h:x/", "http://h/\x01"])
def test_bad_callback_urls(url: str) -> None:
    with pytest.raises(CallbackUrlError, match=r"^X-Callback-Url: "):
        check_callback_url(url)


def test_default_codes_are_the_openfaas_ones() -> None:
    assert frozenset({429, 502, 500, 504, 408}) == DEFAULT_CODES
