"""LogTide's ingest endpoint as a typed client: one POST in, one :class:`Outcome` out.

Every answer LogTide gives (see ``docs/shipper.md``, "What LogTide's answers mean") maps to
one :class:`Kind`; nothing here retries, sleeps or touches Kafka, so every answer is
unit-tested with ``httpx.MockTransport``.  The shipper decides what to do with each kind.
LogTide has no partial acceptance: a 2xx means every entry of the batch was stored.
"""

from __future__ import annotations

import email.utils
import enum
import random
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

import httpx
import orjson

from logtide_kafka._contract import INGEST_PATH, QUOTA_CODE
from logtide_kafka._redact import REDACTED

__all__ = [
    "BASE_BACKOFF",
    "MAX_RETRY_AFTER",
    "Kind",
    "LogTideClient",
    "Outcome",
    "backoff",
    "ingest_url",
    "retry_after",
    "retry_delay",
]

#: The first retry's backoff step, and the floor under any ``Retry-After`` (``0`` included):
#: a server asking for an immediate retry never turns the shipper into a hot loop.
BASE_BACKOFF: Final = 0.5
#: The longest ``Retry-After`` obeyed (a larger one is cut to this).
MAX_RETRY_AFTER: Final = 3600.0


class Kind(enum.Enum):
    """What one POST came to."""

    #: 2xx: every entry of the batch was stored.
    ACCEPTED = "accepted"
    #: 400/422: some entry breaks LogTide's schema; nothing was stored.  Bisect.
    INVALID = "invalid"
    #: 413: the body is too large; nothing was stored.  Split.
    TOO_LARGE = "too_large"
    #: 408, 429 (rate limit), 5xx or a transport error: the same request may pass later.
    RETRY = "retry"
    #: 401/403 (key), the monthly-quota 429, 404 and other answers no retry can fix.
    FATAL = "fatal"


@dataclass(frozen=True, slots=True)
class Outcome:
    """One answer, typed.  ``detail`` is a human-readable cause without the API key;
    ``status`` is None for a transport error; ``retry_after`` is LogTide's ``Retry-After``
    in seconds (only for :attr:`Kind.RETRY`, None when absent or unreadable)."""

    kind: Kind
    detail: str = ""
    status: int | None = None
    retry_after: float | None = None

    @property
    def suspect(self) -> bool:
        """A retryable failure that the batch's content may cause (5xx, transport error),
        as opposed to a rate limit or a timeout that says nothing about the entries."""
        return self.kind is Kind.RETRY and self.status not in (408, 429)


class LogTideClient:
    """Posts ready-made bodies to ``{api_url}/api/v1/ingest``; thread-safe (one httpx
    connection pool).  ``transport``: an ``httpx`` transport (``httpx.MockTransport`` in
    tests); default, the network."""

    def __init__(
        self,
        api_url: str,
        api_key: str,
        *,
        timeout: float = 30.0,
        pool_size: int = 8,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.url = ingest_url(api_url)
        self._key = api_key
        self._client = httpx.Client(
            timeout=httpx.Timeout(timeout, connect=min(10.0, timeout)),
            headers={
                "Content-Type": "application/json",
                "User-Agent": "logtide-kafka-shipper",
                "X-API-Key": api_key,
            },
            limits=httpx.Limits(max_connections=pool_size, max_keepalive_connections=pool_size),
            follow_redirects=False,
            transport=transport,
        )

    def post(self, body: bytes) -> Outcome:
        """POST one ``{"logs": [...]}`` body; never raises for an HTTP or transport error."""
        try:
            response = self._client.post(self.url, content=body)
        except httpx.HTTPError as exc:
            return Outcome(Kind.RETRY, self._redact(f"request to LogTide failed: {_name(exc)}"))
        return self._outcome(response)

    def close(self) -> None:
        self._client.close()

    def _outcome(self, response: httpx.Response) -> Outcome:
        status = response.status_code
        answer = self._redact(f"{status}{_error_text(response)}")
        if 200 <= status < 300:
            return Outcome(Kind.ACCEPTED, status=status)
        if status in (400, 422):
            return Outcome(Kind.INVALID, f"LogTide answered {answer}", status)
        if status == 413:
            return Outcome(Kind.TOO_LARGE, "LogTide answered 413: the entry is too large", status)
        if status in (401, 403):
            return Outcome(Kind.FATAL, f"LogTide refused the API key ({answer})", status)
        if status == 429 and _json(response).get("code") == QUOTA_CODE:
            text = f"LogTide's monthly event quota is exhausted (429, {QUOTA_CODE})"
            return Outcome(Kind.FATAL, text, status)
        if status in (408, 429) or status >= 500:
            after = retry_after(response.headers.get("Retry-After"))
            return Outcome(Kind.RETRY, f"LogTide answered {answer}", status, after)
        text = f"unexpected answer {answer} from {self.url}; check the API URL"
        return Outcome(Kind.FATAL, text, status)

    def _redact(self, text: str) -> str:
        return text.replace(self._key, REDACTED) if self._key else text


def ingest_url(api_url: str) -> str:
    """The ingest endpoint for a base URL (or the endpoint itself)."""
    base = api_url.rstrip("/")
    return base if base.endswith(INGEST_PATH) else base + INGEST_PATH


def backoff(attempt: int, max_backoff: float, rng: random.Random) -> float:
    """Exponential from :data:`BASE_BACKOFF`, capped at ``max_backoff``, with jitter (half
    to all of the step)."""
    step = min(max_backoff, BASE_BACKOFF * 2 ** min(attempt, 30))
    return rng.uniform(step / 2, step)


def retry_delay(outcome: Outcome, attempt: int, max_backoff: float, rng: random.Random) -> float:
    """How long to wait before repeating a request that came to ``outcome``: LogTide's
    ``Retry-After`` when it gave one (at least :data:`BASE_BACKOFF`, at most
    :data:`MAX_RETRY_AFTER`), else :func:`backoff`."""
    if outcome.retry_after is not None:
        return min(max(outcome.retry_after, BASE_BACKOFF), MAX_RETRY_AFTER)
    return backoff(attempt, max_backoff, rng)


def retry_after(value: str | None) -> float | None:
    """Seconds from a ``Retry-After`` header (seconds or an HTTP date), or None."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


def _name(exc: Exception) -> str:
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


def _json(response: httpx.Response) -> dict[str, Any]:
    try:
        document = orjson.loads(response.content)
    except orjson.JSONDecodeError:
        return {}
    return document if isinstance(document, dict) else {}


def _error_text(response: httpx.Response) -> str:
    """``": <error>"`` from a LogTide error body, or nothing."""
    document = _json(response)
    error = document.get("error") or document.get("message")
    if not isinstance(error, str):
        return ""
    details = document.get("details")
    if details is not None:
        error += " " + orjson.dumps(details).decode()[:300]
    return f": {error}"
