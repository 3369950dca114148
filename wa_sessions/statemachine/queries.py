"""The read side of ``SessionService`` (``service.py``): its configuration, the conversation a phone
number names, and the design document's reads (by phone, by id, history, summary, pages)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

import redis

from wa_sessions.errors import SessionNotFound
from wa_sessions.statemachine.identity import Conversation, normalize_address
from wa_sessions.statemachine.models import (
    Message,
    Session,
    SessionPage,
    SessionStatus,
    SessionSummary,
    WindowState,
)
from wa_sessions.statemachine.redis.keys import Keys, SessionFieldPrefix
from wa_sessions.statemachine.redis.session_hash import counts_by
from wa_sessions.statemachine.redis.store import RedisSessionStore
from wa_sessions.statemachine.steps import to_ms

Clock = Callable[[], datetime]

#: Twilio's WhatsApp sandbox number: the business number when none is configured.
DEFAULT_BUSINESS_NUMBER = "+14155238886"

#: Ended sessions' keys outlive the retention purge by a day, as a safety net if no sweep runs.
_KEY_TTL_MARGIN_MS = 86_400_000


def utc_now() -> datetime:
    return datetime.now(UTC)


class SessionQueries:
    """Reads WhatsApp sessions; ``SessionService`` adds the writes.

    It works on the Redis client it is given (``bootstrap.build_service`` builds one from the
    settings); where the design document writes ``SessionService()``, a process asks the
    composition root for its service.
    """

    def __init__(
        self,
        redis_client: redis.Redis,
        *,
        business_number: str = DEFAULT_BUSINESS_NUMBER,
        session_timeout_hours: float = 24.0,
        carry_over_context_keys: tuple[str, ...] | list[str] = (),
        max_messages_per_session: int = 5000,
        retention_days: float = 30.0,
        default_region: str | None = None,
        key_prefix: str = "wa:",
        clock: Clock = utc_now,
        analytics_retention_days: float = 90.0,
    ) -> None:
        keys = Keys(key_prefix, rollup_keep_ms=round(analytics_retention_days * 86_400_000))
        self.store = RedisSessionStore(redis_client, keys)
        self.default_region = default_region
        self.business_number = normalize_address(business_number, default_region=default_region)
        self.session_timeout_hours = session_timeout_hours
        self.carry_over_context_keys = tuple(carry_over_context_keys)
        self.max_messages_per_session = max_messages_per_session
        self.retention_days = retention_days
        self.clock = clock

    # ---- helpers ---------------------------------------------------------------------------

    @property
    def timeout_ms(self) -> int:
        return int(self.session_timeout_hours * 3_600_000)

    @property
    def retention_ms(self) -> int:
        return int(self.retention_days * 86_400_000)

    @property
    def keep_ms(self) -> int:
        return self.retention_ms + _KEY_TTL_MARGIN_MS

    def now_ms(self) -> int:
        return to_ms(self.clock())

    def conversation(self, phone_number: str, business_number: str | None = None) -> Conversation:
        business = (
            normalize_address(business_number, default_region=self.default_region)
            if business_number
            else self.business_number
        )
        return Conversation(
            normalize_address(phone_number, default_region=self.default_region), business
        )

    def _require(self, session_id: str) -> Session:
        session = self.get_session_by_id(session_id, include_messages=False)
        if session is None:
            raise SessionNotFound(f"no session {session_id}")
        return session

    # ---- reads -----------------------------------------------------------------------------

    def get_session_by_phone(
        self,
        phone_number: str,
        business_number: str | None = None,
        *,
        include_messages: bool = True,
    ) -> Session | None:
        """The conversation's active session, or None. A session idle past the timeout is
        expired on the way (it is never returned as active)."""
        conv = self.conversation(phone_number, business_number)
        sid, _ = self.store.read_active(
            conv.key, now_ms=self.now_ms(), timeout_ms=self.timeout_ms, keep_ms=self.keep_ms
        )
        if sid is None:
            return None
        return self.store.load(sid, conv=conv.key, include_messages=include_messages)

    def get_latest_session_by_phone(
        self,
        phone_number: str,
        business_number: str | None = None,
        *,
        include_messages: bool = True,
        message_limit: int | None = None,
    ) -> Session | None:
        """The active session if any, else the most recent ended one (None if never seen)."""
        conv = self.conversation(phone_number, business_number)
        sid, _ = self.store.read_active(
            conv.key, now_ms=self.now_ms(), timeout_ms=self.timeout_ms, keep_ms=self.keep_ms
        )
        sid = sid or self.store.latest_session_id(conv.key)
        if sid is None:
            return None
        return self.store.load(
            sid, conv=conv.key, include_messages=include_messages, message_limit=message_limit
        )

    def get_session_by_id(
        self, session_id: str, *, include_messages: bool = True
    ) -> Session | None:
        self.store.expire_if_idle(
            session_id, now_ms=self.now_ms(), timeout_ms=self.timeout_ms, keep_ms=self.keep_ms
        )
        return self.store.load(session_id, include_messages=include_messages)

    def get_conversation_history(
        self, phone_number: str, limit: int = 50, business_number: str | None = None
    ) -> list[Message]:
        """The last ``limit`` messages (oldest first) of the phone's current or latest session."""
        conv = self.conversation(phone_number, business_number)
        sid, _ = self.store.read_active(
            conv.key, now_ms=self.now_ms(), timeout_ms=self.timeout_ms, keep_ms=self.keep_ms
        )
        sid = sid or self.store.latest_session_id(conv.key)
        if sid is None:
            return []
        return self.store.messages(sid, limit, conv=conv.key)

    def get_session_summary(self, session_id: str) -> SessionSummary:
        session = self.get_session_by_id(session_id, include_messages=False)
        if session is None:
            raise SessionNotFound(f"no session {session_id}")
        conv = Conversation(session.phone_number, session.business_number).key
        first = self.store.messages_at(session_id, 0, conv=conv)
        last = self.store.messages_at(session_id, -1, conv=conv)
        return summarize(session, first, last, self.clock())

    def get_active_sessions_count(self) -> int:
        return self.store.count_active()

    def get_active_sessions(self, *, offset: int = 0, limit: int = 50) -> SessionPage:
        ids, total = self.store.page(self.store.keys.active, offset=offset, limit=limit)
        return SessionPage(
            sessions=self.store.load_many(ids), total=total, offset=offset, limit=limit
        )

    def get_all_sessions(
        self, *, offset: int = 0, limit: int = 50, status: SessionStatus | None = None
    ) -> SessionPage:
        """Sessions newest first (by creation, or by end time when filtered to an ended
        status), paginated."""
        keys = self.store.keys
        if status is None:
            index = keys.all
        elif status is SessionStatus.ACTIVE:
            index = keys.active
        else:
            index = keys.status_index(status.value)
        ids, total = self.store.page(index, offset=offset, limit=limit)
        return SessionPage(
            sessions=self.store.load_many(ids), total=total, offset=offset, limit=limit
        )


def summarize(
    session: Session,
    first: Message | None,
    last: Message | None,
    now: datetime,
    *,
    archived: bool = False,
) -> SessionSummary:
    """The summary of a session, its first and last stored messages, at ``now`` (the Redis
    reads and the archive's alike)."""
    end = session.ended_at or now
    return SessionSummary(
        session_id=session.session_id,
        phone_number=session.phone_number,
        business_number=session.business_number,
        status=session.status,
        created_at=session.created_at,
        ended_at=session.ended_at,
        end_reason=session.end_reason,
        duration_seconds=max(0.0, (end - session.created_at).total_seconds()),
        message_count=session.message_count,
        messages_by_direction=counts_by(session, SessionFieldPrefix.BY_DIRECTION),
        messages_by_type=counts_by(session, SessionFieldPrefix.BY_TYPE),
        first_message_at=first.timestamp if first else None,
        last_message_at=last.timestamp if last else None,
        last_activity=session.last_activity,
        order_details=session.order_details,
        context=session.context,
        window=WindowState(
            open=session.window_open(now),
            last_inbound_at=session.last_inbound_at,
            closes_at=session.window_closes_at(),
        ),
        archived=archived,
    )
