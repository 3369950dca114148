"""The effects of a drained batch of inbound text and image messages: extract order details from
each message, merge them into the session's order, reply once per session, and commit all of it
with the drain's next step (one fenced Lua call).

Why one reply per burst, what a failure leaves behind, why a crash repeats at most a reply, and
why the session's status is read again right before a send: the README's "Orders and replies".
Here the batch's messages run in acceptance order, each extraction seeing the order as the
messages before it left it (and the session's recent messages, those of the batch included, as
its history); records of several sessions are grouped by session and each session gets its own
reply, whose metadata names what it answers (``in_reply_to``, and ``replies_to`` when it covers
more than one). An extraction that fails becomes a ``system`` message about that message; a
reply outside the 24-hour window, or a send that fails, one about the batch. Nothing here raises
for an external failure.

Everything here is a coroutine on the worker process' drain loop: a phone waiting for OpenAI or
Twilio holds no thread, only its own lease (``lease.py``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from time import perf_counter

import pydantic

from wa_sessions.metrics import MESSAGES
from wa_sessions.orders.extractor import ExtractionFailure, ExtractionRequest, OrderExtractor
from wa_sessions.orders.merge import merge_order
from wa_sessions.orders.models import ExtractionResult, OrderDetails
from wa_sessions.replies.sender import OutboundSender, SendFailure
from wa_sessions.replies.templates import ReplyTemplates
from wa_sessions.retries import FailureReason
from wa_sessions.statemachine.entries import is_operator_reply, parse_effect_record
from wa_sessions.statemachine.models import Message, SessionStatus
from wa_sessions.statemachine.steps import (
    DrainStep,
    EffectMessage,
    EffectsCommit,
    EffectSession,
    SessionEffects,
)
from wa_sessions.workers.lease import Lease
from wa_sessions.workers.operator_replies import OperatorReplyRun
from wa_sessions.workers.records import (
    History,
    SessionCounts,
    covers,
    failure_note,
    labelled,
    outbound_record,
    send_reply,
    system_note,
    window_closed_at,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Effects:
    """What runs after an inbound text or image message is stored."""

    extractor: OrderExtractor
    sender: OutboundSender
    templates: ReplyTemplates = field(default_factory=ReplyTemplates)


@dataclass
class EffectsBatch:
    """The outcome of a batch's effects: what the drain's next step commits, and the metrics to
    count for each session the commit found still active."""

    commit: EffectsCommit
    counts: list[SessionCounts] = field(default_factory=list)

    def count(self, effects: Effects, committed: list[str]) -> None:
        sessions = self.commit.sessions
        for session, counts, outcome in zip(sessions, self.counts, committed, strict=False):
            # Counted once the step committed, whether or not the session was still active.
            counts.count_operator_replies()
            if outcome == "ok":
                counts.count(effects.extractor.name, effects.sender.name)
                for note in session.messages:
                    message = note.message
                    labelled(MESSAGES, message.direction.value, message.message_type.value).inc()


def drop_effects(step: DrainStep, now: datetime) -> EffectsBatch:
    """A commit that only pops the records (a worker without an extractor or sender must not
    hold the conversation forever)."""
    return EffectsBatch(EffectsCommit(step.effects, [], now))


async def run_effects(
    lease: Lease, effects: Effects, step: DrainStep, clock: Callable[[], datetime]
) -> EffectsBatch | None:
    """Runs the effects of the pending records ``step`` handed out, in order: customers'
    messages grouped by session, each operator's reply on its own. None when the lease was
    lost before a slow call (nothing may be committed)."""
    units: list[tuple[str, list[tuple[int, Message]], bool]] = []
    groups: dict[str, list[tuple[int, Message]]] = {}
    for index, record in enumerate(step.effects, 1):
        session_id, message = parse_effect_record(record)
        if is_operator_reply(message):
            units.append((session_id, [(index, message)], True))
            continue
        group = groups.get(session_id)
        if group is None:
            group = groups[session_id] = []
            units.append((session_id, group, False))
        group.append((index, message))
    outcomes: list[SessionEffects] = []
    counts: list[SessionCounts] = []
    for session_id, messages, operator in units:
        run: _SessionRun | OperatorReplyRun
        if operator:
            run = OperatorReplyRun(lease, effects.sender, clock, session_id, messages[0][1])
        else:
            run = _SessionRun(lease, effects, clock, session_id, messages)
        outcome = await run.run(step.sessions.get(session_id))
        if outcome is None:
            return None
        counts.append(run.counts)
        outcomes.append(outcome)
    return EffectsBatch(EffectsCommit(step.effects, outcomes, clock()), counts)


class _SessionRun:
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
        extracted = await self._extract_all(session, current)
        if extracted is None:
            return None
        order, changed, understood, answered = extracted
        if understood:
            templates = self.effects.templates
            body = templates.for_order(order) if answered else templates.for_nothing()
            if not await self._reply(session, body):
                return None
        return SessionEffects(
            self.session_id, order.model_dump(mode="json") if changed else None, self.notes
        )

    async def _extract_all(
        self, session: EffectSession, order: OrderDetails
    ) -> tuple[OrderDetails, bool, bool, bool] | None:
        """Extracts each message in order: (order, changed, understood, answered), None when
        the lease was lost."""
        extractor = self.effects.extractor
        counts = self.counts
        history = History(session.tail, self.messages, extractor.history_limit)
        changed = understood = answered = False
        for index, message in self.messages:
            if not await self.lease.cover(extractor.budget_seconds):
                return None
            started = perf_counter()
            request = ExtractionRequest(message, history.before(index), order, session.phone)
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
                continue
            understood = True
            counts.extractions["found" if extracted.found else "nothing"] += 1
            merged = merge_order(order, extracted)
            if merged.changed:
                order = merged.order
                changed = True
                counts.orders_changed += 1
            # A message that only removed items still gets the order back (possibly "empty").
            if extracted.found and (merged.order.items or merged.touched):
                answered = True
        return order, changed, understood, answered

    async def _reply(self, session: EffectSession, body: str) -> bool:
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
