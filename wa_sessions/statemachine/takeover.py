"""Agent takeover (issue #13): an operator takes a session over, so automatic replies (and order
extraction) stop for it, writes replies that leave through the phone's drain like any reply,
and hands it back.

Taking over and handing back are one atomic script on the session's hash (``lua/takeover.lua``),
read by the drain under its lease: when it applies a customer's message (no effects are queued
while the session is held, nor for a message accepted before its last hand-back) and right
before each automatic reply (one held meanwhile gets none). The operator gets the outcome at
once (409 when someone else holds it). A reply travels through the conversation's inbox, in
order with the messages around it, and the drain checks again that the operator still holds the
session and that WhatsApp's window is still open (``workers/operator_replies.py``).
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass

from wa_sessions.errors import (
    BadRequest,
    InvalidTransition,
    OutsideWindow,
    SessionNotFound,
    TakeoverConflict,
)
from wa_sessions.metrics.takeover import OPERATOR_REPLIES, TAKEOVERS
from wa_sessions.statemachine.entries import operator_reply_entry
from wa_sessions.statemachine.identity import Conversation
from wa_sessions.statemachine.models import (
    Message,
    MessageDirection,
    MessageType,
    Session,
    SessionStatus,
)
from wa_sessions.statemachine.redis.calls import QueuedWake
from wa_sessions.statemachine.service import SessionService

#: Operator names: what a person's sign-in name looks like; no spaces, tabs or control
#: characters (a name is a field of an inbox entry and is shown in the conversation).
OPERATOR_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}$"
OPERATOR_NAME = re.compile(OPERATOR_PATTERN)
#: A reply must hold something besides white space.
REPLY_PATTERN = r"\S"
#: Twilio refuses a message body longer than this.
TWILIO_BODY_LIMIT = 1600


@dataclass(frozen=True, slots=True)
class QueuedReply:
    """An operator's reply accepted into the inbox: its message id (the stored message keeps
    it unless Twilio's MessageSid replaces it) and the session as it was then."""

    reply_id: str
    session: Session


class TakeoverService:
    """Take over, hand back, reply: the operators' side of a session, over ``SessionService``.

    ``wake_message`` builds the drain wake-up a reply's push enqueues in the same round trip
    (a process without a Dramatiq broker: the web process); ``wake_ttl_ms`` is the inbox's."""

    def __init__(
        self,
        sessions: SessionService,
        *,
        wake_message: Callable[[str], QueuedWake] | None,
        wake_ttl_ms: int,
        max_reply_chars: int = TWILIO_BODY_LIMIT,
    ) -> None:
        self.sessions = sessions
        self.wake_message = wake_message
        self.wake_ttl_ms = wake_ttl_ms
        self.max_reply_chars = max_reply_chars

    def take_over(self, session_id: str, operator: str) -> Session:
        """Holds the active session for ``operator`` (again: no change). ``TakeoverConflict``
        when another operator holds it."""
        return self._change(session_id, operator, take=True, force=False)

    def hand_back(self, session_id: str, operator: str, *, force: bool = False) -> Session:
        """Gives the session back to automatic replies, for messages accepted from now on.
        Only its holder may, unless ``force`` (an operator who left a conversation held)."""
        return self._change(session_id, operator, take=False, force=force)

    def _change(self, session_id: str, operator: str, *, take: bool, force: bool) -> Session:
        _check_operator(operator)
        service = self.sessions
        store = service.store
        action = "take_over" if take else "hand_back"
        # A session idle past the timeout has expired, whether or not a read noticed yet.
        store.expire_if_idle(
            session_id,
            now_ms=service.now_ms(),
            timeout_ms=service.timeout_ms,
            keep_ms=service.keep_ms,
        )
        result, detail = store.takeover(
            session_id, operator, take=take, force=force, now_ms=service.now_ms()
        )
        TAKEOVERS.labels(action, result).inc()
        if result == "missing":
            raise SessionNotFound(f"no session {session_id}")
        if result == "ended":
            raise InvalidTransition(session_id, detail, action.replace("_", " "))
        if result == "held":
            raise TakeoverConflict(f"session {session_id} is taken over by {detail}")
        if result == "free":
            raise TakeoverConflict(f"session {session_id} is not taken over")
        session = store.load(session_id, include_messages=False)
        if session is None:
            raise SessionNotFound(f"no session {session_id}")
        return session

    def send_operator_reply(self, session_id: str, operator: str, text: str) -> QueuedReply:
        """Queues ``operator``'s reply behind the conversation's waiting entries. Refused up
        front when the text is empty or too long, the session is unknown or ended, not held by
        ``operator``, or WhatsApp's 24-hour window has closed (the drain checks again)."""
        _check_operator(operator)
        if not text.strip():
            raise BadRequest("text: the reply is empty")
        if len(text) > self.max_reply_chars:
            raise BadRequest(
                f"text: the reply has {len(text)} characters; at most {self.max_reply_chars}"
            )
        service = self.sessions
        session = service.get_session_by_id(session_id, include_messages=False)
        if session is None:
            raise SessionNotFound(f"no session {session_id}")
        if session.status is not SessionStatus.ACTIVE:
            raise InvalidTransition(session_id, session.status, "reply")
        if session.taken_over_by != operator:
            OPERATOR_REPLIES.labels("refused_not_taken_over").inc()
            holder = session.taken_over_by
            raise TakeoverConflict(
                f"session {session_id} is taken over by {holder}"
                if holder
                else f"session {session_id} is not taken over; take it over before replying"
            )
        now = service.clock()
        if not session.window_open(now):
            OPERATOR_REPLIES.labels("refused_outside_window").inc()
            closes = session.window_closes_at()
            raise OutsideWindow(
                "WhatsApp's 24-hour customer-service window closed"
                + (f" at {closes.isoformat()}" if closes else " (no message from the customer)")
                + "; only approved templates may be sent now"
            )
        message = Message(
            id=f"op-{uuid.uuid4().hex}",
            content=text,
            message_type=MessageType.TEXT,
            direction=MessageDirection.OUTBOUND,
            timestamp=now,
            metadata={"operator": operator},
        )
        conv = Conversation(session.phone_number, session.business_number).key
        accepted_ms = service.now_ms()
        service.store.push_operation(
            conv,
            operator_reply_entry(session_id, operator, message, accepted_ms),
            accepted_ms=accepted_ms,
            wake_ttl_ms=self.wake_ttl_ms,
            wake=self.wake_message(conv) if self.wake_message is not None else None,
        )
        OPERATOR_REPLIES.labels("queued").inc()
        return QueuedReply(message.id, session)


def _check_operator(operator: str) -> None:
    if not OPERATOR_NAME.match(operator):
        raise BadRequest(
            "operator: 1-64 letters, digits or _ . @ -, starting with a letter or digit"
        )
