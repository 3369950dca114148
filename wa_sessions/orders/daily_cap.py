"""A per-customer daily cap on a paid extractor's calls (``OPENAI_DAILY_CALLS_PER_PHONE``).

Every inbound text or image message costs one OpenAI call, so a single WhatsApp user could make
the service spend without bound. Each customer gets a number of calls per UTC day, counted
across the deployment (``statemachine.redis.limits.RedisDailyCallCap``); past it, the day's
remaining messages are read by the offline rule-based extractor instead: the customer still
gets a reply, and ``wa_sessions_extraction_fallbacks_total{reason="daily_cap"}`` counts it.
Pure: the allowance is a port, the metric a callback.

A message whose effects run again after a worker crash takes from the allowance again, as it
calls OpenAI again. When the count cannot be read (Redis unreachable for that one call) the
message goes to the primary: the cap bounds cost, and a drain without Redis commits nothing.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, date, datetime
from typing import Protocol

from wa_sessions.orders.extractor import ExtractionFailure, ExtractionRequest, OrderExtractor
from wa_sessions.orders.models import ExtractionResult

log = logging.getLogger(__name__)


class DailyCallAllowance(Protocol):
    """Each customer's calls of one day, counted where every worker process sees them."""

    async def take(self, customer: str, day: date) -> bool:
        """Takes one call from ``customer``'s allowance for ``day``: False when none is left
        (and nothing is taken)."""
        ...


class DailyCappedExtractor:
    """``OrderExtractor`` that asks ``primary`` while the customer has calls left today, and
    ``fallback`` after, calling ``on_fallback`` (the composition root counts it in a metric).
    Its name, budget and history are the primary's (the drain extends its lease for the slower
    of the two)."""

    def __init__(
        self,
        primary: OrderExtractor,
        fallback: OrderExtractor,
        allowance: DailyCallAllowance,
        *,
        on_fallback: Callable[[], object] = lambda: None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.primary = primary
        self.fallback = fallback
        self.allowance = allowance
        self.on_fallback = on_fallback
        self.clock = clock

    @property
    def name(self) -> str:
        return self.primary.name

    @property
    def budget_seconds(self) -> float:
        return self.primary.budget_seconds

    @property
    def history_limit(self) -> int:
        return self.primary.history_limit

    async def extract(self, request: ExtractionRequest) -> ExtractionResult | ExtractionFailure:
        today = self.clock().astimezone(UTC).date()
        try:
            allowed = await self.allowance.take(request.customer, today)
        except Exception as exc:
            # Redis unreachable for this one call: the drain's own next step will fail if it
            # is down; a glitch should not turn the message into a failed extraction.
            log.warning("daily cap not checked (%s): calling %s", exc, self.primary.name)
            allowed = True
        if allowed:
            return await self.primary.extract(request)
        self.on_fallback()
        log.info("message %s: daily %s cap reached", request.message.id, self.primary.name)
        return await self.fallback.extract(request)

    async def close(self) -> None:
        """Closes the extractors' clients (the drain loop calls it when it stops)."""
        for part in (self.primary, self.fallback):
            close = getattr(part, "close", None)
            if close is not None:
                await close()
