"""Replies through Twilio's Messages API with the official SDK, from the business's WhatsApp
number, with a status callback so delivery progress reaches ``POST /twilio-status``.

Timeouts, 429s and 5xx are retried inside the budget (``retries``); any other 4xx (21211
invalid number, 63016 outside the 24-hour window, ...) is final. A retried create can send the
reply twice if Twilio accepted the first attempt but its answer was lost: replies are at least
once, never silently dropped. ``api_base_url`` points the SDK elsewhere (tests use a local
server); Twilio's own is the default.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import requests
from twilio.base.exceptions import TwilioRestException
from twilio.http.http_client import TwilioHttpClient
from twilio.http.response import Response
from twilio.rest import Client

from wa_sessions.replies.sender import SendFailure, SendResult
from wa_sessions.retries import (
    CallFailure,
    Classified,
    FailureReason,
    RetryPolicy,
    call_with_retries,
    parse_retry_after,
)
from wa_sessions.statemachine.models import DeliveryStatus

DEFAULT_API_BASE_URL = "https://api.twilio.com"
_CHANNEL = "whatsapp:"


class _HttpClient(TwilioHttpClient):  # type: ignore[misc]  # the SDK is untyped here
    """The SDK's client, remembering (per thread) the ``Retry-After`` of a 429, which
    ``TwilioRestException`` does not carry."""

    def __init__(self, timeout_seconds: float) -> None:
        super().__init__(timeout=timeout_seconds)
        self.last_retry_after = threading.local()

    def request(self, *args: Any, **kwargs: Any) -> Response:
        self.last_retry_after.value = None
        response: Response = super().request(*args, **kwargs)
        if response.status_code == 429 and response.headers is not None:
            self.last_retry_after.value = parse_retry_after(response.headers.get("Retry-After"))
        return response


class TwilioSender:
    """``OutboundSender`` over the twilio SDK."""

    name = "twilio"

    def __init__(
        self,
        *,
        account_sid: str,
        auth_token: str,
        policy: RetryPolicy,
        status_callback_url: str | None = None,
        api_base_url: str = DEFAULT_API_BASE_URL,
        sleep: Callable[[float], None] | None = None,
    ) -> None:
        self.account_sid = account_sid
        self.policy = policy
        self.status_callback_url = status_callback_url or None
        self.budget_seconds = policy.budget_seconds
        self._sleep = sleep
        self._http = _HttpClient(policy.timeout_seconds)
        self.client = Client(account_sid, auth_token, http_client=self._http)
        # Every REST call of the Api domain is built from this base URL.
        self.client.api.base_url = api_base_url.rstrip("/")
        self._messages = self.client.api.v2010.accounts(account_sid).messages

    def send(self, *, to: str, from_: str, body: str) -> SendResult | SendFailure:
        def attempt() -> SendResult:
            options: dict[str, Any] = {}
            if self.status_callback_url:
                options["status_callback"] = self.status_callback_url
            message = self._messages.create(
                to=_whatsapp(to), from_=_whatsapp(from_), body=body, **options
            )
            return SendResult(
                sid=str(message.sid),
                status=str(message.status or DeliveryStatus.QUEUED.value),
                sent=True,
            )

        kwargs: dict[str, Any] = {"sleep": self._sleep} if self._sleep else {}
        outcome = call_with_retries(attempt, self._classify, self.policy, **kwargs)
        if isinstance(outcome, CallFailure):
            return SendFailure(outcome.reason, outcome.detail, outcome.code, outcome.attempts)
        return outcome.value

    def _classify(self, exc: Exception) -> Classified:
        if isinstance(exc, TwilioRestException):
            status, code = int(exc.status), str(exc.code) if exc.code else None
            if status == 429:
                return Classified(
                    FailureReason.RATE_LIMITED,
                    True,
                    "Twilio rate limit (429)",
                    getattr(self._http.last_retry_after, "value", None),
                    code,
                )
            if status >= 500:
                return Classified(
                    FailureReason.SERVER_ERROR, True, f"Twilio server error ({status})", code=code
                )
            return Classified(
                FailureReason.REJECTED,
                False,
                f"Twilio refused the message ({status}, error {code or 'unknown'})",
                code=code,
            )
        if isinstance(exc, requests.Timeout):
            return Classified(FailureReason.TIMEOUT, True, "Twilio request timed out")
        if isinstance(exc, requests.ConnectionError):
            return Classified(FailureReason.CONNECTION, True, "could not connect to Twilio")
        return Classified(FailureReason.OTHER, False, f"unexpected {type(exc).__name__}")


def _whatsapp(address: str) -> str:
    return address if address.startswith(_CHANNEL) else _CHANNEL + address
