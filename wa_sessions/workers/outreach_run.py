"""A business-initiated message (a nudge; ``metadata.outreach`` names its origin), as the drain
runs it: queued in the phone's inbox like an operator's reply, so it leaves in order with the
conversation and a crash before the commit sends it again rather than never.

Right before the send the rule of ``statemachine/outreach.py`` is asked again with what the
drain read: the session must still be active, and free text needs WhatsApp's window still
open. The nudge is stored ``passive``: it does not count as activity, so the session still
expires when it would have (the customer's reply continues it; silence ends it on time).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime

from wa_sessions.replies.sender import OutboundSender, SendFailure, SendResult
from wa_sessions.retries import FailureReason
from wa_sessions.statemachine.models import Message, SessionStatus
from wa_sessions.statemachine.outreach import OutboundContent, refusal
from wa_sessions.statemachine.steps import EffectMessage, EffectSession, SessionEffects
from wa_sessions.workers.lease import Lease
from wa_sessions.workers.records import (
    SessionCounts,
    failure_note,
    outbound_record,
    send_reply,
    system_note,
)


def is_business_message(message: Message) -> bool:
    return "outreach" in message.metadata


class OutreachRun:
    """One business-initiated message to one session: re-check, send, note the outcome."""

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
        self.origin = str(message.metadata["outreach"])
        self.content = OutboundContent.from_metadata(message.content, message.metadata)
        self.counts = SessionCounts()
        self.notes: list[EffectMessage] = []

    def _outcome(self, outcome: str) -> SessionEffects:
        self.counts.outreach[(self.origin, outcome)] += 1
        return SessionEffects(self.session_id, None, self.notes)

    async def run(self, session: EffectSession | None) -> SessionEffects | None:
        """The message's outcome; None when the lease was lost before the send."""
        if session is None or session.status != SessionStatus.ACTIVE.value:
            return self._outcome("session_ended")
        # One round trip right before the send: the lease over it, the status and the opt-out
        # (a STOP committed after the nudge was claimed or the request accepted stops it).
        covered, live = await self.lease.cover_and_read(self.sender.budget_seconds, self.session_id)
        if not covered:
            return None
        if live.status != SessionStatus.ACTIVE.value:
            return self._outcome("session_ended")
        refused = refusal(
            self.content,
            last_inbound_ms=session.last_inbound_ms,
            now=self.clock(),
            opted_out=live.opted_out,
        )
        if refused is not None:
            self.notes.append(
                system_note(
                    self.clock(),
                    f"Business message ({self.origin}) not sent: {refused}.",
                    event="business_message_refused",
                    reason=refused.code,
                )
            )
            return self._outcome(refused.code)
        sent = await self._send(session.phone, session.business)
        at = self.clock()
        if isinstance(sent, SendFailure):
            self.notes.append(failure_note(at, f"Business message ({self.origin})", sent))
            return self._outcome("failed")
        record = outbound_record(
            at,
            self.message.content,
            self.sender.name,
            sent,
            [],
            message_id=self.message.id,
            **self.message.metadata,
        )
        self.notes.append(
            EffectMessage(record.message, record.twilio_sid, record.delivery_status, passive=True)
        )
        return self._outcome("sent" if sent.sent else "logged")

    async def _send(self, to: str, from_: str) -> SendResult | SendFailure:
        content = self.content
        if content.content_sid is None:
            return await send_reply(self.sender, to=to, from_=from_, body=content.text or "")
        return await _send_template(self.sender, to, from_, content.content_sid, content.variables)


async def _send_template(
    sender: OutboundSender, to: str, from_: str, sid: str, variables: Mapping[str, str]
) -> SendResult | SendFailure:
    try:
        return await sender.send_template(to=to, from_=from_, content_sid=sid, variables=variables)
    except Exception as exc:  # a sender bug must not wedge the phone
        return SendFailure(FailureReason.OTHER, f"sender error: {type(exc).__name__}")
