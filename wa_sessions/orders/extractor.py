"""The role every order extractor plays: a message and its context in, a result or a typed
failure out. Extractors never raise for a bad model answer or an unreachable API."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from wa_sessions.orders.models import ExtractionResult, OrderDetails
from wa_sessions.retries import FailureReason
from wa_sessions.statemachine.models import Message


@dataclass(frozen=True, slots=True)
class ExtractionRequest:
    """The new message, the session's recent history before it (oldest first) and the order
    as it stands, so "make that 6" can find the item it means."""

    message: Message
    history: list[Message] = field(default_factory=list)
    order: OrderDetails = field(default_factory=OrderDetails)
    #: The customer's address (the session's phone), for limits kept per customer.
    customer: str = ""
    #: The customer's language (ISO 639-1) as the session knows it, else None.
    language: str | None = None


@dataclass(frozen=True, slots=True)
class ExtractionFailure:
    """An extraction that gave up; ``detail`` is safe to store in the session."""

    reason: FailureReason
    detail: str
    attempts: int = 1


class OrderExtractor(Protocol):
    """Finds what a customer's message says about their order."""

    @property
    def name(self) -> str:
        """The ``extractor`` metric label (``openai``, ``rule_based``)."""
        ...

    @property
    def budget_seconds(self) -> float:
        """Longest a call may take, retries included; the drain extends its lease by this."""
        ...

    @property
    def history_limit(self) -> int:
        """How many earlier messages of the session the extractor wants to see."""
        ...

    async def extract(self, request: ExtractionRequest) -> ExtractionResult | ExtractionFailure:
        """Runs on the worker's event loop: a remote extractor awaits its API, never blocks."""
        ...
