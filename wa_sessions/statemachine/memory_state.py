"""The state the Lua keeps in Redis, as plain objects, for the in-memory store (``memory.py``):
per conversation and per session, with the ingest side, the API's end of a session and the
reads tests need. The drain's side builds on it (``memory_apply.py``, ``memory.py``)."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from wa_sessions.statemachine import drainrules as rules
from wa_sessions.statemachine import sessionrules
from wa_sessions.statemachine.models import Message, Session, SessionStatus
from wa_sessions.statemachine.sessionrules import SessionState
from wa_sessions.statemachine.steps import DEDUPE_BUCKET_MS, IngestOutcome, from_ms


def _wall_ms() -> int:
    return int(time.time() * 1000)


@dataclass
class ConversationState:
    """One conversation's keys: its inbox, effects list, active pointer, sessions, lease, wake
    flag."""

    inbox: list[str] = field(default_factory=list)
    effects: list[str] = field(default_factory=list)
    active: str | None = None
    #: Session id -> created time (the ``sessions`` zset).
    sessions: dict[str, int] = field(default_factory=dict)
    lease: tuple[str, int] | None = None
    wake_until: int | None = None
    #: The ``rate`` key: when the inbound token bucket is full again (epoch ms).
    rate_tat: int = 0
    #: The ``lang`` key: the business's override of the reply language.
    language: str | None = None


class MemoryState:
    """Sessions, conversations, the pending index, dedupe markers and ``out:`` maps in memory.

    ``clock`` (epoch ms) times leases and wake flags, like Redis' own clock."""

    def __init__(self, clock: Callable[[], int] = _wall_ms) -> None:
        self.clock = clock
        self.sessions: dict[str, SessionState] = {}
        self._convs: dict[str, ConversationState] = {}
        #: Conversation -> acceptance time of its oldest waiting entry (the pending index).
        self.pending: dict[str, int] = {}
        self._seen: dict[str, set[int]] = {}
        #: Twilio MessageSid -> the ``out:`` hash's fields.
        self.outbound: dict[str, dict[str, str]] = {}
        #: ``<status> <duration_ms> <message_count> <reason>`` per ended session.
        self.ended_events: list[str] = []
        #: Conversations whose customer opted out (STOP), as ``c:{conv}:optout``.
        self.opted_out: set[str] = set()

    def _conv(self, conv: str) -> ConversationState:
        found = self._convs.get(conv)
        if found is None:
            found = self._convs[conv] = ConversationState()
        return found

    # ---- the IngestStore role ------------------------------------------------------------

    def ingest(
        self,
        conv: str,
        entry: str,
        *,
        message_sid: str,
        accepted_ms: int,
        dedupe_ttl_ms: int,
        max_depth: int,
        wake_ttl_ms: int,
        messages_per_minute: int = 0,
    ) -> IngestOutcome:
        """The webhook's one round trip, as the Lua ``ingest``: dedupe, rate, append, wake
        flag."""
        buckets = rules.dedupe_buckets(
            accepted_ms, min(dedupe_ttl_ms, DEDUPE_BUCKET_MS), dedupe_ttl_ms
        )
        seen = self._seen.setdefault(message_sid, set())
        if any(bucket in seen for bucket in buckets):
            return IngestOutcome.DUPLICATE
        c = self._conv(conv)
        rate_tat = None
        if messages_per_minute > 0:
            rate_tat = rules.rate_admits(c.rate_tat, accepted_ms, messages_per_minute)
            if rate_tat is None:
                return IngestOutcome.RATE_LIMITED
        if len(c.inbox) >= max_depth:
            return IngestOutcome.FULL
        if rate_tat is not None:
            c.rate_tat = rate_tat
        seen.add(buckets[-1])
        c.inbox.append(entry)
        self.pending.setdefault(conv, accepted_ms)
        if not self._set_wake(c, wake_ttl_ms):
            return IngestOutcome.ACCEPTED
        return IngestOutcome.ACCEPTED_WAKE

    def push_operation(self, conv: str, entry: str, *, accepted_ms: int, wake_ttl_ms: int) -> bool:
        c = self._conv(conv)
        c.inbox.append(entry)
        self.pending.setdefault(conv, accepted_ms)
        return self._set_wake(c, wake_ttl_ms)

    # ---- the API's side -------------------------------------------------------------------

    def end_session(
        self, session_id: str, trigger: str, *, now_ms: int, reason: str
    ) -> tuple[str, str]:
        """Fires ``trigger`` at once, as the API does (``RedisSessionStore.end_session``):
        (``ok``|``invalid``|``missing``, state)."""
        session = self.sessions.get(session_id)
        ended, state = sessionrules.end_session(session, trigger, now_ms, reason)
        if ended and session is not None:
            self._end(session, now_ms, reason)
            return "ok", state
        return ("missing", "") if state == "missing" else ("invalid", state)

    def set_language_override(self, conv: str, language: str | None) -> None:
        """The business's override of the conversation's language (None: detected)."""
        self._conv(conv).language = language

    # ---- reads ---------------------------------------------------------------------------

    def language_override(self, conv: str) -> str | None:
        return self._conv(conv).language

    def load(self, session_id: str) -> Session | None:
        state = self.sessions.get(session_id)
        return to_session(state) if state is not None else None

    def latest_session_id(self, conv: str) -> str | None:
        ids = self.conversation_session_ids(conv)
        return ids[-1] if ids else None

    def conversation_session_ids(self, conv: str) -> list[str]:
        """Oldest first (by created time, then id, as a zset orders them)."""
        sessions = self._conv(conv).sessions
        return sorted(sessions, key=lambda sid: (sessions[sid], sid))

    def inbox_depth(self, conv: str) -> int:
        return len(self._conv(conv).inbox)

    def pending_effects(self, conv: str) -> list[str]:
        return list(self._conv(conv).effects)

    def lease_holder(self, conv: str) -> str | None:
        return self._lease_holder(self._conv(conv))

    # ---- shared with the drain's side ----------------------------------------------------

    def _lease_holder(self, c: ConversationState) -> str | None:
        if c.lease is None or c.lease[1] <= self.clock():
            return None
        return c.lease[0]

    def _set_wake(self, c: ConversationState, wake_ttl_ms: int) -> bool:
        now = self.clock()
        if c.wake_until is not None and c.wake_until > now:
            return False
        c.wake_until = now + wake_ttl_ms
        return True

    def _end(self, session: SessionState, now_ms: int, reason: str) -> None:
        """What ending a session does beyond its own state: the ended event, the pointer."""
        self.ended_events.append(
            f"{session.status} {now_ms - session.created_ms} {session.count} "
            f"{session.session_id} {reason}"
        )
        c = self._conv(session.conv)
        if c.active == session.session_id:
            c.active = None


def to_session(state: SessionState) -> Session:
    """The session as the API shows it (what ``redis/session_hash.py`` builds from Redis)."""
    return Session(
        session_id=state.session_id,
        phone_number=state.phone,
        business_number=state.business,
        status=SessionStatus(state.status),
        created_at=from_ms(state.created_ms),
        last_activity=from_ms(state.last_ms),
        last_inbound_at=from_ms(state.last_inbound_ms) if state.last_inbound_ms else None,
        ended_at=from_ms(state.ended_ms) if state.ended_ms is not None else None,
        end_reason=state.end_reason or None,
        message_count=state.count,
        trimmed_count=state.trimmed,
        counts=dict(state.counts),
        messages=[Message.model_validate_json(raw) for raw in state.messages],
        context={name: json.loads(value) for name, value in state.context.items()},
        order_details=json.loads(state.order_json) if state.order_json else None,
        flow=state.flow,
        flow_step=state.flow_step,
    )
