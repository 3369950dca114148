"""Random interleavings of SessionService calls checked against a plain in-memory model.

Hypothesis drives messages on a few phones in both directions, completions, expiries, sweeps,
reads and clock moves (some past the timeout). After every step the Redis state must match the
model: at most one active session per phone (indexes included), every message present once and
in order, and an ended session frozen for good.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import pytest
import redis
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    invariant,
    multiple,
    rule,
    run_state_machine_as_test,
)

from wa_sessions.errors import InvalidTransition, SessionNotFound
from wa_sessions.statemachine import MessageDirection, SessionService, SessionStatus
from wa_sessions.statemachine.redis.keys import Keys, SessionField

BUSINESS = "+14155238886"
PHONES = ["+14155550001", "+14155550002", "+442079460003"]
TIMEOUT = timedelta(hours=1)
KEYS = Keys()


class ModelClock:
    """The service's clock for one example; the model reads the same instant."""

    def __init__(self) -> None:
        self.now = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now


@dataclass
class ModelSession:
    sid: str
    phone: str
    status: SessionStatus
    last_activity: datetime
    messages: list[tuple[str, MessageDirection]] = field(default_factory=list)


class SessionLifecycleMachine(RuleBasedStateMachine):
    """SessionService on a private Redis versus dictionaries of what should have happened."""

    sessions = Bundle("sessions")

    def __init__(self, client: redis.Redis) -> None:
        super().__init__()
        client.flushall()
        self.client = client
        self.clock = ModelClock()
        self.service = SessionService(
            client,
            clock=self.clock,
            business_number=BUSINESS,
            session_timeout_hours=TIMEOUT.total_seconds() / 3600,
            max_messages_per_session=10_000,
            retention_days=365,
        )
        self.model: dict[str, ModelSession] = {}
        self.active: dict[str, str] = {}
        self.ended: dict[str, tuple[str, str | None]] = {}
        self.sent = 0

    # ---- the model's own rules ----------------------------------------------------------

    def _idle(self, session: ModelSession) -> bool:
        return (
            session.status is SessionStatus.ACTIVE
            and session.last_activity + TIMEOUT <= self.clock.now
        )

    def _end(self, session: ModelSession, status: SessionStatus) -> None:
        session.status = status
        if self.active.get(session.phone) == session.sid:
            del self.active[session.phone]

    def _expire_if_idle(self, session: ModelSession) -> bool:
        if self._idle(session):
            self._end(session, SessionStatus.EXPIRED)
            return True
        return False

    def _live_session(self, phone: str) -> ModelSession | None:
        sid = self.active.get(phone)
        if sid is None:
            return None
        session = self.model[sid]
        return None if self._expire_if_idle(session) else session

    # ---- rules ----------------------------------------------------------------------------

    @rule(
        target=sessions, phone=st.sampled_from(PHONES), direction=st.sampled_from(MessageDirection)
    )
    def add_message(self, phone: str, direction: MessageDirection) -> object:
        """Appends to the live session, or opens one when the phone has none (or it idled)."""
        self.sent += 1
        content = f"message {self.sent}"
        live = self._live_session(phone)

        result = self.service.add_message(phone, content, direction=direction)

        if live is not None:
            assert result.session_id == live.sid
            session = live
        else:
            assert result.session_id not in self.model
            session = ModelSession(result.session_id, phone, SessionStatus.ACTIVE, self.clock.now)
            self.model[session.sid] = session
            self.active[phone] = session.sid
        session.messages.append((content, direction))
        session.last_activity = self.clock.now
        assert result.status is SessionStatus.ACTIVE
        assert result.message_count == len(session.messages)
        return session.sid if live is None else multiple()

    def _end_and_check(self, sid: str, trigger: str) -> None:
        session = self.model[sid]
        self._expire_if_idle(session)
        end = (
            self.service.complete_session if trigger == "complete" else self.service.expire_session
        )
        if session.status is SessionStatus.ACTIVE:
            result = end(sid)
            status = SessionStatus.COMPLETED if trigger == "complete" else SessionStatus.EXPIRED
            assert result.status is status
            assert result.ended_at == self.clock.now
            self._end(session, status)
            return
        with pytest.raises(InvalidTransition) as info:
            end(sid)
        assert (info.value.session_id, info.value.state, info.value.trigger) == (
            sid,
            session.status.value,
            trigger,
        )

    @rule(sid=sessions)
    def complete_session(self, sid: str) -> None:
        """Completes an active session; an ended (or idle) one refuses with InvalidTransition."""
        self._end_and_check(sid, "complete")

    @rule(sid=sessions)
    def expire_session(self, sid: str) -> None:
        """Expires an active session; an ended (or idle) one refuses with InvalidTransition."""
        self._end_and_check(sid, "expire")

    @rule(complete=st.booleans())
    def end_unknown_session(self, complete: bool) -> None:
        """Ending an id that was never stored raises SessionNotFound."""
        end = self.service.complete_session if complete else self.service.expire_session
        with pytest.raises(SessionNotFound):
            end("00000000-0000-0000-0000-000000000000")

    @rule()
    def cleanup_expired_sessions(self) -> None:
        """The sweep expires exactly the sessions idle past the timeout and counts them."""
        expected = sum(self._expire_if_idle(s) for s in list(self.model.values()))
        assert self.service.cleanup_expired_sessions() == expected

    @rule(phone=st.sampled_from(PHONES))
    def get_session_by_phone(self, phone: str) -> None:
        """The phone's live session with its full history, or None once it is idle or ended."""
        live = self._live_session(phone)
        found = self.service.get_session_by_phone(phone)
        if live is None:
            assert found is None
        else:
            assert found is not None
            assert found.session_id == live.sid
            assert [(m.content, m.direction) for m in found.messages] == live.messages

    @rule(sid=sessions)
    def get_session_by_id(self, sid: str) -> None:
        """Reading by id shows the status the model expects (idle sessions read as expired)."""
        session = self.model[sid]
        self._expire_if_idle(session)
        found = self.service.get_session_by_id(sid)
        assert found is not None
        assert found.status is session.status

    @rule(minutes=st.sampled_from([0, 1, 10, 59, 60, 61, 150, 600]))
    def advance_clock(self, minutes: int) -> None:
        """Moves time on, sometimes exactly to or past the one-hour timeout."""
        self.clock.now += timedelta(minutes=minutes)

    # ---- invariants -------------------------------------------------------------------------

    @invariant()
    def redis_matches_the_model(self) -> None:
        """Every session's status, history (content, direction, order) and count match."""
        for sid, expected in self.model.items():
            stored = self.service.store.load(sid)
            assert stored is not None, f"session {sid} vanished"
            assert stored.status is expected.status
            assert stored.phone_number == expected.phone
            assert stored.message_count == len(stored.messages)
            assert stored.trimmed_count == 0
            assert [(m.content, m.direction) for m in stored.messages] == expected.messages
            assert stored.last_activity == expected.last_activity

    @invariant()
    def ended_sessions_never_change(self) -> None:
        """Once ended, a session keeps its status and end time for good."""
        for sid, session in self.model.items():
            if session.status is SessionStatus.ACTIVE:
                assert sid not in self.ended
                continue
            stored = self.service.store.load(sid, include_messages=False)
            assert stored is not None
            snapshot = (
                stored.status.value,
                stored.ended_at.isoformat() if stored.ended_at else None,
            )
            assert snapshot[1] is not None
            assert self.ended.setdefault(sid, snapshot) == snapshot

    @invariant()
    def at_most_one_active_session_per_phone(self) -> None:
        """The active index, each phone's active pointer and the hashes agree: one at most."""
        active_ids = set(self.client.zrange(KEYS.active, 0, -1))
        expected = {sid for sid, s in self.model.items() if s.status is SessionStatus.ACTIVE}
        assert active_ids == expected
        for sid in active_ids:
            score = self.client.zscore(KEYS.active, sid)
            assert score == self.model[sid].last_activity.timestamp() * 1000
        phones = [self.model[sid].phone for sid in active_ids]
        assert len(phones) == len(set(phones))
        for phone in PHONES:
            conv = f"{phone}|{BUSINESS}"
            assert self.client.get(KEYS.conv_active(conv)) == self.active.get(phone)
            ids = self.service.store.conversation_session_ids(conv)
            assert sorted(ids) == sorted(s.sid for s in self.model.values() if s.phone == phone)
            statuses = [
                self.client.hget(KEYS.session(conv, sid), SessionField.STATUS) for sid in ids
            ]
            assert statuses.count("active") <= 1
        assert self.service.get_active_sessions_count() == len(expected)


def test_session_service_matches_the_in_memory_model(redis_client: redis.Redis) -> None:
    """No interleaving of messages, ends, sweeps and time breaks the lifecycle invariants."""
    run_state_machine_as_test(
        lambda: SessionLifecycleMachine(redis_client),
        settings=settings(
            max_examples=100,
            stateful_step_count=40,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow],
        ),
    )
