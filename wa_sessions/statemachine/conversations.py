"""Starting a conversation from the business's side (issue #15: ``POST /conversations`` and
``wa-sessions-enqueue start-conversation``): a template (``content_sid``) or, inside WhatsApp's
24-hour window, free text, to a phone that did not opt out.

The rule of ``outreach.refusal`` is asked up front, so the caller learns at once (409
``opted_out`` / ``outside_window``); the message then travels through the phone's inbox like an
operator's reply, and the drain asks again right before the send
(``workers/outreach_run.py``). The phone's active session carries it; without one, a session is
opened for it (its window is closed: only a template can go out).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

from wa_sessions.errors import SessionAlreadyActive
from wa_sessions.metrics.outreach import BUSINESS_MESSAGES
from wa_sessions.statemachine.entries import operator_reply_entry
from wa_sessions.statemachine.models import Session, SessionCreate, SessionStatus
from wa_sessions.statemachine.outreach import refusal, validated_content
from wa_sessions.statemachine.redis.calls import QueuedWake
from wa_sessions.statemachine.service import SessionService
from wa_sessions.statemachine.steps import to_ms

#: The origin a started conversation's entry and message carry (``metadata.outreach``).
CONVERSATION = "conversation"


@dataclass(frozen=True, slots=True)
class QueuedConversation:
    """A business-initiated message accepted into the phone's inbox: its id and the session
    that carries it, as it was then."""

    message_id: str
    session: Session


class ConversationStarter:
    """Queues business-initiated messages; ``wake_message`` as for ``TakeoverService``."""

    def __init__(
        self,
        sessions: SessionService,
        *,
        wake_message: Callable[[str], QueuedWake] | None,
        wake_ttl_ms: int,
    ) -> None:
        self.sessions = sessions
        self.wake_message = wake_message
        self.wake_ttl_ms = wake_ttl_ms

    def start(
        self,
        phone_number: str,
        business_number: str | None = None,
        *,
        text: str | None = None,
        content_sid: str | None = None,
        variables: Mapping[str, object] | None = None,
    ) -> QueuedConversation:
        """``BadRequest`` for bad content or phone, ``OptedOut`` or ``OutsideWindow`` when the
        message may not be sent; else queued behind the conversation's waiting entries."""
        content = validated_content(text, content_sid, variables)
        service = self.sessions
        conv = service.conversation(phone_number, business_number)
        session = service.get_latest_session_by_phone(
            conv.customer, conv.business, include_messages=False
        )
        active = session if session and session.status is SessionStatus.ACTIVE else None
        now = service.clock()
        refused = refusal(
            content,
            last_inbound_ms=(
                to_ms(active.last_inbound_at) if active and active.last_inbound_at else None
            ),
            now=now,
            opted_out=service.store.opted_out(conv.key),
        )
        if refused is not None:
            BUSINESS_MESSAGES.labels(f"refused_{refused.code}").inc()
            raise refused
        if active is None:
            active = self._open(conv.customer, conv.business)
        message = content.message(CONVERSATION, now)
        accepted_ms = service.now_ms()
        service.store.push_operation(
            conv.key,
            operator_reply_entry(active.session_id, CONVERSATION, message, accepted_ms),
            accepted_ms=accepted_ms,
            wake_ttl_ms=self.wake_ttl_ms,
            wake=self.wake_message(conv.key) if self.wake_message is not None else None,
        )
        BUSINESS_MESSAGES.labels("queued").inc()
        return QueuedConversation(message.id, active)

    def _open(self, phone_number: str, business_number: str) -> Session:
        """A session for the message; a customer's message opening one meanwhile wins."""
        try:
            return self.sessions.create_session(
                SessionCreate(phone_number=phone_number, business_number=business_number)
            )
        except SessionAlreadyActive as exc:
            session = self.sessions.get_session_by_id(exc.session_id, include_messages=False)
            assert session is not None
            return session
