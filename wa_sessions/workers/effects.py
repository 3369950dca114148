"""The effects of a drained batch of inbound text and image messages: extract order details from
each message, merge them into the session's order, reply once per session, and commit all of it
with the drain's next step (one fenced Lua call).

**One reply per burst.** A customer who sends five messages in a burst gets one answer that
reflects all of them, not five: fewer Twilio sends (each one a cost), no reply racing the
customer's next message, and no "Sorry, I couldn't find an order" for the "thanks!" or "and
quickly please" between the messages that did say something. The drain applies whatever waits in
the phone's inbox in one step; here the effects of all of that batch's messages run in
acceptance order, each extraction seeing the order as the messages before it left it (and the
session's recent messages, those of the batch included, as its history), and each session of the
batch gets one reply built from its order after all of them: the order ("✅ Order received:
...") when any of its messages said something about it, else the hint. The reply's metadata says
what it answers: ``in_reply_to`` is the last message's id and, when it covers more than one,
``replies_to`` lists them all (oldest first). A batch normally holds one session's messages
(the drain's step stops a batch before an operator's complete or expire, or a message late
enough to expire the session, so each session is answered while it is still active); records
of several sessions are grouped by session and each session gets its own reply.

Failures stay per message where they belong to one: an extraction that fails becomes a
``system`` message about that message (the batch's other messages are still extracted and the
reply covers them); a reply outside WhatsApp's 24-hour window, or a send that fails, becomes
one ``system`` message about the batch. Nothing here raises for an external failure.

**Crashes.** The records stay at the head of the conversation's effects list until the step
that commits them pops them (fenced by the lease token, and checked to be the list's head in
order). A drain that dies before that leaves them there; the next drain runs the whole batch
again before it applies anything newer: extraction is repeated, and a reply Twilio had already
accepted is sent a second time (at least once, never lost); the order and the stored replies are
committed exactly once. Before a slow call (remote extractor, Twilio) the lease is extended by
that call's whole retry budget, so no other drain takes the conversation over mid-call, and a
killed worker holds its phone no longer than one budget plus the lease; local calls (the
rule-based extractor, the log sender: budget 0) need no extension and no round trip.
"""

from __future__ import annotations

import logging
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from time import perf_counter
from typing import Any

import pydantic

from wa_sessions.metrics import orders as metrics
from wa_sessions.orders.extractor import ExtractionFailure, ExtractionRequest, OrderExtractor
from wa_sessions.orders.merge import merge_order
from wa_sessions.orders.models import ExtractionResult, OrderDetails
from wa_sessions.replies.sender import OutboundSender, SendFailure, SendResult
from wa_sessions.replies.templates import ReplyTemplates
from wa_sessions.retries import FailureReason
from wa_sessions.statemachine.models import (
    CUSTOMER_SERVICE_WINDOW,
    Message,
    MessageDirection,
    MessageType,
    SessionStatus,
)
from wa_sessions.statemachine.redis.store import (
    DrainStep,
    EffectMessage,
    EffectsCommit,
    EffectSession,
    SessionEffects,
    from_ms,
    parse_effect_record,
)
from wa_sessions.statemachine.service import SessionService

log = logging.getLogger(__name__)

_children: dict[tuple[int, tuple[str, ...]], Any] = {}


def labelled(metric: Any, *labels: str) -> Any:
    """``metric.labels(*labels)``, remembered: ``labels`` validates and locks on every call, and
    the drain counts a handful of series for every batch."""
    key = (id(metric), labels)
    child = _children.get(key)
    if child is None:
        child = _children[key] = metric.labels(*labels)
    return child


@dataclass(frozen=True)
class Effects:
    """What runs after an inbound text or image message is stored."""

    extractor: OrderExtractor
    sender: OutboundSender
    templates: ReplyTemplates = field(default_factory=ReplyTemplates)


@dataclass
class _Counts:
    """One session's metrics, counted once its commit has succeeded (a re-run after a crash
    must not count twice), each counter once per batch."""

    extractions: Counter[str] = field(default_factory=Counter)
    seconds: list[float] = field(default_factory=list)
    failures: Counter[str] = field(default_factory=Counter)
    orders_changed: int = 0
    replies: Counter[str] = field(default_factory=Counter)

    def count(self, effects: Effects) -> None:
        name = effects.extractor.name
        for outcome, n in self.extractions.items():
            labelled(metrics.EXTRACTIONS, name, outcome).inc(n)
        if self.seconds:
            latency = labelled(metrics.EXTRACTION_LATENCY, name)
            for seconds in self.seconds:
                latency.observe(seconds)
        for reason, n in self.failures.items():
            labelled(metrics.EXTRACTION_FAILURES, reason).inc(n)
        if self.orders_changed:
            metrics.ORDERS_EXTRACTED.inc(self.orders_changed)
        for outcome, n in self.replies.items():
            labelled(metrics.REPLIES, effects.sender.name, outcome).inc(n)


@dataclass
class EffectsBatch:
    """The outcome of a batch's effects: what the drain's next step commits, and the metrics to
    count for each session the commit found still active."""

    commit: EffectsCommit
    counts: list[_Counts] = field(default_factory=list)

    def count(self, effects: Effects, committed: list[str]) -> None:
        for counts, outcome in zip(self.counts, committed, strict=False):
            if outcome == "ok":
                counts.count(effects)


def drop_effects(service: SessionService, step: DrainStep) -> EffectsBatch:
    """A commit that only pops the records (a worker without an extractor or sender must not
    hold the conversation forever)."""
    return EffectsBatch(EffectsCommit(step.effects, [], service.clock()))


def run_effects(
    service: SessionService,
    effects: Effects,
    conv: str,
    token: str,
    step: DrainStep,
    *,
    lease_seconds: float,
) -> EffectsBatch | None:
    """Runs the effects of the pending records ``step`` handed out, in order, grouped by
    session. None when the lease was lost before a slow call (nothing may be committed)."""
    groups: dict[str, list[tuple[int, Message]]] = {}
    for index, record in enumerate(step.effects, 1):
        session_id, message = parse_effect_record(record)
        groups.setdefault(session_id, []).append((index, message))
    outcomes: list[SessionEffects] = []
    counts: list[_Counts] = []
    for session_id, messages in groups.items():
        counts.append(_Counts())
        outcome = _run_session(
            service,
            effects,
            conv,
            token,
            session_id,
            step.sessions.get(session_id),
            messages,
            counts[-1],
            lease_seconds,
        )
        if outcome is None:
            return None
        outcomes.append(outcome)
    return EffectsBatch(EffectsCommit(step.effects, outcomes, service.clock()), counts)


def _run_session(
    service: SessionService,
    effects: Effects,
    conv: str,
    token: str,
    session_id: str,
    session: EffectSession | None,
    messages: list[tuple[int, Message]],
    counts: _Counts,
    lease_seconds: float,
) -> SessionEffects | None:
    """One session's records: extract each message in order, carrying the order forward, then
    one reply. None when the lease was lost."""
    ids = [message.id for _, message in messages]
    if session is None or session.status != SessionStatus.ACTIVE.value:
        # Ended (by the API or the sweep) between the apply and now: nothing to add to.
        return SessionEffects(session_id, None, [])
    notes: list[EffectMessage] = []
    try:
        current = (
            OrderDetails.model_validate_json(session.order_json)
            if session.order_json
            else OrderDetails()
        )
    except pydantic.ValidationError:
        notes.append(
            _system(
                service.clock(),
                "Order details not updated: the stored order_details are not in the expected "
                "shape; no reply was sent.",
                event="extraction_failed",
                reason=FailureReason.OTHER.value,
                **_covers(ids),
            )
        )
        return SessionEffects(session_id, None, notes)

    extractor = effects.extractor
    history = _History(session.tail, messages, extractor.history_limit)
    order = current
    changed = understood = answered = False
    for index, message in messages:
        if not _extend(service, conv, token, extractor.budget_seconds, lease_seconds):
            return None
        started = perf_counter()
        extracted = _extract(extractor, ExtractionRequest(message, history.before(index), order))
        counts.seconds.append(perf_counter() - started)
        if isinstance(extracted, ExtractionFailure):
            counts.extractions["failed"] += 1
            counts.failures[extracted.reason.value] += 1
            notes.append(
                _system(
                    service.clock(),
                    f"Order extraction failed ({extracted.reason.value}, {extracted.attempts} "
                    f"attempt(s)): {extracted.detail}. The message is kept; the order was not "
                    "updated from it.",
                    event="extraction_failed",
                    reason=extracted.reason.value,
                    attempts=extracted.attempts,
                    in_reply_to=message.id,
                )
            )
            continue
        understood = True
        counts.extractions["found" if extracted.found else "nothing"] += 1
        merged = merge_order(order, extracted)
        if merged.changed:
            order = merged.order
            changed = True
            counts.orders_changed += 1
        # A message that only removed items still gets the order back (possibly "now empty").
        if extracted.found and (merged.order.items or merged.touched):
            answered = True
    if understood:
        templates = effects.templates
        body = templates.for_order(order) if answered else templates.for_nothing()
        if not _reply(
            service, effects, conv, token, session, ids, body, notes, counts, lease_seconds
        ):
            return None
    return SessionEffects(session_id, order.model_dump(mode="json") if changed else None, notes)


class _History:
    """Each record's history for the extractor: the session's messages before it, at most
    ``limit``, from the tail the drain step returned (older messages as stored JSON, the batch's
    own as record indexes), parsed only when asked for."""

    def __init__(self, tail: list[str | int], messages: list[tuple[int, Message]], limit: int):
        self.limit = limit
        self.tail = tail if limit > 0 else []
        self.own = dict(messages)
        self.parsed: list[Message | None] = [None] * len(self.tail)

    def _message(self, position: int) -> Message | None:
        item = self.tail[position]
        if isinstance(item, int):
            return self.own.get(item)
        found = self.parsed[position]
        if found is None:
            found = self.parsed[position] = Message.model_validate_json(item)
        return found

    def before(self, index: int) -> list[Message]:
        if not self.tail:
            return []
        # Everything before the record's own message (or, if that has been trimmed away, every
        # stored message and the records before it).
        end = next((p for p, item in enumerate(self.tail) if item == index), len(self.tail))
        positions = [
            p for p in range(end) if not isinstance(self.tail[p], int) or int(self.tail[p]) < index
        ][-self.limit :]
        return [m for p in positions if (m := self._message(p)) is not None]


def _covers(ids: list[str]) -> dict[str, Any]:
    """Metadata naming the messages a reply (or a note about it) answers."""
    if len(ids) == 1:
        return {"in_reply_to": ids[0]}
    return {"in_reply_to": ids[-1], "replies_to": ids}


def _reply(
    service: SessionService,
    effects: Effects,
    conv: str,
    token: str,
    session: EffectSession,
    ids: list[str],
    body: str,
    notes: list[EffectMessage],
    counts: _Counts,
    lease_seconds: float,
) -> bool:
    """Sends (or, outside the window, declines to send) the session's reply and notes what
    happened. False when the lease was lost before the send."""
    now = service.clock()
    last_inbound = from_ms(session.last_inbound_ms) if session.last_inbound_ms is not None else None
    if last_inbound is None or now >= last_inbound + CUSTOMER_SERVICE_WINDOW:
        closed = last_inbound + CUSTOMER_SERVICE_WINDOW if last_inbound else None
        notes.append(
            _system(
                now,
                "Reply not sent: WhatsApp's 24-hour customer-service window closed at "
                f"{closed.isoformat() if closed else 'an unknown time'}; only approved "
                "templates may be sent now.",
                event="reply_skipped",
                reason="outside_window",
                **_covers(ids),
            )
        )
        counts.replies["outside_window"] += 1
        return True
    sender = effects.sender
    if not _extend(service, conv, token, sender.budget_seconds, lease_seconds):
        return False
    sent = _send(sender, to=session.phone, from_=session.business, body=body)
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
                **_covers(ids),
            )
        )
        counts.replies["failed"] += 1
        return True
    notes.append(_outbound(at, body, sender.name, sent, ids))
    counts.replies["sent" if sent.sent else "logged"] += 1
    return True


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
        # An extractor bug must not wedge the phone: the records would be retried forever.
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
    at: datetime, body: str, sender: str, sent: SendResult, ids: list[str]
) -> EffectMessage:
    metadata: dict[str, Any] = {
        "sender": sender,
        "sent": sent.sent,
        "delivery_status": sent.status,
        **_covers(ids),
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
