"""One signed POST of an event to the business's endpoint, and what its answer means.

Signed by the Standard Webhooks specification with the ``standardwebhooks`` library:
``webhook-id`` (the event id: the same on every retry and replay), ``webhook-timestamp`` (this
attempt, epoch seconds) and ``webhook-signature`` (``v1,<base64 HMAC-SHA256>`` over
``id.timestamp.body``). 2xx is delivered; 4xx other than 408 and 429 is given up at once (the
receiver refuses the event itself: sending it again will not help); anything else, a timeout
or a connection error is retried, after the ``Retry-After`` the receiver asked for if longer.
Redirects are not followed (a 3xx is retried like a 5xx: the URL is the configured one).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from enum import StrEnum

import aiohttp
from standardwebhooks import Webhook

#: Statuses that mean "later": the receiver timed out or is rate limiting.
RETRIED_CLIENT_STATUSES = frozenset({408, 429})
USER_AGENT = "wa-sessions-events/1"


class Verdict(StrEnum):
    DELIVERED = "delivered"
    RETRY = "retry"
    GIVE_UP = "give_up"


@dataclass(frozen=True, slots=True)
class Attempt:
    """One attempt's outcome: the verdict, a short reason for logs and records, and the wait
    the receiver asked for (``Retry-After``, seconds) if any."""

    verdict: Verdict
    reason: str
    retry_after_seconds: float | None = None


def retry_after_seconds(value: str | None, now: datetime) -> float | None:
    """A ``Retry-After`` header (seconds or an HTTP date) as seconds from ``now``."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - now).total_seconds())


def judge(status: int, retry_after: float | None) -> Attempt:
    """What an HTTP answer means for the event."""
    if 200 <= status < 300:
        return Attempt(Verdict.DELIVERED, f"HTTP {status}")
    if 400 <= status < 500 and status not in RETRIED_CLIENT_STATUSES:
        return Attempt(Verdict.GIVE_UP, f"HTTP {status}: refused by the receiver")
    return Attempt(Verdict.RETRY, f"HTTP {status}", retry_after)


class WebhookSender:
    """POSTs signed events to one URL over one aiohttp session (created on first use, on the
    running event loop)."""

    def __init__(self, url: str, secret: str, timeout_seconds: float) -> None:
        self.url = url
        self._webhook = Webhook(secret)
        self._timeout = aiohttp.ClientTimeout(total=timeout_seconds)
        self._session: aiohttp.ClientSession | None = None

    def headers(self, event_id: str, body: str, at: datetime) -> dict[str, str]:
        """The Standard Webhooks headers of one attempt made at ``at``."""
        return {
            "content-type": "application/json",
            "user-agent": USER_AGENT,
            "webhook-id": event_id,
            "webhook-timestamp": str(int(at.timestamp())),
            "webhook-signature": self._webhook.sign(event_id, at, body),
        }

    async def send(self, event_id: str, body: str) -> Attempt:
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=self._timeout)
        now = datetime.now(UTC)
        try:
            async with self._session.post(
                self.url,
                data=body.encode(),
                headers=self.headers(event_id, body, now),
                allow_redirects=False,
            ) as response:
                await response.read()
                wait = retry_after_seconds(response.headers.get("Retry-After"), now)
                return judge(response.status, wait)
        except TimeoutError:
            return Attempt(Verdict.RETRY, "timeout")
        except aiohttp.ClientError as exc:
            return Attempt(Verdict.RETRY, f"connection: {type(exc).__name__}")

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
            # aiohttp's advice: let the connections' transports close before the loop ends.
            await asyncio.sleep(0)
