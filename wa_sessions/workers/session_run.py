"""One session's part of a drained batch (``effects.py``): extract each of its messages in
order, carrying the order forward, keep the customer's language up to date, then one reply in
that language."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime
from time import perf_counter
from typing import TYPE_CHECKING

import pydantic

from wa_sessions.languages.choice import LanguageState, reply_language
from wa_sessions.orders.extractor import ExtractionFailure, ExtractionRequest, OrderExtractor
from wa_sessions.orders.merge import merge_order
from wa_sessions.orders.models import ExtractionResult, OrderDetails
from wa_sessions.replies.sender import SendFailure
from wa_sessions.retries import FailureReason
from wa_sessions.statemachine.models import Message, SessionStatus
from wa_sessions.statemachine.outreach import is_opt_out
from wa_sessions.statemachine.steps import EffectMessage, EffectSession, SessionEffects, to_ms
from wa_sessions.workers.flow_run import FlowRun
from wa_sessions.workers.lease import Lease
from wa_sessions.workers.records import (
    History,
    SessionCounts,
    covers,
    failure_note,
    outbound_record,
    send_reply,
    system_note,
    window_closed_at,
)

if TYPE_CHECKING:
    from wa_sessions.workers.effects import Effects

log = logging.getLogger(__name__)


class SessionRun:
    """One session's records: extract each message in order, carrying the order forward, then
    one reply."""

    def __init__(
        self,
        lease: Lease,
        effects: Effects,
        clock: Callable[[], datetime],
        session_id: str,
        messages: list[tuple[int, Message]],
    ) -> None:
        self.lease = lease
        self.effects = effects
        self.clock = clock
        self.session_id = session_id
        self.messages = messages
        self.ids = [message.id for _, message in messages]
        self.counts = SessionCounts()
        self.notes: list[EffectMessage] = []
        self.waits_ms: list[int] = []
        self.language_state = LanguageState()
        self.language = reply_language(None, self.language_state)
        self.phone = ""

    async def run(self, session: EffectSession | None) -> SessionEffects | None:
        """The session's outcome; None when the lease was lost."""
        if session is None or session.status != SessionStatus.ACTIVE.value:
            # Ended (by the API or the sweep) between the apply and now: nothing to add to.
            return SessionEffects(self.session_id, None, [])
        try:
            current = (
                OrderDetails.model_validate_json(session.order_json)
                if session.order_json
                else OrderDetails()
            )
        except pydantic.ValidationError:
            self.notes.append(
                system_note(
                    self.clock(),
                    "Order details not updated: the stored order_details are not in the "
                    "expected shape; no reply was sent.",
                    event="extraction_failed",
                    reason=FailureReason.OTHER.value,
                    **covers(self.ids),
                )
            )
            return SessionEffects(self.session_id, None, self.notes)
        kept = LanguageState(session.language, session.language_candidate)
        self.language_state = kept
        # A batch of only STOP detects nothing: it is answered in the kept language.
        self.language = reply_language(session.language_override, kept)
        self.phone = session.phone
        template = self.effects.flows.following(session)
        # STOP is not a flow's answer: a batch with it is acknowledged below, the flow kept.
        if template is not None and not any(is_opt_out(m.content) for _, m in self.messages):
            return await FlowRun(self, template).run(session, current, kept)
        extracted = await self._extract_all(session, current)
        if extracted is None:
            return None
        order, changed, understood, answered = extracted
        templates = self.effects.templates
        language = self.language
        body: str | None = None
        if self.counts.opted_out:
            # STOP is acknowledged, whatever else the batch said.
            body = templates.for_opt_out(language)
        elif understood:
            body = (
                templates.for_order(order, language)
                if answered
                else templates.for_nothing(language)
            )
        if body is not None and not await self.reply(session, body):
            return None
        return SessionEffects(
            self.session_id,
            order.model_dump(mode="json") if changed else None,
            self.notes,
            self.waits_ms,
            self.language_state.context() if self.language_state != kept else {},
            opt_out=self.counts.opted_out,
        )

    def observe_language(self, session: EffectSession, message: Message) -> str:
        """Detects ``message``'s language, updates the kept one and answers the language to
        extract and reply in (the business's override first)."""
        detected = self.effects.detect(message.content)
        self.counts.detections[detected] += 1
        self.language_state = self.language_state.observe(detected, message.content)
        self.language = reply_language(session.language_override, self.language_state)
        return self.language

    async def _extract_all(
        self, session: EffectSession, order: OrderDetails
    ) -> tuple[OrderDetails, bool, bool, bool] | None:
        """Extracts each message in order: (order, changed, understood, answered), None when
        the lease was lost."""
        history = History(session.tail, self.messages, self.effects.extractor.history_limit)
        changed = understood = answered = False
        for index, message in self.messages:
            if is_opt_out(message.content):
                # An opt-out keyword is not an order: no extraction.
                self.counts.opted_out = True
                continue
            self.observe_language(session, message)
            extracted = await self.extract(history, index, message, order)
            if extracted is None:
                return None
            if isinstance(extracted, ExtractionFailure):
                continue
            understood = True
            merged = merge_order(order, extracted)
            if merged.changed:
                order = merged.order
                changed = True
                self.counts.orders_changed += 1
            # A message that only removed items still gets the order back (possibly "empty").
            if extracted.found and (merged.order.items or merged.touched):
                answered = True
        return order, changed, understood, answered

    async def extract(
        self, history: History, index: int, message: Message, order: OrderDetails
    ) -> ExtractionResult | ExtractionFailure | None:
        """What the extractor makes of one message (in the language observed last), counted;
        a failure is noted in the session. None when the lease was lost."""
        extractor = self.effects.extractor
        counts = self.counts
        if not await self.lease.cover(extractor.budget_seconds):
            return None
        started = perf_counter()
        request = ExtractionRequest(
            message, history.before(index), order, self.phone, self.language
        )
        extracted = await _extract(extractor, request)
        counts.seconds.append(perf_counter() - started)
        if isinstance(extracted, ExtractionFailure):
            counts.extractions["failed"] += 1
            counts.failures[extracted.reason.value] += 1
            self.notes.append(
                system_note(
                    self.clock(),
                    f"Order extraction failed ({extracted.reason.value}, "
                    f"{extracted.attempts} attempt(s)): {extracted.detail}. The message is "
                    "kept; the order was not updated from it.",
                    event="extraction_failed",
                    reason=extracted.reason.value,
                    attempts=extracted.attempts,
                    in_reply_to=message.id,
                )
            )
            return extracted
        counts.extractions["found" if extracted.found else "nothing"] += 1
        return extracted

    async def reply(self, session: EffectSession, body: str) -> bool:
        """Sends (or, outside the window, for a session ended meanwhile or one an operator
        took over, declines to send) the session's reply and notes what happened. False when
        the lease was lost."""
        now = self.clock()
        ids = self.ids
        counts = self.counts
        closed = window_closed_at(session.last_inbound_ms, now)
        if closed is not None:
            self.notes.append(
                system_note(
                    now,
                    "Reply not sent: WhatsApp's 24-hour customer-service window closed at "
                    f"{closed.isoformat() if session.last_inbound_ms else 'an unknown time'}; "
                    "only approved templates may be sent now.",
                    event="reply_skipped",
                    reason="outside_window",
                    **covers(ids),
                )
            )
            counts.replies["outside_window"] += 1
            return True
        sender = self.effects.sender
        covered, live = await self.lease.cover_and_read(sender.budget_seconds, self.session_id)
        if not covered:
            return False
        if live.status != SessionStatus.ACTIVE.value:
            # Ended while the extraction ran: the commit appends nothing to it, and the
            # customer must not be told their order was received.
            counts.replies["session_ended"] += 1
            return True
        if live.taken_over_by is not None:
            # Taken over while the extraction ran: the operator answers now, not the service.
            self.notes.append(
                system_note(
                    now,
                    f"Automatic reply not sent: {live.taken_over_by} took the conversation over.",
                    event="reply_skipped",
                    reason="taken_over",
                    **covers(ids),
                )
            )
            counts.replies["taken_over"] += 1
            return True
        sent = await send_reply(sender, to=session.phone, from_=session.business, body=body)
        at = self.clock()
        if isinstance(sent, SendFailure):
            self.notes.append(failure_note(at, "Reply", sent, **covers(ids)))
            counts.replies["failed"] += 1
            return True
        self.notes.append(outbound_record(at, body, sender.name, sent, ids))
        counts.replies["sent" if sent.sent else "logged"] += 1
        counts.reply_language = self.language
        self.waits_ms = [max(0, to_ms(at) - to_ms(m.timestamp)) for _, m in self.messages]
        return True


async def _extract(
    extractor: OrderExtractor, request: ExtractionRequest
) -> ExtractionResult | ExtractionFailure:
    try:
        return await extractor.extract(request)
    except Exception as exc:
        # An extractor bug must not wedge the phone: the records would be retried forever.
        log.exception("order extractor %s raised", extractor.name)
        return ExtractionFailure(FailureReason.OTHER, f"extractor error: {type(exc).__name__}")
