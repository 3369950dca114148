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

from wa_sessions.flows.registry import FlowTemplates
from wa_sessions.languages.detect import detect_language
from wa_sessions.metrics import MESSAGES
from wa_sessions.orders.extractor import OrderExtractor
from wa_sessions.replies.sender import OutboundSender
from wa_sessions.replies.templates import ReplyTemplates
from wa_sessions.statemachine.entries import is_operator_reply, parse_effect_record
from wa_sessions.statemachine.models import Message
from wa_sessions.statemachine.steps import (
    DrainStep,
    EffectsCommit,
    SessionEffects,
)
from wa_sessions.workers.lease import Lease
from wa_sessions.workers.operator_replies import OperatorReplyRun
from wa_sessions.workers.outreach_run import OutreachRun, is_business_message
from wa_sessions.workers.records import (
    SessionCounts,
    labelled,
)
from wa_sessions.workers.session_run import SessionRun

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Effects:
    """What runs after an inbound text or image message is stored. ``detect``: the customer's
    language of a message (``languages/detect.py``), run here rather than in the webhook;
    ``flows``: the conversation templates (``flows/``)."""

    extractor: OrderExtractor
    sender: OutboundSender
    templates: ReplyTemplates = field(default_factory=ReplyTemplates)
    detect: Callable[[str], str | None] = detect_language
    #: The conversation templates by business number (none: replies as without templates).
    flows: FlowTemplates = field(default_factory=FlowTemplates)


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
        if is_operator_reply(message) or is_business_message(message):
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
        run: SessionRun | OperatorReplyRun | OutreachRun
        if operator and is_business_message(messages[0][1]):
            run = OutreachRun(lease, effects.sender, clock, session_id, messages[0][1])
        elif operator:
            run = OperatorReplyRun(lease, effects.sender, clock, session_id, messages[0][1])
        else:
            run = SessionRun(lease, effects, clock, session_id, messages)
        outcome = await run.run(step.sessions.get(session_id))
        if outcome is None:
            return None
        counts.append(run.counts)
        outcomes.append(outcome)
    return EffectsBatch(EffectsCommit(step.effects, outcomes, clock()), counts)
