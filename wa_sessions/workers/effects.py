"""The effects of one applied inbound message: extract order details, merge them into the
session's order, reply, and commit all of it in one fenced Lua step.

Runs inside the per-phone drain, under the conversation's lease, for the head of the
conversation's effects list (``P c:{conv}:effects``), which the apply of the message filled in
the same step that stored it. If the drain dies before the commit, the record stays at the head
and the next drain runs the effects again before it applies anything newer: extraction is
repeated and a reply Twilio had already accepted is sent a second time (at least once, never
lost). Before a slow call the lease is extended by that call's whole retry budget, so no other
drain takes the conversation over mid-call.

Nothing here raises for an external failure: a failed extraction or send becomes a ``system``
message in the session, a metric, and the phone's next messages go on.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from time import perf_counter
from typing import Any

import pydantic

from wa_sessions.metrics import orders as metrics
from wa_sessions.orders.extractor import ExtractionFailure, ExtractionRequest, OrderExtractor
from wa_sessions.orders.merge import MergeOutcome, merge_order
from wa_sessions.orders.models import ExtractionResult, OrderDetails
from wa_sessions.replies.sender import OutboundSender, SendFailure, SendResult
from wa_sessions.replies.templates import ReplyTemplates
from wa_sessions.retries import FailureReason
from wa_sessions.statemachine.models import (
    Message,
    MessageDirection,
    MessageType,
    Session,
    SessionStatus,
)
from wa_sessions.statemachine.service import SessionService
from wa_sessions.statemachine.store import CommitResult, EffectMessage, parse_effect_record

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Effects:
    """What runs after an inbound text or image message is stored."""

    extractor: OrderExtractor
    sender: OutboundSender
    templates: ReplyTemplates = field(default_factory=ReplyTemplates)


@dataclass
class _Outcome:
    """Metrics to count once the commit has succeeded (a re-run must not count twice)."""

    extraction: str = ""
    extraction_seconds: float = 0.0
    failure_reason: str = ""
    order_changed: bool = False
    reply: str = ""

    def count(self, effects: Effects) -> None:
        if self.extraction:
            name = effects.extractor.name
            metrics.EXTRACTIONS.labels(name, self.extraction).inc()
            metrics.EXTRACTION_LATENCY.labels(name).observe(self.extraction_seconds)
        if self.failure_reason:
            metrics.EXTRACTION_FAILURES.labels(self.failure_reason).inc()
        if self.order_changed:
            metrics.ORDERS_EXTRACTED.inc()
        if self.reply:
            metrics.REPLIES.labels(effects.sender.name, self.reply).inc()


def run_effects(
    service: SessionService,
    effects: Effects,
    conv: str,
    token: str,
    record: str,
    *,
    lease_seconds: float,
) -> CommitResult:
    """Runs and commits the effects of the record at the head of ``conv``'s effects list.
    The result's status is ``lease`` or ``head`` when this drain may no longer commit."""
    store = service.store
    session_id, message = parse_effect_record(record)
    history_limit = effects.extractor.history_limit
    session = store.load(
        session_id, include_messages=history_limit > 0, message_limit=history_limit + 1
    )
    notes: list[EffectMessage] = []
    order: dict[str, Any] | None = None
    outcome = _Outcome()

    def commit() -> CommitResult:
        result = store.commit_effects(
            conv,
            token,
            record,
            session_id=session_id,
            order=order,
            messages=notes,
            now=service.clock(),
            cap=service.max_messages_per_session,
            keep_ms=service.keep_ms,
            lease_ms=int(lease_seconds * 1000),
        )
        if result.status == "ok":
            outcome.count(effects)
        return result

    if session is None or session.status is not SessionStatus.ACTIVE:
        # Ended (by the API or the sweep) between the apply and now: nothing to add to.
        return commit()
    try:
        current = OrderDetails.model_validate(session.order_details or {})
    except pydantic.ValidationError:
        notes.append(
            _system(
                service.clock(),
                "Order details not updated: the stored order_details are not in the expected "
                "shape; no reply was sent.",
                event="extraction_failed",
                reason=FailureReason.OTHER.value,
                in_reply_to=message.id,
            )
        )
        return commit()

    if not _extend(service, conv, token, effects.extractor.budget_seconds, lease_seconds):
        return CommitResult("lease")
    history = [m for m in session.messages if m.id != message.id]
    started = perf_counter()
    extracted = _extract(effects.extractor, ExtractionRequest(message, history, current))
    outcome.extraction_seconds = perf_counter() - started
    if isinstance(extracted, ExtractionFailure):
        outcome.extraction = "failed"
        outcome.failure_reason = extracted.reason.value
        notes.append(
            _system(
                service.clock(),
                f"Order extraction failed ({extracted.reason.value}, {extracted.attempts} "
                f"attempt(s)): {extracted.detail}. The message is kept; no reply was sent.",
                event="extraction_failed",
                reason=extracted.reason.value,
                attempts=extracted.attempts,
                in_reply_to=message.id,
            )
        )
        return commit()

    outcome.extraction = "found" if extracted.found else "nothing"
    merged = merge_order(current, extracted)
    if merged.changed:
        order = merged.order.model_dump(mode="json")
        outcome.order_changed = True
    body = _reply_text(effects.templates, extracted, merged)
    replied = _reply(
        service, effects, conv, token, session, message, body, notes, outcome, lease_seconds
    )
    if not replied:
        return CommitResult("lease")
    return commit()


def _reply(
    service: SessionService,
    effects: Effects,
    conv: str,
    token: str,
    session: Session,
    message: Message,
    body: str,
    notes: list[EffectMessage],
    outcome: _Outcome,
    lease_seconds: float,
) -> bool:
    """Sends (or, outside the window, declines to send) the reply and notes what happened.
    False when the lease was lost before the send."""
    now = service.clock()
    if not session.window_open(now):
        closed = session.window_closes_at()
        notes.append(
            _system(
                now,
                "Reply not sent: WhatsApp's 24-hour customer-service window closed at "
                f"{closed.isoformat() if closed else 'an unknown time'}; only approved "
                "templates may be sent now.",
                event="reply_skipped",
                reason="outside_window",
                in_reply_to=message.id,
            )
        )
        outcome.reply = "outside_window"
        return True
    sender = effects.sender
    if not _extend(service, conv, token, sender.budget_seconds, lease_seconds):
        return False
    sent = _send(sender, to=session.phone_number, from_=session.business_number, body=body)
    at = service.clock()
    if isinstance(sent, SendFailure):
        code = f", error {sent.code}" if sent.code else ""
        notes.append(
            _system(
                at,
                f"Reply failed ({sent.reason.value}{code}, {sent.attempts} attempt(s)): "
                f"{sent.detail}.",
                event="reply_failed",
                reason=sent.reason.value,
                error_code=sent.code,
                attempts=sent.attempts,
                in_reply_to=message.id,
            )
        )
        outcome.reply = "failed"
        return True
    notes.append(_outbound(at, body, sender.name, sent, in_reply_to=message.id))
    outcome.reply = "sent" if sent.sent else "logged"
    return True


def _reply_text(templates: ReplyTemplates, result: ExtractionResult, merged: MergeOutcome) -> str:
    # A message that only removed items still gets the order back (possibly "now empty").
    if result.found and (merged.order.items or merged.touched):
        return templates.for_order(merged.order)
    return templates.for_nothing()


def _extend(
    service: SessionService, conv: str, token: str, budget_seconds: float, lease_seconds: float
) -> bool:
    """Covers a slow call's whole budget with the lease; local calls need no round trip."""
    if budget_seconds <= 0:
        return True
    lease_ms = int((budget_seconds + lease_seconds) * 1000)
    return service.store.extend_lease(conv, token, lease_ms=lease_ms)


def _extract(
    extractor: OrderExtractor, request: ExtractionRequest
) -> ExtractionResult | ExtractionFailure:
    try:
        return extractor.extract(request)
    except Exception as exc:
        # An extractor bug must not wedge the phone: the record would be retried forever.
        log.exception("order extractor %s raised", extractor.name)
        return ExtractionFailure(FailureReason.OTHER, f"extractor error: {type(exc).__name__}")


def _send(sender: OutboundSender, *, to: str, from_: str, body: str) -> SendResult | SendFailure:
    try:
        return sender.send(to=to, from_=from_, body=body)
    except Exception as exc:
        log.exception("reply sender %s raised", sender.name)
        return SendFailure(FailureReason.OTHER, f"sender error: {type(exc).__name__}")


def _system(at: datetime, content: str, **metadata: Any) -> EffectMessage:
    return EffectMessage(
        Message(
            id=f"sys-{uuid.uuid4().hex}",
            content=content,
            message_type=MessageType.SYSTEM,
            direction=MessageDirection.OUTBOUND,
            timestamp=at,
            metadata={k: v for k, v in metadata.items() if v is not None},
        )
    )


def _outbound(
    at: datetime, body: str, sender: str, sent: SendResult, *, in_reply_to: str
) -> EffectMessage:
    metadata: dict[str, Any] = {
        "sender": sender,
        "sent": sent.sent,
        "delivery_status": sent.status,
        "in_reply_to": in_reply_to,
    }
    if sent.sid:
        metadata["twilio_sid"] = sent.sid
    return EffectMessage(
        Message(
            id=sent.sid or f"out-{uuid.uuid4().hex}",
            content=body,
            message_type=MessageType.TEXT,
            direction=MessageDirection.OUTBOUND,
            timestamp=at,
            metadata=metadata,
        ),
        twilio_sid=sent.sid or "",
        delivery_status=sent.status,
    )
