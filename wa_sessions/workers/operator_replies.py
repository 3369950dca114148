"""An operator's reply, as the drain runs it: the session API queued it in the phone's inbox
(``entries.operator_reply_entry``), the drain step turned it into an effect record in order
with the customer's messages, and here it leaves through the same sender as the automatic
replies, under the same lease.

Everything the API checked up front is checked again right before the send, because time
passed while the entry waited: the session must still be active and held by the operator who
wrote the reply, and WhatsApp's 24-hour window must still be open. A reply that may not go out
becomes a system note naming why, so the operator reads it in the conversation. A sent reply is
stored as an outbound message with ``metadata.operator`` and mapped to its Twilio MessageSid,
so status callbacks track its delivery like any reply. A drain killed after the send and before
the commit leaves the record for the next drain, which sends it again (Twilio has no
idempotency key for messages) and stores it once: the same at-least-once as automatic replies.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from wa_sessions.replies.sender import OutboundSender, SendFailure
from wa_sessions.statemachine.models import Message, SessionStatus
from wa_sessions.statemachine.steps import EffectMessage, EffectSession, SessionEffects
from wa_sessions.workers.lease import Lease
from wa_sessions.workers.records import (
    SessionCounts,
    failure_note,
    outbound_record,
    send_reply,
    system_note,
    window_closed_at,
)


class OperatorReplyRun:
    """One operator's reply to one session: re-check, send, note what happened."""

    def __init__(
        self,
        lease: Lease,
        sender: OutboundSender,
        clock: Callable[[], datetime],
        session_id: str,
        message: Message,
    ) -> None:
        self.lease = lease
        self.sender = sender
        self.clock = clock
        self.session_id = session_id
        self.message = message
        self.operator = str(message.metadata.get("operator", ""))
        self.counts = SessionCounts()
        self.notes: list[EffectMessage] = []

    def _outcome(self, outcome: str) -> SessionEffects:
        self.counts.operator_replies[outcome] += 1
        return SessionEffects(self.session_id, None, self.notes)

    def _refuse(self, outcome: str, why: str) -> SessionEffects:
        self.notes.append(
            system_note(
                self.clock(),
                f"Reply from {self.operator} not sent: {why}",
                event="operator_reply_refused",
                reason=outcome,
                operator=self.operator,
                reply_id=self.message.id,
            )
        )
        return self._outcome(outcome)

    async def run(self, session: EffectSession | None) -> SessionEffects | None:
        """The reply's outcome; None when the lease was lost before the send."""
        if session is None or session.status != SessionStatus.ACTIVE.value:
            return self._outcome("session_ended")
        if session.taken_over_by != self.operator:
            return self._refuse("not_taken_over", self._holder_text(session.taken_over_by))
        closed = window_closed_at(session.last_inbound_ms, self.clock())
        if closed is not None:
            return self._refuse(
                "outside_window",
                "WhatsApp's 24-hour customer-service window closed at "
                f"{closed.isoformat()}; only approved templates may be sent now.",
            )
        covered, live = await self.lease.cover_and_read(self.sender.budget_seconds, self.session_id)
        if not covered:
            return None
        if live.status != SessionStatus.ACTIVE.value:
            return self._outcome("session_ended")
        if live.taken_over_by != self.operator:
            return self._refuse("not_taken_over", self._holder_text(live.taken_over_by))
        body = self.message.content
        sent = await send_reply(self.sender, to=session.phone, from_=session.business, body=body)
        at = self.clock()
        if isinstance(sent, SendFailure):
            self.notes.append(
                failure_note(
                    at,
                    f"Reply from {self.operator}",
                    sent,
                    operator=self.operator,
                    reply_id=self.message.id,
                )
            )
            return self._outcome("failed")
        self.notes.append(
            outbound_record(
                at,
                body,
                self.sender.name,
                sent,
                [],
                message_id=self.message.id,
                operator=self.operator,
            )
        )
        return self._outcome("sent" if sent.sent else "logged")

    def _holder_text(self, holder: str | None) -> str:
        if holder is None:
            return "the conversation was handed back before it could be sent."
        return f"{holder} holds the conversation now."
