"""Every answer of LogTide's ingest endpoint, typed, with ``httpx.MockTransport`` (no Kafka)."""

from __future__ import annotations

import random
import time
from collections.abc import Callable

import httpx
import orjson
import pytest

from logtide_kafka._contract import QUOTA_CODE
from logtide_kafka.pipeline._logtide_client import (
    BASE_BACKOFF,
    MAX_RETRY_AFTER,
    Kind,
    LogTideClient,
    Outcome,
    retry_delay,
)

KEY = "lp_secret_key_0123456789"
BODY = b'{"logs":[{"time":"2025-01-01T00:00:00Z","service":"s","level":"info","message":"m"}]}'


def client_for(handler: Callable[[httpx.Request], httpx.Response]) -> LogTideClient:
    return LogTideClient("http://logtide.test/", KEY, transport=httpx.MockTransport(handler))


def answer(status: int, body: object = None, **headers: str) -> Outcome:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        content = b"" if body is None else orjson.dumps(body)
        return httpx.Response(status, content=content, headers=headers)

    outcome = client_for(handler).post(BODY)
    [request] = seen
    assert request.url == "http://logtide.test/api/v1/ingest"
    assert request.headers["X-API-Key"] == KEY
    assert request.headers["Content-Type"] == "application/json"
    assert request.content == BODY
    assert KEY not in outcome.detail
    return outcome


def test_200_is_accepted() -> None:
    outcome = answer(200, {"received": 1, "timestamp": "2025-01-01T00:00:00.000Z"})
    assert outcome == Outcome(Kind.ACCEPTED, status=200)
    assert not outcome.suspect


def test_400_is_invalid_with_logtide_details() -> None:
    details = {"logs": {"0": {"level": {"_errors": ["Invalid enum value"]}}}}
    outcome = answer(400, {"error": "Validation error", "details": details})
    assert outcome.kind is Kind.INVALID
    assert outcome.status == 400
    assert "LogTide answered 400: Validation error" in outcome.detail
    assert "Invalid enum value" in outcome.detail


def test_422_is_invalid() -> None:
    outcome = answer(422, {"error": "Unprocessable Entity"})
    assert (outcome.kind, outcome.status) == (Kind.INVALID, 422)
    assert outcome.detail == "LogTide answered 422: Unprocessable Entity"


def test_413_is_too_large() -> None:
    outcome = answer(413, {"code": "FST_ERR_CTP_BODY_TOO_LARGE"})
    assert (outcome.kind, outcome.status) == (Kind.TOO_LARGE, 413)
    assert "413" in outcome.detail


def test_415_is_fatal_naming_the_url() -> None:
    outcome = answer(415, {"error": "Unsupported Media Type"})
    assert outcome.kind is Kind.FATAL
    assert "unexpected answer 415" in outcome.detail
    assert "http://logtide.test/api/v1/ingest" in outcome.detail


@pytest.mark.parametrize("status", [401, 403])
def test_bad_key_is_fatal_without_the_key(status: int) -> None:
    outcome = answer(status, {"error": f"Unauthorized: bad key {KEY}"})
    assert outcome.kind is Kind.FATAL
    assert outcome.detail.startswith(f"LogTide refused the API key ({status}: Unauthorized")
    assert "bad key [REDACTED]" in outcome.detail  # answer() checks the key itself is gone


def test_404_is_fatal() -> None:
    outcome = answer(404, {"error": "Not Found"})
    assert outcome.kind is Kind.FATAL
    assert "check the API URL" in outcome.detail


def test_quota_429_is_fatal() -> None:
    outcome = answer(429, {"error": "quota", "code": QUOTA_CODE})
    assert outcome.kind is Kind.FATAL
    assert QUOTA_CODE in outcome.detail


def test_rate_limit_429_with_seconds() -> None:
    outcome = answer(429, {"error": "Too Many Requests"}, **{"retry-after": "7"})
    assert (outcome.kind, outcome.status, outcome.retry_after) == (Kind.RETRY, 429, 7.0)
    assert not outcome.suspect  # a rate limit says nothing about the entries
    assert retry_delay(outcome, 0, 30.0, random.Random(1)) == 7.0


def test_rate_limit_429_with_an_http_date() -> None:
    when = time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime(time.time() + 20))
    outcome = answer(429, {"error": "Too Many Requests"}, **{"Retry-After": when})
    assert outcome.kind is Kind.RETRY
    assert outcome.retry_after is not None
    assert 15 <= outcome.retry_after <= 21


def test_retry_after_zero_is_floored_not_a_hot_loop() -> None:
    outcome = answer(429, {"error": "Too Many Requests"}, **{"Retry-After": "0"})
    assert outcome.retry_after == 0.0
    rng = random.Random(2)
    assert all(retry_delay(outcome, n, 30.0, rng) >= BASE_BACKOFF for n in range(10))
    past = answer(503, None, **{"Retry-After": "Wed, 21 Oct 2015 07:28:00 GMT"})
    assert retry_delay(past, 0, 30.0, rng) == BASE_BACKOFF
    huge = answer(503, None, **{"Retry-After": "999999"})
    assert retry_delay(huge, 0, 30.0, rng) == MAX_RETRY_AFTER


def test_429_without_retry_after_backs_off_exponentially() -> None:
    outcome = answer(429, {"error": "Too Many Requests"})
    assert outcome.retry_after is None
    rng = random.Random(3)
    first = [retry_delay(outcome, 0, 30.0, rng) for _ in range(20)]
    later = [retry_delay(outcome, 6, 30.0, rng) for _ in range(20)]
    assert all(BASE_BACKOFF / 2 <= d <= BASE_BACKOFF for d in first)
    assert min(later) > max(first)
    assert max(retry_delay(outcome, 50, 4.0, rng) for _ in range(20)) <= 4.0


@pytest.mark.parametrize("status", [500, 502, 503, 504])
def test_5xx_is_a_suspect_retry(status: int) -> None:
    outcome = answer(status, {"error": "Internal Server Error"})
    assert (outcome.kind, outcome.status) == (Kind.RETRY, status)
    assert outcome.suspect
    assert f"LogTide answered {status}: Internal Server Error" == outcome.detail


def test_408_is_a_retry_but_not_suspect() -> None:
    outcome = answer(408)
    assert outcome.kind is Kind.RETRY
    assert not outcome.suspect


def test_non_json_error_body() -> None:
    outcome = answer(502)
    assert outcome.detail == "LogTide answered 502"


@pytest.mark.parametrize(
    "error", [httpx.ConnectError("connection refused"), httpx.ReadTimeout("timed out")]
)
def test_transport_error_is_a_suspect_retry(error: httpx.HTTPError) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise error

    outcome = client_for(handler).post(BODY)
    assert outcome.kind is Kind.RETRY
    assert outcome.status is None
    assert outcome.suspect
    assert outcome.detail.startswith(f"request to LogTide failed: {type(error).__name__}")
