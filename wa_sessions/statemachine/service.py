"""SessionService: the design document's API over the Redis store and the lifecycle machine.

Methods take a customer phone number and default the business number from settings. The clock
is injectable so tests move time instead of sleeping. The reads are in ``queries.py``; the
changes (create, update, end, add a message, the sweep) here.
"""

from __future__ import annotations

import json
import uuid
from datetime import datetime
from typing import Any

from wa_sessions.errors import InvalidTransition, SessionAlreadyActive, SessionNotFound
from wa_sessions.statemachine import lifecycle
from wa_sessions.statemachine.lifecycle import Trigger
from wa_sessions.statemachine.models import (
    Message,
    MessageDirection,
    MessageType,
    Session,
    SessionCreate,
    SessionStatus,
    SessionUpdate,
)
from wa_sessions.statemachine.queries import SessionQueries
from wa_sessions.statemachine.redis.keys import SessionField, SessionFieldPrefix
from wa_sessions.statemachine.steps import to_ms


def new_session_id() -> str:
    return str(uuid.uuid4())


class SessionService(SessionQueries):
    """Create, continue, end and read WhatsApp sessions (the reads in ``SessionQueries``)."""

    # ---- core session management -------------------------------------------------------------

    def create_session(self, session_data: SessionCreate) -> Session:
        """Opens a session for the conversation; ``SessionAlreadyActive`` if it has a live one."""
        conv = self.conversation(session_data.phone_number, session_data.business_number)
        now = self.clock()
        initial = None
        if session_data.initial_message:
            initial = Message(
                id=f"init-{uuid.uuid4().hex}",
                content=session_data.initial_message,
                message_type=MessageType.TEXT,
                direction=MessageDirection.INBOUND,
                timestamp=now,
            )
        created, sid = self.store.create_session(
            conv.key,
            new_session_id(),
            ts_ms=to_ms(now),
            timeout_ms=self.timeout_ms,
            keep_ms=self.keep_ms,
            initial_message=initial,
            context=session_data.context,
        )
        if not created:
            raise SessionAlreadyActive(sid)
        session = self.store.load(sid, conv=conv.key)
        assert session is not None
        return session

    def update_session(self, session_id: str, updates: SessionUpdate) -> Session:
        """Merges context keys (None removes one), replaces order details, and fires the
        lifecycle trigger when ``status`` asks for an ended state."""
        session = self._require(session_id)
        set_fields: dict[str, str] = {}
        delete_fields: list[str] = []
        for name, value in (updates.context or {}).items():
            if value is None:
                delete_fields.append(SessionFieldPrefix.CONTEXT + name)
            else:
                set_fields[SessionFieldPrefix.CONTEXT + name] = json.dumps(value)
        if updates.order_details is not None:
            set_fields[SessionField.ORDER] = json.dumps(updates.order_details)
        if (set_fields or delete_fields) and not self.store.update_fields(
            session_id, set_fields, delete_fields
        ):
            raise SessionNotFound(f"no session {session_id}")
        if updates.status is not None and updates.status != session.status:
            trigger = {
                SessionStatus.COMPLETED: Trigger.COMPLETE,
                SessionStatus.EXPIRED: Trigger.EXPIRE,
            }.get(updates.status)
            if trigger is None:
                raise InvalidTransition(session_id, session.status, f"become {updates.status}")
            return self._end(session_id, trigger, reason="update")
        result = self.store.load(session_id, include_messages=False)
        if result is None:
            raise SessionNotFound(f"no session {session_id}")
        return result

    def complete_session(self, session_id: str, *, reason: str = "completed") -> Session:
        return self._end(session_id, Trigger.COMPLETE, reason=reason)

    def expire_session(self, session_id: str, *, reason: str = "expired") -> Session:
        return self._end(session_id, Trigger.EXPIRE, reason=reason)

    def _end(self, session_id: str, trigger: Trigger, *, reason: str) -> Session:
        # A session idle past the timeout is expired, whether or not a read has noticed yet.
        self.store.expire_if_idle(
            session_id, now_ms=self.now_ms(), timeout_ms=self.timeout_ms, keep_ms=self.keep_ms
        )
        conv = self.store.conv_of(session_id)
        state = self.store.status_of(session_id, conv=conv) if conv else None
        if state is None:
            raise SessionNotFound(f"no session {session_id}")
        lifecycle.fire(session_id, state, trigger)
        outcome, after = self.store.end_session(
            session_id, trigger.value, now_ms=self.now_ms(), keep_ms=self.keep_ms, reason=reason
        )
        if outcome == "missing":
            raise SessionNotFound(f"no session {session_id}")
        if outcome == "invalid":
            # Another process ended it between our read and our write.
            raise InvalidTransition(session_id, after, trigger.value)
        session = self.store.load(session_id, conv=conv, include_messages=False)
        if session is None:
            raise SessionNotFound(f"no session {session_id}")
        return session

    # ---- messages ------------------------------------------------------------------------

    def add_message(
        self,
        phone_number: str,
        content: str,
        message_type: MessageType = MessageType.TEXT,
        direction: MessageDirection = MessageDirection.INBOUND,
        metadata: dict[str, Any] | None = None,
        *,
        message_id: str | None = None,
        business_number: str | None = None,
        timestamp: datetime | None = None,
    ) -> Session:
        """Appends a message to the conversation's live session, opening a new session when it
        has none or its session has ended or timed out. Returns the session without its
        history (use ``get_conversation_history``)."""
        conv = self.conversation(phone_number, business_number)
        now = self.clock()
        at = timestamp or now
        message = Message(
            id=message_id or uuid.uuid4().hex,
            content=content,
            message_type=message_type,
            direction=direction,
            timestamp=at,
            metadata=metadata or {},
        )
        result = self.store.apply_message(
            conv.key,
            message,
            ts_ms=to_ms(at),
            now_ms=to_ms(now),
            new_session_id=new_session_id(),
            timeout_ms=self.timeout_ms,
            cap=self.max_messages_per_session,
            keep_ms=self.keep_ms,
            carry=self.carry_over_context_keys,
        )
        session = self.store.load(result.session_id, conv=conv.key, include_messages=False)
        assert session is not None
        return session

    # ---- utility -------------------------------------------------------------------------

    def cleanup_expired_sessions(self, *, batch: int = 500) -> int:
        """Expires every active session idle past the timeout and purges ended sessions past
        the retention period. Returns how many sessions it expired."""
        total = 0
        skipped = 0  # idle sessions left to their waiting inbox entries stay in the index
        now_ms = self.now_ms()
        while True:
            expired, examined, skipped_now = self.store.expire_idle(
                now_ms=now_ms,
                timeout_ms=self.timeout_ms,
                keep_ms=self.keep_ms,
                limit=batch,
                offset=skipped,
            )
            total += len(expired)
            skipped += skipped_now
            if examined < batch:
                break
        self.purge_retained(batch=batch)
        return total

    def set_language_override(
        self, phone_number: str, business_number: str | None, language: str | None
    ) -> None:
        """Makes ``language`` the reply language of the phone's conversation (None: back to
        detection), for its sessions now and later; read by the next drain step."""
        conv = self.conversation(phone_number, business_number).key
        self.store.set_language_override(conv, language)

    def language_override(self, phone_number: str, business_number: str | None) -> str | None:
        return self.store.language_override(self.conversation(phone_number, business_number).key)

    def purge_retained(self, *, batch: int = 500) -> int:
        purged = 0
        cutoff = self.now_ms() - self.retention_ms
        while True:
            n = self.store.purge(cutoff_ms=cutoff, limit=batch)
            purged += n
            if n < batch:
                return purged
