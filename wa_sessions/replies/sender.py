"""The role of whatever delivers a reply to a customer, and the sender used without Twilio
credentials: the reply is only recorded in the session, so development and the demo need no
account."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

from wa_sessions.retries import FailureReason
from wa_sessions.statemachine.models import DeliveryStatus

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class SendResult:
    """A reply handed over: Twilio's MessageSid (None when nothing was sent), the delivery
    status it starts from, and whether it really went out."""

    sid: str | None
    status: str
    sent: bool


@dataclass(frozen=True, slots=True)
class SendFailure:
    """A reply that did not go out. ``code`` is Twilio's error code when it gave one (e.g.
    63016: outside the 24-hour window; 21211: invalid number)."""

    reason: FailureReason
    detail: str
    code: str | None = None
    attempts: int = 1


class OutboundSender(Protocol):
    """Sends a WhatsApp message from the business number to a customer: free-form text
    (inside the 24-hour window) or an approved template by its Content SID (any time)."""

    @property
    def name(self) -> str:
        """The ``sender`` metric label (``twilio``, ``log``)."""
        ...

    @property
    def budget_seconds(self) -> float:
        """Longest a send may take, retries included; the drain extends its lease by this."""
        ...

    async def send(self, *, to: str, from_: str, body: str) -> SendResult | SendFailure:
        """Runs on the worker's event loop: a remote sender awaits its API, never blocks."""
        ...

    async def send_template(
        self, *, to: str, from_: str, content_sid: str, variables: Mapping[str, str]
    ) -> SendResult | SendFailure:
        """An approved WhatsApp template (Twilio's Content API) with its variables."""
        ...


@dataclass(frozen=True, slots=True)
class LogSender:
    """Records replies without sending them (no Twilio credentials configured)."""

    name: str = "log"
    budget_seconds: float = 0.0

    async def send(self, *, to: str, from_: str, body: str) -> SendResult | SendFailure:
        # Neither the number nor the text goes to the log: a reply quotes the customer's order
        # (item names as they typed them). The session's history holds the reply.
        # DEBUG: at INFO this line cost a measurable share of worker CPU per message.
        log.debug("reply recorded, not sent (no Twilio credentials): %d characters", len(body))
        return SendResult(sid=None, status=DeliveryStatus.NOT_SENT.value, sent=False)

    async def send_template(
        self, *, to: str, from_: str, content_sid: str, variables: Mapping[str, str]
    ) -> SendResult | SendFailure:
        log.debug("template %s recorded, not sent (no Twilio credentials)", content_sid)
        return SendResult(sid=None, status=DeliveryStatus.NOT_SENT.value, sent=False)
